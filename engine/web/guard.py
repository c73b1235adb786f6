"""The inbound guard: an ASGI middleware in front of every route of the web hooks app.

Before a route runs it checks, per source address and class of route
(:mod:`carepath.web.limits`): a lock-out after too many refused
authentications (429), the request budget (429 with ``Retry-After``), the
declared ``Content-Length`` (413 before a byte of the body is read), and the
content type of ``POST /events`` (415). While the route reads the body it
counts the bytes as they arrive and stops at the limit (413: a chunked upload
without a length is cut off just the same, so memory stays flat), and answers
408 when the body stalls. Any exception a route lets escape is logged with an
incident id and answered 500 naming only that id; a route's 401 (a refused
authentication) counts against its source.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any, Awaitable, Callable

from carepath.web.limits import EVENTS, InboundLimits
from carepath.web.ratelimit import SourceLimiter

log = logging.getLogger("carepath.web")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: content types ``POST /events`` takes (none given is taken as JSON)
EVENT_TYPES = ("application/json", "application/x-ndjson", "application/jsonl", "application/json-seq",
               "application/x-jsonlines", "text/plain")


#: where the guard leaves the client address it counted (behind a trusted proxy, the forwarded one)
SOURCE_STATE = "carepath_source"


class BodyTooLarge(Exception):
    """The body went past its limit while it was read."""


class BodyStalled(Exception):
    """The body stopped arriving (a slow-loris upload)."""


class InboundGuard:
    """``InboundGuard(app, limits)``: wrap an ASGI app (``FastAPI.add_middleware`` passes ``app``)."""

    def __init__(self, app: Callable[..., Awaitable[None]], limits: InboundLimits,
                 limiter: SourceLimiter | None = None) -> None:
        self.app = app
        self.limits = limits
        self.limiter = limiter or SourceLimiter(max_keys=limits.max_sources)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        kind, limits = self.limits.of(scope.get("path", ""))
        key = (self.source(scope), kind)
        scope.setdefault("state", {})[SOURCE_STATE] = key[0]  # routes read it as request.state.carepath_source
        refusal = self._refusal(scope, key, kind, limits.rate, limits.burst, limits.max_bytes)
        if refusal is not None:
            await answer(send, *refusal)
            return
        await self._guarded(scope, receive, send, key, limits.max_bytes)

    def source(self, scope: Scope) -> str:
        """The client address; behind a trusted proxy, the last address its ``X-Forwarded-For`` names."""
        client = (scope.get("client") or ("unknown", 0))[0]
        if client not in self.limits.trusted_proxies:
            return client
        forwarded = _header(scope, b"x-forwarded-for")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        untrusted = [h for h in hops if h not in self.limits.trusted_proxies]
        return untrusted[-1] if untrusted else client

    def _refusal(self, scope: Scope, key: tuple[str, str], kind: str, rate: float, burst: int,
                 max_bytes: int) -> tuple[int, str, dict[str, str]] | None:
        """Status, detail and headers of an answer given before the route runs, or None to go on."""
        locked = self.limiter.locked_for(key)
        if locked:
            return 429, "too many refused authentications from this address: try again later", _retry(locked)
        wait = self.limiter.take(key, rate, burst)
        if wait:
            return 429, "too many requests from this address", _retry(wait)
        length = _header(scope, b"content-length")
        if length:
            if not length.isdigit():
                return 400, "Content-Length is not a number", {}
            if int(length) > max_bytes:
                return 413, _too_large(max_bytes), {"Connection": "close"}
        if kind == EVENTS and scope.get("method") == "POST":
            ctype = _header(scope, b"content-type").split(";")[0].strip().lower()
            if ctype and ctype not in EVENT_TYPES:
                return 415, f"POST /events takes JSON or JSON lines (application/json), not {ctype[:60]}", {}
        return None

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, key: tuple[str, str],
                       max_bytes: int) -> None:
        state: dict[str, Any] = {"read": 0, "over": None, "status": None, "done": False}

        async def limited() -> Message:
            if state["over"] is not None:
                raise state["over"]
            if state["done"]:  # the whole body is in: a route now waits for the client to go away
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.limits.body_timeout)
            except asyncio.TimeoutError:
                state["over"] = BodyStalled()
                raise state["over"] from None
            if message["type"] == "http.request":
                state["done"] = not message.get("more_body", False)
                state["read"] += len(message.get("body", b""))
                if state["read"] > max_bytes:
                    state["over"] = BodyTooLarge()
                    raise state["over"]
            return message

        async def tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                if state["over"] is not None:  # a route turned the cut-off body into its own answer
                    raise state["over"]
                state["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        except (BodyTooLarge, BodyStalled) as exc:
            if state["status"] is None:
                await _cut_off(send, exc, max_bytes)
        except Exception:  # a route's bug must not show its trace to the caller
            incident = uuid.uuid4().hex[:12]
            log.exception("incident %s: %s %s failed", incident, scope.get("method"), scope.get("path"))
            if state["status"] is None:
                await answer(send, 500, f"internal error (incident {incident}, logged)")
        finally:
            if state["status"] == 401 and self.limiter.failed(key, self.limits.auth_failures,
                                                                     self.limits.lockout):
                log.warning("inbound: %s locked out of %s routes for %.0f s after %d refused authentications",
                            key[0], key[1], self.limits.lockout, self.limits.auth_failures)


async def _cut_off(send: Send, exc: Exception, max_bytes: int) -> None:
    if isinstance(exc, BodyTooLarge):
        await answer(send, 413, _too_large(max_bytes), {"Connection": "close"})
    else:
        await answer(send, 408, "the request body stopped arriving", {"Connection": "close"})


async def answer(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """A small JSON answer ``{"detail": ...}``."""
    body = json.dumps({"detail": detail}, ensure_ascii=False).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return ""


def _retry(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, int(seconds + 0.999)))}


def _too_large(max_bytes: int) -> str:
    return f"request body over {max_bytes:,} bytes: refused (see CAREPATH_INBOUND_* in docs/operations.md)"

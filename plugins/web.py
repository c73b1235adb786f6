"""What a plugin's web routes may rely on: the web context and a ready-made callback router.

The web hooks app sets ``app.state.carepath`` to an object following
:class:`WebContext` (the configured connectors by name, and the ingest
function). Routes from ``carepath_web_routes`` reach it with
:func:`web_context`. :func:`callback_router` builds the usual route for a
connector type: authenticate, parse, ingest; a request that fails
authentication is answered 401 and changes nothing. An authentic request
whose body cannot be used (:func:`unusable_callback`) is answered 400 with the
reason, nothing of it applied, and its body kept (masked) for operators; a
database outage is answered 503 so that the provider sends it again.
Everything runs off the event loop, behind the app's inbound guard (body
limits, rate limits).
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route's annotations at run time.
import inspect
import logging
import uuid
from typing import TYPE_CHECKING, Any, Mapping, Protocol

from carepath.plugins.contracts import CallbackRejected, CallbackRequest, Connector

if TYPE_CHECKING:  # FastAPI is only imported by the web hooks app and its routes
    from fastapi import APIRouter, HTTPException, Request

log = logging.getLogger("carepath.web")


class WebContext(Protocol):
    """The running carepath as the web hooks app shows it to plugin routes."""

    connectors: Mapping[str, Connector]
    #: the running ``carepath.engine.Engine`` (database, clock, cipher) for routes that need more than ingest
    engine: Any

    def ingest(self, event: Any, received_via: str | None = None) -> Any:
        """Store and apply one inbound event (``carepath.definition.events.EventIn``); ``received_via``
        (``hook:<connector>``) is kept on the stored event."""


def web_context(request: "Request") -> WebContext:
    """The :class:`WebContext` of the app serving ``request``."""
    context = getattr(request.app.state, "carepath", None)
    if context is None:
        raise RuntimeError("app.state.carepath is not set: mount plugin routes in the carepath web hooks app")
    return context


def unusable_callback(context: WebContext, source: str, route: str, inbound: CallbackRequest,
                      exc: BaseException, *, via: str | None = None) -> "HTTPException":
    """The answer to an authentic callback that failed after authentication, to raise.

    The database being down is 503 (the provider sends it again; nothing was
    stored). Anything else means the body cannot be used: 400 naming the
    reason, and the body recorded for operators (masked; see
    ``carepath.runtime.refused.record_rejected``). ``route`` must hold no secret.
    """
    from fastapi import HTTPException
    from sqlalchemy.exc import InterfaceError, OperationalError

    if isinstance(exc, (OperationalError, InterfaceError)):  # the database went away, not the body
        log.warning("%s: not stored, the database is unavailable: %s", route, type(exc).__name__)
        return HTTPException(status_code=503, detail="not stored: the database is unavailable; send it again",
                             headers={"Retry-After": "30"})
    reason = _reason(exc)
    log.warning("%s: authentic callback refused: %s", route, reason)
    try:
        from carepath.runtime.refused import record_rejected

        record_rejected(context.engine, source=source, route=route, reason=reason, body=inbound.body,
                        received_via=via)
    except Exception:  # noqa: BLE001 - the caller still gets its answer
        log.exception("%s: could not record the refused callback", route)
    return HTTPException(status_code=400, detail=f"malformed callback: {reason}")


def _reason(exc: BaseException) -> str:
    """What was wrong, in words that never carry a trace (a bug gets an incident id, logged)."""
    from carepath.definition.events import printable

    if isinstance(exc, RecursionError):
        return "the body is nested too deeply"
    if isinstance(exc, (ValueError, KeyError, TypeError, CallbackRejected)):
        text = str(exc) if not isinstance(exc, KeyError) else f"missing field {exc}"
        return printable(f"{text or type(exc).__name__}")[:500]
    incident = uuid.uuid4().hex[:12]
    log.error("incident %s: callback parsing failed", incident, exc_info=exc)
    return f"could not be read (incident {incident}, logged)"


def callback_router(type_name: str, prefix: str = "/hooks") -> "APIRouter":
    """A router handing ``GET|POST {prefix}/{type_name}/{name}[/...]`` to connector ``name``.

    What follows the name (a secret path token, ``receipts`` or ``replies``)
    reaches the connector as ``CallbackRequest.path``. A request that fails
    authentication is answered 401 and changes nothing; an authentic one that
    cannot be used 400 (see :func:`unusable_callback`).
    """
    from fastapi import APIRouter, HTTPException, Request, Response
    from starlette.concurrency import run_in_threadpool

    router = APIRouter()

    @router.api_route(f"{prefix}/{type_name}/{{name}}", methods=["GET", "POST"], include_in_schema=False)
    @router.api_route(f"{prefix}/{type_name}/{{name}}/{{tail:path}}", methods=["GET", "POST"],
                      include_in_schema=False)
    async def _callback(name: str, request: Request) -> Response:
        context = web_context(request)
        connector = context.connectors.get(name)
        if connector is None or connector.type_name != type_name:
            raise HTTPException(status_code=404, detail=f"no {type_name} connector named {name!r}")
        inbound = CallbackRequest(body=await request.body(), headers=dict(request.headers),
                                  query=dict(request.query_params), method=request.method, path=request.url.path)
        if not await run_in_threadpool(_authentic, connector, inbound):
            raise HTTPException(status_code=401, detail="callback not authentic")
        route = f"{request.method} {prefix}/{type_name}/{name}"  # without the path token that may follow
        try:
            events = await run_in_threadpool(connector.parse_callback, inbound)
            checked(context, events)
            for event in events:
                await run_in_threadpool(ingest_via, context, event, f"hook:{name}")
        except Exception as exc:  # noqa: BLE001 - every failure gets its answer; none shows a trace
            raise unusable_callback(context, getattr(connector, "source", f"{type_name}:{name}"), route, inbound,
                                    exc, via=f"hook:{name}") from None
        status, body = connector.callback_reply(inbound)
        return Response(content=body, status_code=status, media_type="application/json")

    return router


def checked(context: WebContext, events: list[Any]) -> list[Any]:
    """``events``, each checked against the installation's limits before any is stored, so that a callback
    refused for one of its events applies none (raises ``carepath.definition.events.EventRejected``)."""
    engine = getattr(context, "engine", None)
    settings = getattr(engine, "settings", None)
    if settings is None:
        return events
    from carepath.definition.events import check_event

    limits = settings.event_limits()
    for event in events:
        check_event(event, limits)
    return events


def ingest_via(context: WebContext, event: Any, via: str) -> Any:
    """``context.ingest(event)``, telling it who delivered the event when it can take that."""
    try:
        takes_via = "received_via" in inspect.signature(context.ingest).parameters
    except (TypeError, ValueError):
        takes_via = False
    return context.ingest(event, received_via=via) if takes_via else context.ingest(event)


def _authentic(connector: Connector, inbound: CallbackRequest) -> bool:
    """``verify_callback``, where a failure to check (a body too odd to read) means not authentic."""
    try:
        return bool(connector.verify_callback(inbound))
    except Exception as exc:  # noqa: BLE001 - an unverifiable request is refused, never a 500
        log.info("%s %r: callback could not be verified: %s", connector.type_name, connector.name,
                 type(exc).__name__)
        return False

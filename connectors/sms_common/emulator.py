"""What both SMS provider emulators share: the loopback HTTP server, number rules, records, pushes.

A provider emulator subclasses :class:`SmsEmulator` and implements
:meth:`SmsEmulator.handle` (its wire protocol: signature check, actions,
response shapes) plus the bodies of its pushes. The shared part:

- per-number daily limits and a blacklist (:meth:`accept` decides);
- recorded messages (``messages``) and refused signatures (``rejected``);
- an optional delay before answering a send it has already accepted
  (``delay``), to test timeouts after acceptance;
- pushes of receipts and replies to carepath on demand, from Python or over
  HTTP: ``POST /_emulator/receipts {"url": ...}``, ``POST /_emulator/reply
  {"url", "phone", "text"}``, ``GET /_emulator/messages``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import requests

from carepath.connectors.sms_common.numbers import national

UTC = timezone.utc


@dataclass
class Recorded:
    """One message the emulated provider accepted."""

    provider_id: str
    phone: str  # as sent (the number without formatting)
    template: str
    params: Any
    sign_name: str
    reference: str  # OutId / SessionContext: the caller's idempotency key
    at: datetime
    delivered: bool | None = None
    pushed: bool = False  # its receipt was pushed to carepath
    extra: dict[str, Any] = field(default_factory=dict)


class SmsEmulator:
    """Start with ``with Emulator(...) as emu:``; ``emu.url`` is the provider endpoint."""

    #: the provider's own ``Content-Type`` (official SDKs compare it exactly before they look for an error)
    content_type = "application/json;charset=utf-8"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, daily_limit: int = 10,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.daily_limit = daily_limit
        self.clock = clock or (lambda: datetime.now(UTC))
        self.blacklist: set[str] = set()
        self.messages: list[Recorded] = []
        self.rejected: list[str] = []  # error codes of refused calls (bad signature, expired timestamp)
        self.calls: Counter[str] = Counter()  # actions called
        self.delay = 0.0
        self.account_error: str | None = None  # answer every send with this account code
        self._sent_today: Counter[tuple[str, str]] = Counter()
        self._lock = threading.RLock()
        self._httpd = ThreadingHTTPServer((host, port), self._handler())
        self._httpd.daemon_threads = True
        self.url = f"http://{host}:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        name=f"{type(self).__name__}", daemon=True)

    def __enter__(self) -> "SmsEmulator":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        self._httpd.serve_forever(0.2)

    # -- rules ---------------------------------------------------------------------------

    def block(self, phone: str) -> None:
        """Blacklist a number (as if it had unsubscribed)."""
        with self._lock:
            self.blacklist.add(national(phone))

    def refusal(self, phone: str) -> str | None:
        """``"blacklisted"`` or ``"daily_limit"`` when a message to ``phone`` must be refused."""
        number = national(phone)
        with self._lock:
            if number in self.blacklist:
                return "blacklisted"
            if self._sent_today[(number, self.clock().date().isoformat())] >= self.daily_limit:
                return "daily_limit"
        return None

    def record(self, message: Recorded) -> Recorded:
        with self._lock:
            self.messages.append(message)
            self._sent_today[(national(message.phone), message.at.date().isoformat())] += 1
        return message

    def find(self, phone: str, reference: str | None = None) -> list[Recorded]:
        """Recorded messages to ``phone`` (with this idempotency key when given)."""
        number = national(phone)
        with self._lock:
            return [m for m in self.messages if national(m.phone) == number
                    and (reference is None or m.reference == reference)]

    def next_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}{len(self.messages) + 1:08d}"

    # -- pushes to carepath ----------------------------------------------------------------

    def receipt_body(self, messages: list[Recorded]) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def reply_body(self, phone: str, text: str, sequence: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def push_receipts(self, url: str, *, delivered: bool = True, provider_ids: list[str] | None = None) -> int:
        """POST receipts of the recorded messages (those named, or all not pushed yet); HTTP status."""
        with self._lock:
            todo = [m for m in self.messages if (m.provider_id in provider_ids if provider_ids is not None
                                                  else not m.pushed)]
            for m in todo:
                m.delivered, m.pushed = delivered, True
        if not todo:
            return 204
        return self._post(url, self.receipt_body(todo))

    def push_reply(self, url: str, phone: str, text: str) -> int:
        """POST a patient's reply (上行) to carepath; returns the HTTP status."""
        with self._lock:
            self.calls["reply"] += 1
            sequence = self.calls["reply"]
        return self._post(url, self.reply_body(phone, text, sequence))

    @staticmethod
    def _post(url: str, payload: Any) -> int:
        body = json.dumps(payload, ensure_ascii=False).encode()
        return requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=10).status_code

    # -- HTTP ------------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        """Answer one provider API request: ``(HTTP status, JSON-able body)``."""
        raise NotImplementedError  # pragma: no cover - abstract

    def _admin(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if method == "GET" and path == "/_emulator/messages":
            with self._lock:
                return 200, [{"provider_id": m.provider_id, "phone": m.phone, "template": m.template,
                              "params": m.params, "sign_name": m.sign_name, "reference": m.reference,
                              "at": m.at.isoformat(), "delivered": m.delivered} for m in self.messages]
        try:
            order = json.loads(body or b"{}")
            if path == "/_emulator/receipts":
                return 200, {"status": self.push_receipts(order["url"], delivered=order.get("delivered", True))}
            if path == "/_emulator/reply":
                return 200, {"status": self.push_reply(order["url"], order["phone"], order["text"])}
            if path == "/_emulator/blacklist":
                self.block(order["phone"])
                return 200, {"blacklisted": True}
        except (ValueError, KeyError, requests.RequestException) as exc:
            return 400, {"error": f"{type(exc).__name__}: {exc}"}
        return 404, {"error": f"no emulator action {path}"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?", 1)[0]
                if path.startswith("/_emulator/"):
                    status, answer = emulator._admin(self.command, path, body)
                else:
                    status, answer = emulator.handle(self.command, self.path,
                                                     {k.lower(): v for k, v in self.headers.items()}, body)
                data = json.dumps(answer, ensure_ascii=False).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", emulator.content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the caller gave up waiting

            do_GET = do_POST = _serve

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def pause_after_accept(self) -> None:
        """Sleep ``delay`` seconds after recording a send: the caller then times out after acceptance."""
        if self.delay:
            time.sleep(self.delay)

"""A loopback emulator of a webhook receiver, for tests and ``carepath sandbox``.

It listens on 127.0.0.1, verifies the signature of every POST, records the
messages it accepts (once per ``Idempotency-Key``) and answers ``{"id": ...}``.
``fail_next(status)`` makes it answer errors, to exercise retries.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from carepath_plugin_example.channel import SIGNATURE_HEADER, sign, signature_ok


class WebhookEmulator:
    """Start with ``with WebhookEmulator(secret) as hook: ...``; ``hook.url`` is its address."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.messages: list[dict[str, Any]] = []
        self.rejected = 0
        self._ids: dict[str, str] = {}
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/messages"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="webhook-emulator",
                                        daemon=True)

    def __enter__(self) -> "WebhookEmulator":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` requests with HTTP ``status`` (nothing recorded)."""
        with self._lock:
            self._failures.extend([status] * times)

    def receipt(self, provider_id: str, *, patient_mrn: str = "", kind: str = "message.delivered",
                occurred_at: str = "2026-05-01T10:00:00+08:00") -> tuple[dict[str, str], bytes]:
        """A signed delivery receipt as this receiver would post it back: ``(headers, body)``."""
        body = json.dumps({"events": [{"id": f"{kind}:{provider_id}", "type": kind, "provider_id": provider_id,
                                       "patient_mrn": patient_mrn, "occurred_at": occurred_at}]}).encode()
        return {SIGNATURE_HEADER: sign(self.secret, body), "Content-Type": "application/json"}, body

    def _accept(self, key: str, body: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if self._failures:
                status = self._failures.pop(0)
                return status, {"error": f"emulated HTTP {status}"}
            if key and key in self._ids:
                return 200, {"id": self._ids[key], "duplicate": True}
            try:
                message = json.loads(body)
            except ValueError:
                return 400, {"error": "body is not JSON"}
            provider_id = f"wh-{len(self.messages) + 1}"
            self.messages.append({**message, "provider_id": provider_id})
            if key:
                self._ids[key] = provider_id
            return 200, {"id": provider_id}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not signature_ok(emulator.secret, body, self.headers.get(SIGNATURE_HEADER, "")):
                    with emulator._lock:
                        emulator.rejected += 1
                    status, answer = 401, {"error": "bad signature"}
                else:
                    status, answer = emulator._accept(self.headers.get("Idempotency-Key", ""), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

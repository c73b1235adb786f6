"""A loopback HTTP sink that records every message key it receives, and the channel that posts to it.

The sink stands in for a provider that does **not** deduplicate: it counts each
arrival, so re-sends show up. It answers a stable provider id per key.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import requests
from pydantic import Field

from carepath.definition.dsl import after, enroll_on, journey, send, step, template
from carepath.definition.model import Journey
from carepath.plugins.contracts import Capabilities, Channel, ConnectorConfig, Message, SendResult


def crash_journey() -> Journey:
    """One message per enrollment, due at once."""
    return journey("crash", enroll=enroll_on("program.joined"), templates=[template("t", "{{ patient.name }}您好")],
                   steps=[step("s", "post_visit", after("enrolled", "0s"), send("t", ["sink"]))])


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A sender killed mid-request resets its connection: expected here, not worth a traceback."""


class KeySink:
    """``with KeySink() as sink: ...``; ``sink.url`` takes POSTed ``{"key": ...}``; ``sink.keys()`` counts them."""

    def __init__(self, latency: float = 0.0) -> None:
        """``latency``: seconds each answer takes after the key is counted (a provider's own processing time)."""
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: one connection per worker
            wbufsize = 1 << 16  # headers and body in one write (no Nagle / delayed-ACK stall)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    key = json.loads(body)["key"]
                except (ValueError, KeyError):  # cut off by a killed sender: never received
                    self.close_connection = True
                    return
                with sink._lock:
                    sink._counts[key] += 1
                if latency:
                    time.sleep(latency)
                answer = json.dumps({"id": f"sink-{key}"}).encode()
                self.send_response(200)
                for name, value in (("Content-Type", "application/json"), ("Content-Length", str(len(answer)))):
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:  # quiet: the test reads the counts
                return None

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = "http://{}:{}/messages".format(*self._httpd.server_address)

    def __enter__(self) -> "KeySink":
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="key-sink", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._httpd:  # closes the socket after the loop stops
            self._httpd.shutdown()

    def keys(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)


class SinkConfig(ConnectorConfig):
    url: str
    timeout: float = Field(5.0, gt=0)


class SinkChannel(Channel):
    """Posts each message's key to a :class:`KeySink` (one HTTP call per message, no lookup)."""

    type_name: ClassVar[str] = "key-sink"
    Config = SinkConfig
    capabilities: ClassVar[Capabilities] = Capabilities(network=True)
    address_kind: ClassVar[str] = "none"

    def __init__(self, name: str, config: SinkConfig | None = None) -> None:
        super().__init__(name, config)
        self._session = requests.Session()

    def send(self, message: Message) -> SendResult:
        try:
            answer = self._session.post(self.config.url, json={"key": message.idempotency_key},
                                        timeout=self.config.timeout)
        except requests.RequestException as exc:
            return SendResult.retryable("connection", type(exc).__name__)
        if answer.status_code != 200:
            return SendResult.retryable(f"http_{answer.status_code}")
        return SendResult.sent(answer.json()["id"])

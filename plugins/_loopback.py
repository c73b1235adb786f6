"""Loopback servers for the conformance suite: one that never answers, one that answers a fixed status."""

from __future__ import annotations

import json
import socket
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

HOST = "127.0.0.1"


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self) -> None:
        self._sock = socket.create_server((HOST, 0))
        self._sock.settimeout(0.1)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="carepath-silent-server", daemon=True)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self._held.append(conn)  # keep it open, read nothing, answer nothing

    def start(self) -> "SilentServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        for conn in self._held:
            conn.close()
        self._sock.close()

    @property
    def connections(self) -> int:
        return len(self._held)


class LoopbackHTTP:
    """A threaded HTTP server on a loopback port serving ``handler`` from a daemon thread (a context manager)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], *, host: str = HOST, port: int = 0,
                 name: str = "carepath-loopback") -> None:
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name=name, daemon=True)

    def start(self) -> "LoopbackHTTP":
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "LoopbackHTTP":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class StatusServer(LoopbackHTTP):
    """An HTTP server on 127.0.0.1 answering every request with ``status`` and a small JSON body."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                server.requests += 1
                body = json.dumps({"status": server.status, "error": "loopback"}).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if server.status == 429:
                    self.send_header("Retry-After", "1")
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

        super().__init__(Handler, name="carepath-status-server")


@contextmanager
def silent_server() -> Iterator[SilentServer]:
    """A started :class:`SilentServer`, closed on exit."""
    server = SilentServer().start()
    try:
        yield server
    finally:
        server.close()


@contextmanager
def status_server(status: int) -> Iterator[StatusServer]:
    """A started :class:`StatusServer`, closed on exit."""
    server = StatusServer(status).start()
    try:
        yield server
    finally:
        server.close()


def refused_url() -> str:
    """A loopback URL where nothing listens (connections are refused)."""
    with socket.create_server((HOST, 0)) as sock:
        port = sock.getsockname()[1]
    return f"http://{HOST}:{port}"


def serve_in_foreground(server: Any, banner: str) -> None:
    """Print ``banner`` and serve ``server`` (an ``http.server`` server) until the process is interrupted:
    what ``carepath emulator NAME`` does for an emulator with a page of its own."""
    print(banner, flush=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        thread.join()
    finally:
        server.shutdown()

"""The carepath web routes served by a real uvicorn on a free loopback port, in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn


@dataclass
class WebContext:
    """What plugin routes reach through ``app.state.carepath``: the engine, its connectors, ingest."""

    engine: Any

    @property
    def connectors(self) -> dict[str, Any]:
        return self.engine.connectors

    def ingest(self, event: Any, received_via: str | None = None) -> Any:
        return self.engine.ingest(event, received_via=received_via)


def plugin_app(engine: Any) -> Any:
    """A FastAPI app with every plugin's routes, bound to ``engine``."""
    from fastapi import FastAPI

    from carepath.plugins.manager import get_plugin_manager

    app = FastAPI()
    app.state.carepath = WebContext(engine)
    for router in get_plugin_manager().web_routers():
        app.include_router(router)
    return app


class LiveApp:
    """``with LiveApp(app) as live: requests.get(live.url + ...)``."""

    def __init__(self, app: Any) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveApp":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

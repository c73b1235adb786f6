"""Connectors that listen on a socket of their own (HL7 v2 over MLLP), run by ``carepath serve``.

A connector listens when it has ``async def listen(host=None, port=None)``
returning an asyncio server. They all share one event loop in a background
thread; their work (storing events) runs in worker threads.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any, Iterable


class Listeners:
    """Start every listening connector; :meth:`stop` closes them."""

    def __init__(self, connectors: Iterable[Any]) -> None:
        self.connectors = [c for c in connectors if inspect.iscoroutinefunction(getattr(c, "listen", None))]
        self.loop = asyncio.new_event_loop()
        self.servers: list[Any] = []
        self.thread = threading.Thread(target=self.loop.run_forever, name="carepath-listeners", daemon=True)

    def start(self) -> list[str]:
        """Start listening; returns ``"name on host:port"`` for each connector."""
        if not self.connectors:
            return []
        self.thread.start()
        bound = []
        for connector in self.connectors:
            server = asyncio.run_coroutine_threadsafe(connector.listen(), self.loop).result(30)
            self.servers.append(server)
            host, port = server.sockets[0].getsockname()[:2]
            bound.append(f"{connector.name} ({connector.type_name}) on {host}:{port}")
        return bound

    def stop(self) -> None:
        if not self.thread.is_alive():
            return

        async def close() -> None:
            for server in self.servers:
                server.close()
                await server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

"""MLLP framing (``0x0B`` message ``0x1C 0x0D``): an asyncio listener and a blocking client.

The ``hl7`` library's own MLLP streams decode every message with one fixed
encoding; Chinese feeds declare theirs per message in MSH-18, so frames are
read as bytes here and decoded by :func:`carepath.connectors.his.hl7_message.decode`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Awaitable, Callable

START, END = b"\x0b", b"\x1c\x0d"
MAX_FRAME = 4 * 1024 * 1024
log = logging.getLogger(__name__)


def frame(payload: bytes) -> bytes:
    """One MLLP frame around ``payload``."""
    return START + payload + END


async def _read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """The next frame's payload; ``None`` at a clean end of stream."""
    try:
        block = await reader.readuntil(END)
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            log.warning("MLLP peer closed mid-frame (%d bytes dropped)", len(exc.partial))
        return None
    start = block.find(START)
    return block[start + 1:-len(END)] if start >= 0 else block[:-len(END)]


async def serve_mllp(handler: Callable[[bytes], Awaitable[bytes]], host: str, port: int) -> asyncio.base_events.Server:
    """Start listening; every frame is answered with ``handler(payload)``, in order, on its connection."""

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    payload = await _read_frame(reader)
                except asyncio.LimitOverrunError:
                    log.warning("MLLP frame over %d bytes: closing the connection", MAX_FRAME)
                    return
                if payload is None:
                    return
                writer.write(frame(await handler(payload)))
                await writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            return
        finally:
            writer.close()

    return await asyncio.start_server(on_client, host, port, limit=MAX_FRAME)


class MllpClient:
    """A blocking MLLP sender: one connection, one answer per message (``carepath hl7 send``, tests)."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._buffer = b""

    def send(self, payload: bytes) -> bytes:
        """Send one message and return the payload of the answer frame."""
        self._sock.sendall(frame(payload))
        while END not in self._buffer:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("the listener closed the connection without an answer")
            self._buffer += chunk
        block, _, self._buffer = self._buffer.partition(END)
        return block[block.find(START) + 1:] if START in block else block

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "MllpClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

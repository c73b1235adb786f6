"""MLLP framing (``0x0B`` message ``0x1C 0x0D``): an asyncio listener and a blocking client.

The ``hl7`` library's own MLLP streams decode every message with one fixed
encoding; Chinese feeds declare theirs per message in MSH-18, so frames are
read as bytes here and decoded by :func:`carepath.connectors.his.hl7_message.decode`.

MLLP has no authentication of its own, so the listener guards itself
(:class:`ListenerLimits`): peers outside ``allow_from`` are disconnected at
once, a peer may hold only so many connections, a frame must arrive whole
within ``frame_timeout`` once it has started (no slow-loris), a frame over
``max_frame`` bytes closes its connection, and a peer's messages are paced
to ``rate`` a second (delayed, never dropped: the sender waits for each ACK).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections import Counter
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

START, END = b"\x0b", b"\x1c\x0d"
MAX_FRAME = 4 * 1024 * 1024
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ListenerLimits:
    """What one MLLP listener accepts (the ``hl7v2`` connector's options)."""

    allow_from: Sequence[str] = ()  # networks (CIDR) whose peers may connect; empty: any
    max_connections_per_peer: int = 8
    frame_timeout: float = 60.0  # seconds a started frame may take to arrive whole
    max_frame: int = MAX_FRAME
    rate: float = 100.0  # messages a second per peer address (0: no pacing)

    def allowed(self, peer: str) -> bool:
        if not self.allow_from:
            return True
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(net, strict=False) for net in self.allow_from)


def frame(payload: bytes) -> bytes:
    """One MLLP frame around ``payload``."""
    return START + payload + END


async def _read_frame(reader: asyncio.StreamReader, frame_timeout: float | None = None) -> bytes | None:
    """The next frame's payload; ``None`` at a clean end of stream.

    A connection may stay idle between frames as long as it likes; once a frame has started, the rest must
    arrive within ``frame_timeout`` seconds (``asyncio.TimeoutError`` otherwise).
    """
    try:
        first = await reader.readexactly(1)  # idle between frames: no time limit
        if first == END[:1] and await reader.readexactly(1) == END[1:]:
            return b""  # a frame with nothing in it
        block = first + await asyncio.wait_for(reader.readuntil(END), frame_timeout)
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            log.warning("MLLP peer closed mid-frame (%d bytes dropped)", len(exc.partial))
        return None
    start = block.find(START)
    return block[start + 1:-len(END)] if start >= 0 else block[:-len(END)]


async def serve_mllp(handler: Callable[[bytes], Awaitable[bytes]], host: str, port: int,
                     limits: ListenerLimits = ListenerLimits()) -> asyncio.base_events.Server:
    """Start listening; every frame is answered with ``handler(payload)``, in order, on its connection."""
    from carepath.web.ratelimit import SourceLimiter

    open_connections: Counter[str] = Counter()
    pace = SourceLimiter(max_keys=10_000)

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str((writer.get_extra_info("peername") or ("unknown",))[0])
        if not limits.allowed(peer):
            log.warning("MLLP connection from %s refused: not in allow_from", peer)
            writer.close()
            return
        if open_connections[peer] >= limits.max_connections_per_peer:
            log.warning("MLLP connection from %s refused: it already holds %d", peer, open_connections[peer])
            writer.close()
            return
        open_connections[peer] += 1
        try:
            await _serve_connection(reader, writer, peer)
        finally:
            open_connections[peer] -= 1
            if not open_connections[peer]:
                del open_connections[peer]

    async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        try:
            while True:
                try:
                    payload = await _read_frame(reader, limits.frame_timeout)
                except asyncio.LimitOverrunError:
                    log.warning("MLLP frame from %s over %d bytes: closing the connection", peer, limits.max_frame)
                    return
                except asyncio.TimeoutError:
                    log.warning("MLLP frame from %s not whole after %.0f s: closing the connection", peer,
                                limits.frame_timeout)
                    return
                if payload is None:
                    return
                wait = pace.take((peer, "mllp"), limits.rate, max(1, int(limits.rate)))
                if wait:  # paced, not dropped: the sender waits for the ACK
                    await asyncio.sleep(wait)
                writer.write(frame(await handler(payload)))
                await writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            return
        finally:
            writer.close()

    return await asyncio.start_server(on_client, host, port, limit=limits.max_frame)


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

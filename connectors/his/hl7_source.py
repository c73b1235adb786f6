"""The ``hl7v2`` HIS source: an MLLP listener that stores each message's events, then acknowledges."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator

from carepath.connectors.his.hl7_ack import ack
from carepath.connectors.his.hl7_mapping import DEFAULT_MESSAGES, DEFAULT_VITALS, MessageMap
from carepath.connectors.his.hl7_message import Hl7Message, Hl7Problem, Hl7Unsupported, events_of, parse, raw_control_id
from carepath.connectors.his.mllp import ListenerLimits, serve_mllp
from carepath.plugins.contracts import Capabilities, ConnectorConfig, HisSource

log = logging.getLogger(__name__)


class Hl7Config(ConnectorConfig):
    """``[connectors.NAME] type = "hl7v2"``."""

    host: str = Field("127.0.0.1", description="address the MLLP listener binds")
    port: int = Field(2575, ge=0, le=65535, description="MLLP port (0: any free port)")
    system: str = Field("his", min_length=1, description="the hospital system's name: the source of its events")
    default_charset: str = Field("utf-8", description="character set of messages whose MSH-18 is empty (gb18030 for many Chinese HIS)")
    timezone: str = Field("Asia/Shanghai", description="zone of HL7 times that carry no offset")
    messages: dict[str, MessageMap] = Field(default_factory=dict, description="message type -> mapping, replacing the default for that type")
    codes: dict[str, str] = Field(default_factory=dict, description="local code -> value (departments, report names, ICD-10 for local diagnosis codes)")
    vitals: dict[str, str] = Field(default_factory=dict, description="extra OBX-3 codes read as vital signs: code -> kind")
    allow_from: list[str] = Field(default_factory=list, description="networks (CIDR, e.g. 10.1.0.0/16) whose "
                                                                    "systems may connect; empty: any")
    max_connections_per_peer: int = Field(8, ge=1, le=1000, description="connections one address may hold at once")
    frame_timeout: float = Field(60.0, gt=0, le=3600, description="seconds a started message may take to arrive "
                                                                   "whole")
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024,
                                   description="largest MLLP frame; a larger one closes its connection")
    max_message_rate: float = Field(100.0, ge=0, description="messages a second one address is paced to (0: none)")

    @field_validator("allow_from")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        import ipaddress

        for net in v:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"{net!r} is not a network (write 10.1.0.0/16 or 10.1.2.3)") from None
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (KeyError, ValueError):  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


class Hl7Source(HisSource):
    """HL7 v2 over MLLP: ADT A01/A03/A04/A08/A11/A13/A40, SIU S12/S14/S15/S26, ORU^R01.

    Every message is answered: ``AA`` only once its events are stored, ``AE``
    with an ERR segment naming the segment and field when it cannot be
    applied, ``AR`` for message types this source does not map. A repeated
    control id (or the same fact resent) is acknowledged and applied once.
    """

    type_name: ClassVar[str] = "hl7v2"
    Config = Hl7Config
    capabilities: ClassVar[Capabilities] = Capabilities(network=False, callbacks=False)

    def __init__(self, name: str, config: Hl7Config | None = None) -> None:
        super().__init__(name, config)
        self.engine: Any = None
        self.messages = {**DEFAULT_MESSAGES, **self.config.messages}
        self.vitals = {**DEFAULT_VITALS, **self.config.vitals}
        self._tz = ZoneInfo(self.config.timezone)

    def bind(self, engine: Any) -> None:
        self.engine = engine

    def handle(self, raw: bytes) -> bytes:
        """Apply one message (bytes as framed) and return the ACK, encoded as the message was.

        Every frame gets an answer: a message the reader cannot make sense of in a way not foreseen
        below is answered ``AE`` with an incident id (logged), never by dropping the connection.
        """
        try:
            return self._handle(raw)
        except Exception:  # noqa: BLE001 - a bug of ours must still answer the sender
            incident = uuid.uuid4().hex[:12]
            log.exception("incident %s: HL7 message could not be read", incident)
            return _encode(ack(None, "AE", text=f"cannot read the message (incident {incident})", location="MSH",
                               error_code="207", control_id=raw_control_id(raw)), self.config.default_charset)

    def _handle(self, raw: bytes) -> bytes:
        msg: Hl7Message | None = None
        charset = self.config.default_charset
        try:
            msg = parse(raw, self.config.default_charset)
            charset = _charset_of(msg) or charset
            events = events_of(msg, system=self.config.system, messages=self.messages, vitals=self.vitals,
                               codes=self.config.codes, tz=self._tz)
        except Hl7Unsupported as exc:
            return _encode(ack(msg, "AR", text=str(exc), location="MSH-9", error_code="200"), charset)
        except Hl7Problem as exc:
            return _encode(ack(msg, "AE", text=str(exc), location=exc.location, error_code=exc.code,
                               control_id=raw_control_id(raw)), charset)
        except ValueError as exc:  # an event the engine's model refuses (bad field values)
            return _encode(ack(msg, "AE", text=_first_line(exc), error_code="102"), charset)
        try:
            outcomes = [self.engine.ingest(event, received_via=f"mllp:{self.name}") for event in events]
        except Exception as exc:  # database down, a refusal of the engine: the sender keeps the message and resends
            log.warning("HL7 %s %s not stored: %s", msg.kind, msg.control_id, _first_line(exc))
            return _encode(ack(msg, "AE", text=f"not stored: {_first_line(exc)}", error_code="207"), charset)
        text = "duplicate" if outcomes and all(getattr(o, "duplicate", False) for o in outcomes) else ""
        return _encode(ack(msg, "AA", text=text), charset)

    async def listen(self, host: str | None = None, port: int | None = None) -> asyncio.base_events.Server:
        """Start the MLLP listener on the running loop (engine ingest runs in worker threads)."""

        async def on_message(raw: bytes) -> bytes:
            return await asyncio.to_thread(self.handle, raw)

        cfg = self.config
        limits = ListenerLimits(allow_from=tuple(cfg.allow_from), max_connections_per_peer=cfg.max_connections_per_peer,
                                frame_timeout=cfg.frame_timeout, max_frame=cfg.max_message_bytes,
                                rate=cfg.max_message_rate)
        server = await serve_mllp(on_message, host or cfg.host, cfg.port if port is None else port, limits)
        bound = server.sockets[0].getsockname()
        log.info("HL7 MLLP listener %s on %s:%s", self.name, bound[0], bound[1])
        return server


def _charset_of(msg: Hl7Message) -> str:
    from carepath.connectors.his.hl7_message import CHARSETS

    declared = msg.value("MSH-18")
    return CHARSETS.get(declared.upper(), declared) if declared else ""


def _encode(text: str, charset: str) -> bytes:
    return text.encode(charset, errors="replace")


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]

"""The ``outbox`` channel: records each message in the database instead of sending it.

It is the integration channel for tests and benchmarks, and with ``address``
and the ``simulate_*`` rates it stands in for a provider in ``carepath demo``.
A repeated idempotency key returns the first message's id: never two rows.
It answers :meth:`~carepath.plugins.contracts.Channel.lookup` from those rows,
so an attempt cut off by a crash is reconciled instead of sent again.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, ClassVar, Literal, Sequence

from pydantic import Field
from sqlalchemy import select

from carepath.masking import mask_address
from carepath.plugins.contracts import (
    Capabilities,
    Channel,
    ConnectorConfig,
    LookupResult,
    LookupStatus,
    Message,
    SendResult,
)
from carepath.plugins.hookspecs import hookimpl
from carepath.store.statements import db_time, fetch
from carepath.store.schema import OutboxMessage

# one statement per call; the ids come back with it (only keys seen before are read again)
_INSERT = ("INSERT INTO outbox_messages (idempotency_key, channel, patient_id, address_masked, title, body, created_at) "
           "VALUES {values} ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key, id")


class OutboxConfig(ConnectorConfig):
    address: Literal["phone", "openid", "none"] = "none"
    simulate_retryable_rate: float = Field(0.0, ge=0, le=1, description="share of sends failing transiently")
    simulate_permanent_rate: float = Field(0.0, ge=0, le=1, description="share of sends refused for good")


def _fraction(key: str, salt: str) -> float:
    digest = hashlib.blake2b(f"{salt}|{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class OutboxChannel(Channel):
    type_name: ClassVar[str] = "outbox"
    Config = OutboxConfig
    capabilities: ClassVar[Capabilities] = Capabilities(lookup=True)
    reads_context: ClassVar[bool] = False  # sends the rendered title and body only

    def __init__(self, name: str, config: OutboxConfig | None = None) -> None:
        super().__init__(name, config)
        self.address_kind = self.config.address  # type: ignore[misc]
        self._engine: Any = None
        self._tries: dict[str, int] = {}

    def bind(self, engine: Any) -> None:
        self._engine = engine

    def _simulated_failure(self, message: Message) -> SendResult | None:
        cfg: OutboxConfig = self.config  # type: ignore[assignment]
        if cfg.simulate_permanent_rate and _fraction(message.idempotency_key, "perm") < cfg.simulate_permanent_rate:
            return SendResult.permanent("simulated_refused", "provider refused the recipient (simulated)")
        if cfg.simulate_retryable_rate:
            tries = self._tries.get(message.idempotency_key, 0)
            self._tries[message.idempotency_key] = tries + 1
            if _fraction(f"{message.idempotency_key}#{tries}", "retry") < cfg.simulate_retryable_rate:
                return SendResult.retryable("simulated_busy", "provider busy (simulated)")
        return None

    def send(self, message: Message) -> SendResult:
        return self.send_batch([message])[0]

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        if self._engine is None:
            raise RuntimeError("outbox channel used before bind(engine)")
        results: list[SendResult | None] = [self._simulated_failure(m) for m in messages]
        todo = [m for m, r in zip(messages, results) if r is None]
        ids: dict[str, int] = {}
        if todo:
            now = self._engine.clock.now()
            keys = [m.idempotency_key for m in todo]
            with self._engine.db.begin() as conn:
                # a key seen before keeps its first row: that is the provider-side dedup
                t = db_time(conn, now)
                for at in range(0, len(todo), 1000):
                    part = todo[at:at + 1000]
                    params = [v for m in part for v in (m.idempotency_key, self.name, m.patient_id,
                                                        mask_address(self.address_kind, m.address), m.title, m.body, t)]
                    ids.update(fetch(conn, _INSERT.format(values=", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(part))),
                                     params))
                seen = [k for k in keys if k not in ids]
                if seen:
                    ids.update(conn.execute(select(OutboxMessage.idempotency_key, OutboxMessage.id)
                                            .where(OutboxMessage.idempotency_key.in_(seen))).all())
        return [r if r is not None else SendResult.sent(f"outbox-{ids[m.idempotency_key]}")
                for m, r in zip(messages, results)]

    def lookup(self, message: Message, attempted_at: datetime) -> LookupResult:
        """Whether a message with this idempotency key was recorded (the outbox keeps every one)."""
        if self._engine is None:
            raise RuntimeError("outbox channel used before bind(engine)")
        with self._engine.db.connect() as conn:
            found = conn.execute(select(OutboxMessage.id).where(
                OutboxMessage.idempotency_key == message.idempotency_key)).scalar()
        if found is None:
            return LookupResult(LookupStatus.NOT_FOUND)
        return LookupResult(LookupStatus.ACCEPTED, provider_id=f"outbox-{found}")


@hookimpl
def carepath_connectors():
    return [OutboxChannel]

"""Shared test doubles and helpers for the engine tests.

The test modules load this file by path under the unique module name
``carepath_engine_test_helpers`` (a bare ``import helpers`` could pick up
another test folder's ``helpers.py`` in pytest's default import mode).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from sqlalchemy import select, text

from carepath.runtime.clock import VirtualClock
from carepath.engine import Engine
from carepath.definition.events import EventIn, PatientIn
from carepath.definition.model import Journey
from carepath.plugins.contracts import Channel, Message, SendResult
from carepath.settings import Settings
from carepath.store.schema import Base, Delivery, Enrollment, StaffTask, Touchpoint

UTC = timezone.utc


class WorkerKilled(BaseException):
    """Stands in for a worker process dying (SIGKILL, OOM): not an ``Exception``, nothing catches it."""


def _predicate(spec: Iterable[str] | Callable[[Message], bool]) -> Callable[[Message], bool]:
    """Collections match by idempotency key; callables receive the message."""
    if callable(spec):
        return spec
    keys = set(spec)
    return lambda m: m.idempotency_key in keys


class RecordingChannel(Channel):
    """A provider double: records every idempotency key it is asked to send (thread-safe).

    - ``retryable`` / ``permanent``: keys (or predicates on the message) answered with
      ``SendResult.retryable("busy")`` / ``SendResult.permanent("refused")``;
      ``retryable_times`` limits how many times a key fails transiently before it succeeds;
    - ``sleep``: seconds to sleep per message (a slow provider);
    - ``inner``: another channel to delegate successful sends to (e.g. the outbox channel);
    - ``crash_after_send``: the provider accepted the message, then the worker dies before
      the result is recorded (raises :class:`WorkerKilled`).
    """

    type_name = "recording"

    def __init__(self, name: str = "sms", *, address_kind: str = "phone",
                 retryable: Iterable[str] | Callable[[Message], bool] = (),
                 permanent: Iterable[str] | Callable[[Message], bool] = (),
                 retryable_times: int | None = None, sleep: float = 0.0, inner: Channel | None = None,
                 crash_after_send: bool = False) -> None:
        super().__init__(name)
        self.address_kind = address_kind  # type: ignore[misc]
        self._lock = threading.Lock()
        self.keys: list[str] = []
        self.messages: list[Message] = []
        self._retryable = _predicate(retryable)
        self._permanent = _predicate(permanent)
        self.retryable_times = retryable_times
        self._transient: Counter[str] = Counter()
        self.sleep = sleep
        self.inner = inner
        self.crash_after_send = crash_after_send
        self._n = 0

    def bind(self, engine: Any) -> None:
        if self.inner is not None:
            self.inner.bind(engine)

    def send(self, message: Message) -> SendResult:
        with self._lock:
            self.keys.append(message.idempotency_key)
            self.messages.append(message)
            self._n += 1
            n = self._n
        if self.sleep:
            time.sleep(self.sleep)
        if self._permanent(message):
            return SendResult.permanent("refused", "provider refused the recipient")
        if self._retryable(message):
            with self._lock:
                self._transient[message.idempotency_key] += 1
                failures = self._transient[message.idempotency_key]
            if self.retryable_times is None or failures <= self.retryable_times:
                return SendResult.retryable("busy", "provider busy")
        if self.inner is not None:
            result = self.inner.send(message)
        else:
            result = SendResult.sent(f"{self.name}-{n}")
        if self.crash_after_send:
            raise WorkerKilled(message.idempotency_key)
        return result

    def sent_keys(self) -> Counter[str]:
        with self._lock:
            return Counter(self.keys)


def make_engine(database_url: str, settings: Settings, clock: VirtualClock, journeys: Sequence[Journey],
                channels: Mapping[str, Channel], **kw: Any) -> Engine:
    return Engine(database_url, journeys=list(journeys), channels=dict(channels), templates={}, clock=clock,
                  settings=settings, **kw)


@contextmanager
def running_engine(database_url: str, settings: Settings, clock: VirtualClock, journeys: Sequence[Journey],
                   channels: Mapping[str, Channel], **kw: Any) -> Iterator[Engine]:
    """An engine with patient M1 (张三, with a phone) registered; closed afterwards."""
    engine = make_engine(database_url, settings, clock, journeys, channels, **kw)
    try:
        engine.upsert_patient(PatientIn(mrn="M1", name="张三", phone="13812341234"))
        yield engine
    finally:
        engine.close()


_event_numbers = itertools.count(1)


class Events:
    """Builds events for one patient; every event gets a fresh source id unless one is given."""

    def __init__(self, clock: VirtualClock, mrn: str = "M1", source: str = "his") -> None:
        self.clock = clock
        self.mrn = mrn
        self.source = source

    def __call__(self, type_: str, payload: dict | None = None, *, source_id: str | None = None,
                 occurred_at: datetime | None = None, mrn: str | None = None) -> EventIn:
        n = next(_event_numbers)
        return EventIn(type=type_, source=self.source, source_id=source_id or f"{mrn or self.mrn}-{type_}-{n}",
                       patient_mrn=mrn or self.mrn, occurred_at=occurred_at or self.clock.now(),
                       payload=payload or {})


def _rows(engine: Engine, model: Any, **where: Any) -> list[Any]:
    """Rows of ``model``'s table (ordered by id), filtered by column equality."""
    q = select(model.__table__).order_by(model.id)
    for col, value in where.items():
        q = q.where(getattr(model, col) == value)
    with engine.db.connect() as conn:
        return list(conn.execute(q))


def touchpoints(engine: Engine, **where: Any) -> list[Any]:
    return _rows(engine, Touchpoint, **where)


def one_touchpoint(engine: Engine, **where: Any) -> Any:
    rows = touchpoints(engine, **where)
    assert len(rows) == 1, rows
    return rows[0]


def enrollments(engine: Engine, **where: Any) -> list[Any]:
    return _rows(engine, Enrollment, **where)


def deliveries(engine: Engine, touchpoint_id: int | None = None) -> list[Any]:
    q = select(Delivery.__table__).order_by(Delivery.id)
    if touchpoint_id is not None:
        q = q.where(Delivery.touchpoint_id == touchpoint_id)
    with engine.db.connect() as conn:
        return list(conn.execute(q))


def staff_tasks(engine: Engine) -> list[Any]:
    with engine.db.connect() as conn:
        return list(conn.execute(select(StaffTask.__table__).order_by(StaffTask.id)))


def snapshot(engine: Engine, exclude: Iterable[str] = ()) -> dict[str, list[tuple]]:
    """Every row of every carepath table (for "nothing changed" assertions)."""
    skip = set(exclude)
    out: dict[str, list[tuple]] = {}
    with engine.db.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name in skip:
                continue
            out[table.name] = [tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key.columns))]
    return out


def raw_rows(engine: Engine, table: str) -> list[tuple]:
    """Rows exactly as stored (no type decoding): what someone reading the database file sees."""
    with engine.db.connect() as conn:
        return [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table}"))]


__all__ = ["UTC", "WorkerKilled", "RecordingChannel", "make_engine", "running_engine", "Events", "touchpoints", "one_touchpoint",
           "enrollments", "deliveries", "staff_tasks", "snapshot", "raw_rows"]

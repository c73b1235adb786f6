"""Delivery integrity: an attempt per provider call, reconciliation, bounded re-sends, leases, poison, receipts, outages."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Sequence

import pytest
from sqlalchemy import event, func, select

from carepath.connectors.outbox import OutboxChannel, OutboxConfig
from carepath.definition.dsl import after, enroll_on, journey, send, step, template
from carepath.definition.events import PatientIn
from carepath.plugins.contracts import Capabilities, LookupResult, Message, SendResult
from carepath.reporting import timeline_tables
from carepath.store.schema import EarlyReceipt, OutboxMessage
from tests.clocks import DaytimeClock
from tests.conftest import ON_POSTGRES
from tests.engine import helpers as h

TEMPLATES = [template("t", "{{ patient.name }}您好")]
STEPS = [step("s", "post_visit", after("enrolled", "0s"), send("t", ["sms"]))]


class DyingChannel(h.RecordingChannel):
    """Kills its worker on chosen keys: before the provider takes the message, or just after."""

    def __init__(self, *args, die_before: Sequence[str] = (), die_after: Sequence[str] = (), cost: float | None = None,
                 **kw) -> None:
        super().__init__(*args, **kw)
        self.die_before, self.die_after, self.cost = set(die_before), set(die_after), cost

    def send(self, message: Message) -> SendResult:
        if message.idempotency_key in self.die_before:
            with self._lock:
                self.keys.append(message.idempotency_key)
            raise h.WorkerKilled(message.idempotency_key)
        result = super().send(message)
        if message.idempotency_key in self.die_after:
            raise h.WorkerKilled(message.idempotency_key)
        return SendResult.sent(result.provider_id, self.cost) if result.ok and self.cost is not None else result


class LookupChannel(DyingChannel):
    """A provider that can say whether it took a message (delegates to the outbox, which records them)."""

    capabilities = Capabilities(lookup=True)

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, inner=OutboxChannel("sms", OutboxConfig(address="phone")), **kw)
        self.lookups: list[str] = []

    def lookup(self, message: Message, attempted_at: datetime) -> LookupResult:
        self.lookups.append(message.idempotency_key)
        return self.inner.lookup(message, attempted_at)


@pytest.fixture
def make(database_url, settings, clock):
    made = []

    def _make(channel, *, n=0, worker_id=None, eng_clock=None, **kw):
        j = journey("care", enroll=enroll_on("program.joined"), templates=TEMPLATES, steps=STEPS)
        eng = h.make_engine(database_url, settings, eng_clock or clock, [j], {"sms": channel}, worker_id=worker_id,
                            **kw)
        made.append(eng)
        if n:
            ids = eng.upsert_patients([PatientIn(mrn=f"M{i:04d}", name=f"患者{i}", phone=f"139{i:08d}")
                                       for i in range(n)])
            assert eng.enroll_many("care", [(pid, {}) for pid in ids]) == n
        return eng

    yield _make
    for eng in made:
        eng.close()


def keys(eng) -> list[str]:
    return [f"{t.idempotency_key}:sms" for t in h.touchpoints(eng)]


def restart(make, channel, clock, name, **kw):
    """A new worker after the last one died: its leases run out first."""
    clock.advance(timedelta(minutes=6))
    return make(channel, worker_id=name, **kw)


# ------------------------------------------------------- an attempt is a provider call


def test_crash_resend_is_a_new_attempt_and_the_dead_one_stays_unknown(make, clock):
    first = DyingChannel("sms", die_after=["1:s:0:sms"], cost=0.04)
    dead = make(first, n=1, worker_id="dead")
    with pytest.raises(h.WorkerKilled):
        dead.dispatch_due()
    live_channel = DyingChannel("sms", cost=0.04)
    live = restart(make, live_channel, clock, "live")
    report = live.dispatch_due()
    assert (report.sent, report.reclaimed) == (1, 1)
    tp = h.one_touchpoint(live)
    assert (tp.status, tp.attempts, tp.claims) == ("sent", 2, 0)
    rows = h.deliveries(live, tp.id)
    assert [(d.attempt, d.status, d.cost) for d in rows] == [(1, "unknown", None), (2, "sent", 0.04)], \
        "the dead call's row is kept as unknown; cost counted once"
    assert first.keys == live_channel.keys == [keys(live)[0]], "the re-send carries the same key"


def test_max_attempts_bounds_crash_resends(make, clock):
    key = "1:s:0:sms"
    eng = make(DyingChannel("sms", die_after=[key]), n=1, worker_id="w0", max_attempts=2)
    with pytest.raises(h.WorkerKilled):
        eng.dispatch_due()
    with pytest.raises(h.WorkerKilled):
        restart(make, DyingChannel("sms", die_after=[key]), clock, "w1", max_attempts=2).dispatch_due()
    last_channel = DyingChannel("sms")
    last = restart(make, last_channel, clock, "w2", max_attempts=2)
    assert last.dispatch_due().outcomes["failed"] == 1
    tp = h.one_touchpoint(last)
    assert (tp.status, tp.attempts) == ("failed", 2)
    assert "sms: no result after 2 attempts" in tp.reason
    assert last_channel.keys == [], "no third call"
    assert [t.kind for t in h.staff_tasks(last)] == ["contact_patient"]


# -------------------------------------------------------------- reconcile before re-sending


def test_unknown_attempt_the_provider_took_is_reconciled_not_resent(make, clock, settings):
    dying = LookupChannel("sms", die_after=["1:s:0:sms"])
    dead = make(dying, n=1, worker_id="dead")
    with pytest.raises(h.WorkerKilled):
        dead.dispatch_due()
    healthy = LookupChannel("sms")
    live = restart(make, healthy, clock, "live")
    report = live.dispatch_due()
    assert (report.sent, report.reconciled) == (1, 1)
    tp = h.one_touchpoint(live)
    assert healthy.keys == [] and healthy.lookups == [keys(live)[0]], "asked, not sent again"
    with live.db.connect() as conn:
        outbox_id = conn.execute(select(OutboxMessage.id)).scalar_one()
        timeline = timeline_tables(conn, live.cipher, tp.patient_id)
    assert [(d.attempt, d.status, d.provider_id) for d in h.deliveries(live, tp.id)] == \
        [(1, "unknown", None), (2, "reconciled", f"outbox-{outbox_id}")]
    assert (tp.status, tp.attempts) == ("sent", 2)
    assert "reconciled attempt 1" in tp.reason
    from rich.console import Console

    console = Console(record=True, width=300)
    for part in timeline:
        console.print(part)
    text = console.export_text()
    assert "#1 sms:unknown (worker died during the call)" in text
    assert "#2 sms:reconciled (provider had it)" in text


def test_unknown_attempt_the_provider_never_took_is_sent_again(make, clock):
    dead = make(LookupChannel("sms", die_before=["1:s:0:sms"]), n=1, worker_id="dead")
    with pytest.raises(h.WorkerKilled):
        dead.dispatch_due()
    healthy = LookupChannel("sms")
    live = restart(make, healthy, clock, "live")
    assert live.dispatch_due().sent == 1
    tp = h.one_touchpoint(live)
    assert [(d.attempt, d.status) for d in h.deliveries(live, tp.id)] == \
        [(1, "unknown"), (2, "not_found"), (3, "sent")]
    assert healthy.lookups == healthy.keys == keys(live)
    with live.db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(OutboxMessage)).scalar() == 1


# ------------------------------------------------------------------- bounded re-sends


def test_a_crash_resends_only_the_call_in_flight(make, clock):
    dying = DyingChannel("sms", die_after=["3:s:0:sms"])
    dead = make(dying, n=6, worker_id="dead")
    with pytest.raises(h.WorkerKilled):
        dead.dispatch_due()
    rows = h.touchpoints(dead)
    assert [t.status for t in rows] == ["sent", "sent", "claimed", "claimed", "claimed", "claimed"], \
        "results are recorded as each call returns"
    healthy = DyingChannel("sms")
    live = restart(make, healthy, clock, "live")
    assert live.dispatch_due().sent == 4
    sent = Counter(dying.keys) + Counter(healthy.keys)
    assert set(sent) == set(keys(live))
    assert [k for k, n in sent.items() if n > 1] == ["3:s:0:sms"], "one re-send: the message in flight"


class ChunkChannel(DyingChannel):
    """A provider taking many messages per call."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.calls: list[int] = []

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        self.calls.append(len(messages))
        return [self.send(m) for m in messages]


def test_send_batch_chunks_are_recorded_as_each_returns(make, clock):
    dying = ChunkChannel("sms", die_after=["5:s:0:sms"])
    dead = make(dying, n=7, worker_id="dead")
    dead.dispatcher.chunk = 2
    with pytest.raises(h.WorkerKilled):
        dead.dispatch_due()
    assert dying.calls == [2, 2, 2]
    assert [t.status for t in h.touchpoints(dead)] == ["sent"] * 4 + ["claimed"] * 3
    healthy = ChunkChannel("sms")
    live = restart(make, healthy, clock, "live")
    assert live.dispatch_due().sent == 3
    sent = Counter(dying.keys) + Counter(healthy.keys)
    assert set(sent) == set(keys(live)) and sum(sent.values()) - len(sent) <= 2, "at most the chunk in flight"


# ------------------------------------------------------------------------- poison


def workers_in_turn(make, clock, channels, n: int, die_rendering: str | None = None):
    """A worker per channel, each after the last one died: ``(the last engine, its report, deaths)``;
    ``die_rendering``: the key of a touchpoint whose rendering kills its worker."""
    eng, report, deaths = None, None, 0
    for i, channel in enumerate(channels):
        eng = restart(make, channel, clock, f"w{i}") if i else make(channel, n=n, worker_id="w0")
        decide = eng.dispatcher._decide

        def dying(tp, *args, decide=decide):
            if tp.idempotency_key == die_rendering:
                raise h.WorkerKilled(die_rendering)
            return decide(tp, *args)

        eng.dispatcher._decide = dying
        try:
            report = eng.dispatch_due()
        except h.WorkerKilled:
            deaths += 1
    return eng, report, deaths


def test_a_touchpoint_that_kills_its_worker_is_quarantined_and_the_rest_flows(make, clock, caplog):
    poison = "4:s:0:sms"
    channels = [DyingChannel("sms", die_before=[poison]) for _ in range(4)]
    eng, report, deaths = workers_in_turn(make, clock, channels, 10)
    assert deaths == 3, "claimed three times without a result, then set aside"
    assert report.outcomes["quarantined"] == 1
    [event] = report.quarantined
    tp = h.one_touchpoint(eng, idempotency_key="4:s:0")
    assert event["touchpoint_id"] == tp.id and event["step"] == "s"
    assert tp.status == "quarantined" and tp.reason.startswith("quarantined: its worker died or hung 3 times")
    assert "quarantined" in caplog.text
    others = [t for t in h.touchpoints(eng) if t.id != tp.id]
    assert {t.status for t in others} == {"sent"}
    sent = Counter(k for c in channels for k in c.keys)
    assert all(sent[f"{t.idempotency_key}:sms"] == 1 for t in others), "the healthy ones are sent once each"
    assert {d.status for d in h.deliveries(eng, tp.id)} == {"unknown"}
    fixed = DyingChannel("sms")
    eng = restart(make, fixed, clock, "fixed")
    assert eng.dispatcher.release_quarantined([tp.id]) == 1
    assert eng.dispatch_due().sent == 1 and fixed.keys == [poison], "released once the cause is fixed"
    assert [d.status for d in h.deliveries(eng, tp.id)] == ["unknown"] * 3 + ["sent"]


def test_deaths_a_touchpoint_did_not_cause_do_not_quarantine_it(make, clock):
    """Kills that land while a suspect waits for its trial alone, and one during that trial, are not a poison."""
    suspect, other = "3:s:0:sms", "5:s:0:sms"
    # w0 dies in the suspect's call (it may be what killed it); w1 in another touchpoint's call while the suspect
    # waits for its turn alone; w2 in the suspect's call again during its trial alone (an unrelated kill landing)
    channels = [DyingChannel("sms", die_before=[suspect]), DyingChannel("sms", die_before=[other]),
                DyingChannel("sms", die_before=[suspect]), DyingChannel("sms")]
    eng, report, deaths = workers_in_turn(make, clock, channels, 6)
    assert deaths == 3 and report.quarantined == [], "three deaths, two charged to it: not quarantined"
    assert {t.status for t in h.touchpoints(eng)} == {"sent"}
    assert channels[3].keys == [other, suspect], "the suspects sent by the last worker, the least charged first"
    tp = h.one_touchpoint(eng, idempotency_key="3:s:0")
    assert [d.status for d in h.deliveries(eng, tp.id)] == ["unknown", "unknown", "sent"]


def test_a_touchpoint_that_kills_its_worker_while_rendering_is_quarantined_after_three_trials_alone(make, clock):
    poison = "4:s:0"
    eng, report, deaths = workers_in_turn(make, clock, [DyingChannel("sms") for _ in range(5)], 10, poison)
    # its first death took its whole batch down: the batch was suspected, nothing charged; then three trials alone
    assert deaths == 4 and [q["touchpoint_id"] for q in report.quarantined] == [h.one_touchpoint(
        eng, idempotency_key=poison).id]
    assert {t.status for t in h.touchpoints(eng) if t.idempotency_key != poison} == {"sent"}


def test_reclaiming_abandoned_work_never_starves_due_work(make, clock):
    dead = make(DyingChannel("sms"), n=10, worker_id="dead")
    abandoned = {t.id for t in dead.dispatcher.claim(limit=5)}  # ... and the worker dies
    clock.advance(timedelta(minutes=6))
    live = make(DyingChannel("sms"), worker_id="live")
    report = live.dispatcher.run_batch(limit=4)
    assert (report.claimed, report.reclaimed, report.sent) == (5, 1, 5), "four due ones, then one abandoned"
    sent = {t.id for t in h.touchpoints(live, status="sent")}
    assert len(sent - abandoned) == 4 and len(sent & abandoned) == 1
    assert live.dispatch_due(batch=4).sent == 5
    assert {t.status for t in h.touchpoints(live)} == {"sent"}


# ------------------------------------------------------------------- early receipts


def test_a_receipt_before_its_delivery_is_kept_and_applied_when_recorded(make, clock):
    eng = make(DyingChannel("sms"), n=1)
    result = eng.ingest(h.Events(clock, "M0000")("message.delivered", {"provider_id": "sms-1"}))
    assert "kept" in result.summary()
    with eng.db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(EarlyReceipt)).scalar() == 1
    assert eng.dispatch_due().sent == 1
    tp = h.one_touchpoint(eng)
    [d] = h.deliveries(eng, tp.id)
    assert (d.provider_id, d.status, tp.status) == ("sms-1", "delivered", "delivered")
    with eng.db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(EarlyReceipt)).scalar() == 0


# ----------------------------------------------------------------------------- leases


def test_slow_provider_renews_its_lease_and_cuts_its_batch_short(make, clock):
    """A provider slower than the lease: no other worker takes over while one sends; the batch stops at its lease."""
    real = DaytimeClock()  # real seconds for the leases, at a time of day messages may go out
    lease = timedelta(seconds=1.2)
    slow = DyingChannel("sms", sleep=0.15)
    a = make(slow, n=16, worker_id="a", eng_clock=real, lease=lease)
    b = make(slow, worker_id="b", eng_clock=real, lease=lease)
    reports: dict[str, list] = {"a": [], "b": []}
    errors: list[BaseException] = []
    stop = threading.Event()

    def poll(eng, name):
        try:
            while not stop.is_set():
                reports[name].append(eng.dispatch_due(batch=16, max_batches=1))
                time.sleep(0.05)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    first = a.dispatch_due(batch=16, max_batches=1)  # takes all 16, b polls meanwhile
    worker = threading.Thread(target=poll, args=(b, "b"))
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(t.status != "sent" for t in h.touchpoints(a)):
            time.sleep(0.1)
    finally:
        stop.set()
        worker.join(10)
    assert not errors, errors
    assert first.released > 0 and first.sent + first.released == 16, "cut short at the lease, rest handed back"
    assert {t.status for t in h.touchpoints(a)} == {"sent"}
    assert Counter(slow.keys) == Counter(keys(a)), "every key sent exactly once"
    assert sum(r.reclaimed for r in reports["b"]) == 0, "the renewed lease was never taken over"
    assert {d.status for d in h.deliveries(a)} == {"sent"}


# ------------------------------------------------------------------ database outages


@pytest.mark.skipif(ON_POSTGRES, reason="SQLite busy periods (PostgreSQL outages: tests/reliability)")
def test_dispatch_rides_out_a_sqlite_busy_period(make, clock, database_url, caplog):
    eng = make(DyingChannel("sms"), n=20)

    @event.listens_for(eng.db, "connect")
    def _short_busy_timeout(dbapi_conn, _record):  # so the lock outlasts it
        dbapi_conn.execute("PRAGMA busy_timeout=50")

    eng.db.dispose()
    blocker = sqlite3.connect(database_url.split("///", 1)[1], isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the file
    threading.Timer(1.0, blocker.rollback).start()
    caplog.set_level(logging.INFO)
    started = time.monotonic()
    report = eng.dispatch_due(batch=5)
    blocker.close()
    assert time.monotonic() - started >= 0.9
    assert report.sent == 20 and {t.status for t in h.touchpoints(eng)} == {"sent"}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "carepath.database"]
    assert len(warnings) == 1 and "database unavailable" in warnings[0].getMessage(), "logged once"
    assert "database available again" in caplog.text
    assert eng.dispatcher.guard.outages == 1

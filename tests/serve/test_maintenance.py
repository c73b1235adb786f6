"""Maintenance jobs: staff-task SLA escalation, lease reclaim, the job registry (no Prefect involved)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, select, update

from carepath.connectors.outbox import OutboxChannel
from carepath.definition.dsl import enroll_on, journey, on, send, step, template
from carepath.definition.events import EventIn, PatientIn
from carepath.engine import Engine
from carepath.plugins.contracts import ConnectorConfig, HisSource, SourceUnavailable
from carepath.runtime import maintenance
from carepath.runtime.dispatch.claim import TRIAL
from carepath.store.schema import Delivery, StaffTask, Touchpoint


def _booking(clock) -> dict:
    return {"start": (clock.now() + timedelta(days=2)).isoformat(), "appointment_id": "A1"}


def _engine(database_url, settings, clock) -> Engine:
    j = journey("m-check", enroll=enroll_on("appointment.booked"), templates=[template("hi", "您好")],
                steps=[step("hi", "pre_visit", on("appointment.booked"), send("hi", ["outbox"]))])
    engine = Engine(database_url, journeys=[j], channels={"outbox": OutboxChannel("outbox")}, templates={},
                    clock=clock, settings=settings)
    engine.upsert_patient(PatientIn(mrn="M1", phone="13900001111"))
    return engine


def test_tasks_past_their_sla_are_reported_once_as_notices(database_url, settings, clock):
    engine = _engine(database_url, settings, clock)
    now = clock.now()
    with engine.db.begin() as conn:
        conn.execute(insert(StaffTask), [
            dict(patient_id=1, kind="call_patient", team="nursing", status="open", sla_due_at=now - timedelta(hours=2),
                 created_at=now - timedelta(days=1)),
            dict(patient_id=1, kind="call_patient", team="nursing", status="open", sla_due_at=now + timedelta(hours=2),
                 created_at=now),
            dict(patient_id=1, kind="complaint", team="service", status="done", sla_due_at=now - timedelta(hours=2),
                 created_at=now - timedelta(days=1))])
    result = maintenance.check_task_slas(engine)
    assert result.count == 1
    [notice] = result.notices
    assert notice.event == "carepath.task.sla_breached" and notice.resource_id == "carepath.task.1"
    assert notice.labels == {"carepath.task-kind": "call_patient", "carepath.team": "nursing",
                             "carepath.patient-id": "1"}
    assert notice.payload["deadline"] == "resolution"
    assert maintenance.check_task_slas(engine).count == 0  # reported once
    engine.close()


def _claimed(engine, clock, n: int) -> list:
    """``n`` bookings (patients M1…), their touchpoints claimed by one worker."""
    for i in range(n):
        mrn = f"M{i + 1}"
        engine.upsert_patient(PatientIn(mrn=mrn, phone=f"1390000{i:04d}"))
        engine.ingest(EventIn(type="appointment.booked", source="his", source_id=str(i), patient_mrn=mrn,
                              occurred_at=clock.now(), payload=_booking(clock)), dispatch_urgent=False)
    return engine.dispatcher.claim(limit=10)


def _worker_died(engine, clock, tp_ids: list[int], *, claims: int = 0, calling: int | None = None) -> None:
    """The worker holding ``tp_ids`` died: leases run out; ``calling`` was in a provider call."""
    with engine.db.begin() as conn:
        conn.execute(update(Touchpoint).where(Touchpoint.id.in_(tp_ids))
                     .values(lease_until=clock.now() - timedelta(seconds=1), claims=claims))
        if calling is not None:
            conn.execute(insert(Delivery).values(touchpoint_id=calling, attempt=1, channel="outbox",
                                                 status="sending", created_at=clock.now(), updated_at=clock.now()))


def _rows(engine, *cols, **where):
    with engine.db.connect() as conn:
        return [tuple(r) for r in conn.execute(select(*cols).filter_by(**where).order_by(*cols))]


def test_expired_leases_go_back_to_scheduled(database_url, settings, clock):
    engine = _engine(database_url, settings, clock)
    waiting, dead, alive = _claimed(engine, clock, 3)
    # the worker rendered `waiting` and `dead` (rendering takes a claim back) and died calling the provider on `dead`
    _worker_died(engine, clock, [waiting.id, dead.id], calling=dead.id)
    result = maintenance.reclaim_leases(engine)
    assert (result.count, result.notices) == (1, [])
    statuses = dict(_rows(engine, Touchpoint.id, Touchpoint.status))
    # the one in flight may be what killed the worker: it waits for a dispatcher to take it over on its own
    assert statuses == {waiting.id: "scheduled", dead.id: "claimed", alive.id: "claimed"}
    assert engine.dispatch_due().sent == 2
    # the dead call counts, and is looked up before anything is sent again (the provider never had it)
    assert _rows(engine, Delivery.attempt, Delivery.status, touchpoint_id=dead.id) == [
        (1, "unknown"), (2, "not_found"), (3, "sent")]
    assert _rows(engine, Touchpoint.attempts, id=dead.id) == [(3,)]
    assert _rows(engine, Delivery.attempt, Delivery.status, touchpoint_id=waiting.id) == [(1, "sent")]
    engine.close()


def test_a_touchpoint_that_keeps_killing_its_workers_is_quarantined_by_maintenance(database_url, settings, clock):
    engine = _engine(database_url, settings, clock)
    poison, healthy = _claimed(engine, clock, 2)
    # both claimed before, and each time the worker died in `poison`'s provider call (e.g. the process ran out of
    # memory); `healthy` was never reached, so it was never suspected. `poison` died twice already and now on its
    # trial alone (claimed with its two deaths plus TRIAL, one taken back by its rendering), in its call again
    _worker_died(engine, clock, [poison.id], claims=engine.dispatcher.poison_after - 1 + TRIAL - 1, calling=poison.id)
    _worker_died(engine, clock, [healthy.id])
    result = maintenance.reclaim_leases(engine)
    assert result.count == 2
    [notice] = result.notices
    assert (notice.event, notice.resource_id) == ("carepath.touchpoint.quarantined", f"carepath.touchpoint.{poison.id}")
    assert notice.labels == {"carepath.journey": "m-check", "carepath.step": "hi"}
    assert "release it once the cause is fixed" in notice.payload["reason"]
    assert dict(_rows(engine, Touchpoint.id, Touchpoint.status)) == {
        poison.id: "quarantined", healthy.id: "scheduled"}
    assert _rows(engine, Delivery.status, touchpoint_id=poison.id) == [("unknown",)]
    assert engine.dispatch_due().sent == 1 and maintenance.reclaim_leases(engine).count == 0
    engine.close()


def test_registered_jobs_run_in_order(monkeypatch):
    monkeypatch.setattr(maintenance, "JOBS", dict(maintenance.JOBS))
    maintenance.register("inactivity", lambda engine: 3)
    names = list(maintenance.jobs())
    assert names[:2] == ["reclaim_leases", "task_sla"] and "inactivity" in names
    assert maintenance.JobResult.of(3).count == 3 and maintenance.JobResult.of(None).count == 0


class _FeedConfig(ConnectorConfig):
    interval: float = 3600.0


class _Feed(HisSource):
    """A polling HIS source (every hour): one booking per poll, or down."""

    type_name = "test-feed"
    Config = _FeedConfig

    def __init__(self, name: str, clock, down: bool = False) -> None:
        super().__init__(name)
        self.clock, self.down, self.polls = clock, down, []

    def poll(self, cursor):
        self.polls.append(cursor)
        if self.down:
            raise SourceUnavailable("connection refused")
        n = int(cursor or 0)
        return [EventIn(type="appointment.booked", source=self.name, source_id=str(n), patient_mrn="M1",
                        occurred_at=self.clock.now(), payload=_booking(self.clock))], str(n + 1)


def test_his_sources_are_polled_with_their_cursor_and_a_down_one_is_reported(database_url, settings, clock):
    from carepath.runtime.maintenance import _last_polled

    feed, down = _Feed("feed", clock), _Feed("down-feed", clock, down=True)
    engine = _engine(database_url, settings, clock)
    engine.connectors.update({"feed": feed, "down-feed": down})
    _last_polled.clear()
    first = maintenance.poll_his_sources(engine)
    assert first.count == 1 and feed.polls == [None]
    [notice] = first.notices
    assert (notice.event, notice.resource_id) == ("carepath.connector.down", "carepath.connector.down-feed")
    assert maintenance.poll_his_sources(engine).count == 0 and feed.polls == [None]  # its interval has not passed
    _last_polled.clear()
    assert maintenance.poll_his_sources(engine).count == 1 and feed.polls == [None, "1"]  # the stored cursor
    engine.close()


def test_operator_alerts_are_published_once(database_url, settings, clock):
    from carepath.runtime.alerts import CONNECTOR_DOWN, raise_alert

    engine = _engine(database_url, settings, clock)
    assert raise_alert(engine, kind=CONNECTOR_DOWN, source="sms-aliyun", code="isv.AMOUNT_NOT_ENOUGH",
                       detail="account out of balance")
    result = maintenance.publish_alerts(engine)
    [notice] = result.notices
    assert (notice.event, notice.resource_id) == ("carepath.connector.down", "carepath.connector.sms-aliyun")
    assert notice.payload == {"detail": "account out of balance"}
    assert maintenance.publish_alerts(engine).count == 0
    engine.close()

"""Many events in one transaction (``Engine.ingest_many``) do exactly what one ``Engine.ingest`` per event does:
the same touchpoints, the same deduplication of resent events, held and refused events alike; an event that
fails is reported in its place, leaves nothing behind, and the events around it are applied."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from carepath.definition.dsl import on, send, step, template
from carepath.definition.events import EventIn, EventRejected, PatientIn
from carepath.definition.model import Journey
from carepath.runtime.bulk_ingest import ingest_lines
from carepath.store.schema import Base, Enrollment, Event, Touchpoint
from tests.conftest import ON_POSTGRES
from tests.engine import helpers as h
from tests.engine.test_event_semantics import VISIT, slot

#: the visit journey plus an urgent step sent as the patient checks in (dispatched after the commit)
JOURNEY = Journey.model_validate({
    **{name: getattr(VISIT, name) for name in Journey.model_fields},
    "templates": {**VISIT.templates, "queue": template("queue", "请到 {{ event.room }} 候诊")},
    "steps": [*VISIT.steps, step("queue", "in_visit", on("visit.checked_in"), send("queue", ["sms"]),
                                 category="urgent")]})


def _event_maker(clock):
    at = clock.now()

    def ev(type_: str, mrn: str, sid: str, minutes: int, **payload) -> EventIn:
        return EventIn(type=type_, source="his", source_id=sid, patient_mrn=mrn,
                       occurred_at=at - timedelta(minutes=30 - minutes), payload=payload)  # all due now

    return ev


def _events(clock) -> list[EventIn]:
    """Two patients' bookings, check-ins and reports, with every kind of resend, a patient not yet registered,
    an event refused at the door, a refused payload and a cancellation."""
    ev = _event_maker(clock)
    return [
        ev("appointment.booked", "M1", "b1", 0, appointment_id="A1", start=slot(9)),
        ev("appointment.booked", "M2", "b2", 1, appointment_id="A2", start=slot(10)),
        ev("appointment.booked", "M1", "b1", 2, appointment_id="A1", start=slot(9)),  # the same event resent
        ev("visit.checked_in", "M1", "c1", 3, appointment_id="A1", room="3诊室"),
        ev("visit.checked_in", "M1", "c1-again", 4, appointment_id="A1", room="3诊室"),  # same check-in, new id
        ev("appointment.bokked", "M2", "typo", 5, appointment_id="A2"),  # refused at the door: an error
        ev("report.ready", "M1", "r1", 6, appointment_id="A1", report_id="R1"),
        ev("report.ready", "M1", "r1-again", 7, appointment_id="A1", report_id="R1"),  # same report, new id
        ev("appointment.booked", "M9", "b9", 8, appointment_id="A9", start=slot(11)),  # M9 not registered: held
        ev("appointment.booked", "M2", "b3", 9, appointment_id="A3", start="2026-05-12T14:00:00"),  # no zone
        ev("appointment.cancelled", "M2", "x2", 10, appointment_id="A2"),
    ]


def _fresh(database_url: str, tmp_path: Path, name: str) -> str:
    """A second clean database: another file on SQLite, the same one emptied on PostgreSQL."""
    if not ON_POSTGRES:
        return f"sqlite:///{tmp_path / name}"
    from carepath.store import open_database

    db = open_database(database_url)
    with db.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(t.name for t in Base.metadata.sorted_tables)} "
                          "RESTART IDENTITY CASCADE"))
    db.dispose()
    return database_url


def _state(engine, sms: h.RecordingChannel) -> dict:
    """What a reader of the engine's tables and the channel sees (ids are the same: same order of inserts)."""
    with engine.db.connect() as conn:
        events = [tuple(r) for r in conn.execute(select(Event.source_id, Event.type, Event.patient_id, Event.status,
                                                        Event.outcome, Event.hold_key).order_by(Event.id))]
        enrollments = [tuple(r) for r in conn.execute(select(Enrollment.patient_id, Enrollment.key,
                                                             Enrollment.status, Enrollment.anchors)
                                                      .order_by(Enrollment.id))]
        touchpoints = [tuple(r) for r in conn.execute(select(
            Touchpoint.idempotency_key, Touchpoint.step, Touchpoint.status, Touchpoint.due_at, Touchpoint.reason)
            .order_by(Touchpoint.id))]
    return {"events": events, "enrollments": enrollments, "touchpoints": touchpoints,
            "messages": [(m.address, m.body) for m in sms.messages]}


def _outcome(result) -> tuple:
    if isinstance(result, Exception):
        return ("error", type(result).__name__, str(result))
    return (result.status, result.state if not result.duplicate else None, result.planned, tuple(result.enrolled),
            tuple(result.resent), tuple(result.held), tuple(result.refused), len(result.urgent_touchpoints))


def _changing_events(clock) -> list[EventIn]:
    """Events that change, for the events after them in the same batch, who an MRN names: a patient not yet
    registered (held), then registered by a record an event carries (which releases it), then an ordinary event
    of that patient; a merge, then an event under the merged MRN."""
    ev = _event_maker(clock)
    return [
        ev("appointment.booked", "M1", "b1", 0, appointment_id="A1", start=slot(9)),
        ev("appointment.booked", "M9", "b9", 1, appointment_id="A9", start=slot(11)),  # M9 not registered: held
        ev("appointment.booked", "M9", "b10", 2, appointment_id="A10", start=slot(12),
           patient={"phone": "13712341234"}),  # registers M9: b9 released
        ev("visit.checked_in", "M9", "c9", 3, appointment_id="A9", room="1诊室"),  # M9 is known now
        ev("patient.merged", "M2", "m1", 4, merged_mrn="M1"),  # M1's record merged into M2
        ev("visit.checked_in", "M1", "c1", 5, appointment_id="A1", room="3诊室"),  # M1 now names M2
    ]


def _run(url: str, settings, clock, batched: bool, make_events=_events) -> tuple[list, dict]:
    sms = h.RecordingChannel("sms")
    start = clock.now()
    engine = h.make_engine(url, settings, clock, [JOURNEY], {"sms": sms})
    try:
        engine.upsert_patients([PatientIn(mrn="M1", phone="13812341234"), PatientIn(mrn="M2", phone="13912341234")])
        events = make_events(clock)
        if batched:
            outcomes = engine.ingest_many(events, received_via="test")
        else:
            outcomes = []
            for event in events:
                try:
                    outcomes.append(engine.ingest(event, received_via="test"))
                except EventRejected as exc:
                    outcomes.append(exc)
        return [_outcome(o) for o in outcomes], _state(engine, sms)
    finally:
        engine.close()
        clock.set(start)


def test_a_batch_does_what_one_transaction_per_event_does(database_url, settings, clock, tmp_path) -> None:
    one_by_one, state_one = _run(database_url, settings, clock, batched=False)
    batched, state_batch = _run(_fresh(database_url, tmp_path, "batched.db"), settings, clock, batched=True)
    assert batched == one_by_one
    assert state_batch == state_one
    # what the comparison is about: every kind of event of the list did what it should
    kinds = [o[0] if o[0] == "error" else o[1] for o in batched]
    assert kinds == ["applied", "applied", None, "applied", "resend", "error", "applied", "resend", "held",
                     "refused", "applied"]
    assert "appointment.bokked" in batched[5][2]
    assert batched[3][-1] == 1  # the check-in's urgent step, sent after the commit
    assert ("13812341234", "请到 3诊室 候诊") in state_batch["messages"], state_batch
    assert len([t for t in state_batch["touchpoints"] if t[1] == "report"]) == 1  # the resent report: once


def test_a_batch_sees_what_its_earlier_events_changed_about_a_patient(database_url, settings, clock,
                                                                      tmp_path) -> None:
    """The patients a batch reads once for its MRNs are read again once an event of the batch registered,
    merged or held one: the batch does what one transaction per event does."""
    one_by_one, state_one = _run(database_url, settings, clock, batched=False, make_events=_changing_events)
    batched, state_batch = _run(_fresh(database_url, tmp_path, "changing.db"), settings, clock, batched=True,
                                make_events=_changing_events)
    assert batched == one_by_one
    assert state_batch == state_one
    assert [o[1] for o in batched] == ["applied", "held", "applied", "applied", "applied", "applied"]
    patients = {source_id: patient for source_id, _, patient, *_ in state_batch["events"]}
    assert patients["b9"] == patients["c9"] == patients["b10"] is not None  # released to the registered M9
    assert patients["c1"] == patients["m1"] == patients["b1"]  # after the merge M1 names M2 (its history moved)
    assert batched[5][-1] == 1  # the check-in under the merged MRN found M2's moved episode: its urgent step


def test_an_event_failing_in_a_batch_leaves_nothing_and_the_others_are_applied(database_url, settings, clock,
                                                                                monkeypatch) -> None:
    sms = h.RecordingChannel("sms")
    engine = h.make_engine(database_url, settings, clock, [JOURNEY], {"sms": sms})
    try:
        engine.upsert_patients([PatientIn(mrn="M1", phone="13812341234"), PatientIn(mrn="M2", phone="13912341234")])
        events = [_events(clock)[i] for i in (0, 1, 3, 6)]  # two bookings, a check-in, a report
        apply_to = engine.ingestor._apply_to

        def failing(conn, ev, *args, **kw):  # fails after the event is stored and its enrollment looked up
            if ev.type == "visit.checked_in":
                raise ValueError("check-in could not be applied")
            return apply_to(conn, ev, *args, **kw)

        monkeypatch.setattr(engine.ingestor, "_apply_to", failing)
        outcomes = engine.ingest_many(events)
        assert [type(o).__name__ for o in outcomes] == ["IngestResult", "IngestResult", "ValueError", "IngestResult"]
        assert str(outcomes[2]) == "check-in could not be applied"
        with engine.db.connect() as conn:
            stored = list(conn.execute(select(Event.source_id).order_by(Event.id)).scalars())
            steps = sorted(conn.execute(select(Touchpoint.step)).scalars())
        assert stored == ["b1", "b2", "r1"]  # nothing of the failed check-in, not even the event
        assert steps == ["confirm", "confirm", "remind", "remind", "report"]
        assert sms.messages == []  # its urgent step was never planned, so never sent
        monkeypatch.undo()
        again = engine.ingest(events[2])  # sent again once the fault is gone: applied, not a duplicate
        assert again.state == "applied" and len(again.urgent_touchpoints) == 1
    finally:
        engine.close()


@pytest.mark.parametrize("batch", [1, 3, 200])
def test_events_ingest_reports_each_bad_line_and_applies_the_others(database_url, settings, clock, batch) -> None:
    sms = h.RecordingChannel("sms")
    engine = h.make_engine(database_url, settings, clock, [JOURNEY], {"sms": sms})
    try:
        engine.upsert_patients([PatientIn(mrn="M1", phone="13812341234"), PatientIn(mrn="M2", phone="13912341234")])
        lines = [e.model_dump_json() for e in _events(clock)]
        lines.insert(4, "{not json")
        report = ingest_lines(engine, lines, batch=batch)
        assert [(e.line, e.message.split(":")[0]) for e in report.errors] == [(5, "not valid JSON"),
                                                                              (7, "not applied"), (11, "refused")]
        assert "appointment.bokked" in report.errors[1].message
        assert report.stored == {"appointment.booked": 3, "visit.checked_in": 2, "report.ready": 2,
                                 "appointment.cancelled": 1}
        assert report.duplicates == {"appointment.booked": 1} and report.urgent == 1
        again = ingest_lines(engine, lines, batch=batch)  # the same file again: nothing new
        assert sum(again.stored.values()) == 0 and json.dumps(again.as_dict()["errors"]) != "[]"
    finally:
        engine.close()

"""Journey versions survive edits: stored definitions load back, old enrollments keep running, migration."""

from __future__ import annotations

import json
from contextlib import contextmanager
from types import SimpleNamespace
import time as clock_time
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select, update
from typer.testing import CliRunner

from carepath.cli import journeys as cli_journeys
from carepath.definition.dsl import (after, after_step, anchor, before, enroll_on, every, exit_on, journey, on, send,
                                     step, tag, task, template)
from carepath.definition.events import PatientIn
from carepath.definition.model import Journey
from carepath.runtime.migrate import migrate_enrollments
from carepath.runtime.planner import DayLoad, plan_anchored
from carepath.runtime.policy import Policy
from carepath.runtime.versions import VersionError, store_version
from carepath.store import open_database
from carepath.store.schema import AuditEntry, Enrollment, JourneyVersion

from tests.engine import helpers as h

SH = ZoneInfo("Asia/Shanghai")
UTC = timezone.utc

# ------------------------------------------------------------ generated journeys

durations = st.one_of(
    st.builds(timedelta, minutes=st.integers(0, 30 * 24 * 60)),
    st.builds(timedelta, seconds=st.floats(0, 3 * 86400, allow_nan=False).map(lambda s: round(s, 3))),
    st.sampled_from(["90m", "2h30m", "3d", "1w", "1.5s", "45"]),
)
walls = st.none() | st.builds(time, st.integers(0, 23), st.integers(0, 59), st.sampled_from([0, 0, 30]))


def _wall(t: time | None) -> str | None:
    return None if t is None else t.strftime("%H:%M:%S" if t.second else "%H:%M")


@st.composite
def triggers(draw, step_ids: list[str]):
    kind = draw(st.sampled_from(["before", "after", "every", "on", "after_step"] if step_ids
                                else ["before", "after", "every", "on"]))
    anchor_name = draw(st.sampled_from(["appointment", "enrolled"]))
    if kind in ("before", "after"):
        return (before if kind == "before" else after)(anchor_name, draw(durations), at=_wall(draw(walls)))
    if kind == "every":
        end = draw(st.sampled_from(["count", "until"]))
        return every(draw(st.sampled_from(["1d", "2d", "6h", "90m", "1.5h"])), anchor=anchor_name,
                     start=draw(durations), at=_wall(draw(walls)),
                     count=draw(st.integers(1, 6)) if end != "until" else None,
                     until=f"{draw(st.integers(1, 20))}d" if end != "count" else None)
    if kind == "on":
        return on(draw(st.sampled_from(["report.ready", "visit.checked_in"])), draw(durations))
    return after_step(draw(st.sampled_from(step_ids)), draw(durations),
                      unless=draw(st.sampled_from([None, "replied"])))


@st.composite
def journeys(draw) -> Journey:
    ids: list[str] = []
    steps = []
    for i in range(draw(st.integers(1, 5))):
        action = draw(st.sampled_from([send("t", ["sms"]), task("call_patient", sla="2h", detail="x"),
                                       tag("followed", remove=["new"])]))
        steps.append(step(f"s{i}", draw(st.sampled_from(["pre_visit", "in_visit", "post_visit"])),
                          draw(triggers(ids)), action,
                          when=draw(st.sampled_from([None, "patient.age >= 65", "event.nps <= 6"])),
                          category=draw(st.sampled_from(["clinical", "transactional", "marketing", "urgent"])),
                          missed=draw(st.sampled_from(["send", "skip"])), grace=draw(durations),
                          over_cap=draw(st.sampled_from(["defer", "drop"]))))
        ids.append(f"s{i}")
    return journey(f"gen-{draw(st.integers(0, 10**6))}", enroll=enroll_on("appointment.booked"),
                   exit=exit_on("visit.no_show"), reentry=draw(st.sampled_from(["never", "after_exit", "per_key"])),
                   key=draw(st.sampled_from([None, "appointment_id"])),
                   anchors={"appointment": anchor(["appointment.booked", "appointment.rescheduled"], field="start",
                                                  cancelled_by=["appointment.cancelled"])},
                   templates=[template("t", "{{ patient.surname }}，您好", title="提醒")], steps=steps)


def _plan(j: Journey, slot: datetime, now: datetime) -> list[tuple]:
    anchors = {"appointment": slot, "enrolled": now}
    planned = plan_anchored([s for s in j.steps if s.anchor], anchors, tz_name="Asia/Shanghai", now=now,
                            policy=Policy(), load=DayLoad("Asia/Shanghai"))
    return [(p.step.id, p.occurrence, p.planned_at, p.due_at, p.status, p.reason) for p in planned]


@pytest.fixture
def store(database_url, settings, clock):
    eng = h.make_engine(database_url, settings, clock, [], {})
    yield eng
    eng.close()


@hsettings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(j=journeys(), slot_days=st.integers(-3, 30), slot_minutes=st.integers(0, 24 * 60 - 1))
def test_every_journey_round_trips_through_its_stored_definition(store, j, slot_days, slot_minutes):
    """Stored in the database, loaded back: the same version and the same planned touchpoints."""
    now = store.clock.now()
    with store.db.begin() as conn:
        store_version(conn, j, now)
    with store.db.connect() as conn:
        stored = conn.execute(select(JourneyVersion.definition).where(
            JourneyVersion.journey == j.name, JourneyVersion.version == j.version)).scalar_one()
    loaded = Journey.model_validate(json.loads(json.dumps(stored)))
    assert loaded.version == j.version
    assert loaded == j
    slot = now + timedelta(days=slot_days, minutes=slot_minutes)
    assert _plan(loaded, slot, now) == _plan(j, slot, now)


# ------------------------------------------------------------ an edited journey

def visit(edited: bool = False) -> Journey:
    """The visit journey; the edit moves r1 to 19:00, drops r7 and adds a 2-hour-before reminder."""
    r1 = step("r1", "pre_visit", before("appointment", "1d", at="19:00" if edited else "18:00"), send("t", ["sms"]),
              category="transactional")
    r7 = step("r7", "pre_visit", before("appointment", "7d", at="10:00"), send("t", ["sms"]), category="transactional")
    r2h = step("r2h", "pre_visit", before("appointment", "2h"), send("t", ["sms"]), category="urgent")
    fu = step("fu", "post_visit", after("appointment", "3d", at="10:00"), send("t", ["sms"]))
    return journey("visit", enroll=enroll_on("appointment.booked"), key="appointment_id", reentry="per_key",
                   anchors={"appointment": anchor(["appointment.booked", "appointment.rescheduled"], field="start",
                                                  cancelled_by=["appointment.cancelled"])},
                   templates=[template("t", "您好 {{ patient.name }}")],
                   steps=[r1, r2h, fu] if edited else [r7, r1, fu])


def slot(day: int, hour: int = 14) -> str:
    return datetime(2026, 5, day, hour, tzinfo=SH).isoformat()


def _engine(database_url, settings, clock, j, sms):
    return h.make_engine(database_url, settings, clock, [j], {"sms": sms})


@pytest.fixture
def sms():
    return h.RecordingChannel("sms")


@pytest.fixture
def old_enrollment(database_url, settings, clock, sms):
    """Patient M1 enrolled on the original visit journey (slot 20 May); its r7 reminder already sent."""
    clock.set(datetime(2026, 5, 1, 9, 0, tzinfo=SH))
    eng = _engine(database_url, settings, clock, visit(), sms)
    eng.upsert_patient(PatientIn(mrn="M1", name="张三", phone="13812341234"))
    assert eng.ingest(h.Events(clock)("appointment.booked", {"appointment_id": "A1", "start": slot(20)})).enrolled
    clock.set(datetime(2026, 5, 13, 10, 0, tzinfo=SH))
    assert eng.dispatch_due().sent == 1  # r7, seven days before
    eng.close()
    return visit().version


def test_an_edited_journey_keeps_old_enrollments_running(database_url, settings, clock, sms, old_enrollment):
    edited = visit(edited=True)
    assert edited.version != old_enrollment
    started = clock_time.monotonic()
    eng = _engine(database_url, settings, clock, edited, sms)
    try:
        moved = eng.ingest(h.Events(clock)("appointment.rescheduled", {"appointment_id": "A1", "start": slot(21)}))
        assert moved.anchors and "2 moved" in moved.anchors[0]  # r1 and fu of the old version
        assert clock_time.monotonic() - started < 5, "opening and ingesting must not wait on a lock"
        clock.set(datetime(2026, 5, 20, 18, 0, tzinfo=SH))
        # r1, and r7 planned again for the new date: the patient was told the old one (moved anchors)
        assert eng.dispatch_due().sent == 2
        [old] = h.enrollments(eng)
        assert old.version == old_enrollment
        assert {t.step: t.status for t in h.touchpoints(eng)} == {"r7": "sent", "r1": "sent", "fu": "scheduled"}
        # new bookings run the edited version
        eng.ingest(h.Events(clock)("appointment.booked", {"appointment_id": "A2", "start": slot(28)}))
        assert [e.version for e in h.enrollments(eng)] == [old_enrollment, edited.version]
    finally:
        eng.close()


def test_dispatch_first_after_an_edit_sends_the_old_version(database_url, settings, clock, sms, old_enrollment):
    """The first thing the reopened engine does is dispatch: r1 goes at 18:00 as the pinned version says."""
    clock.set(datetime(2026, 5, 19, 18, 0, tzinfo=SH))
    started = clock_time.monotonic()
    eng = _engine(database_url, settings, clock, visit(edited=True), sms)
    try:
        assert eng.dispatch_due().sent == 1
        assert clock_time.monotonic() - started < 5
        assert ":r1:" in sms.keys[-1], sms.keys
    finally:
        eng.close()


def test_a_version_registered_by_another_process_is_read_without_blocking(database_url, settings, clock, sms):
    """An engine opened before another one enrolled on a new version reads it while holding its write lock."""
    clock.set(datetime(2026, 5, 1, 9, 0, tzinfo=SH))
    early = _engine(database_url, settings, clock, visit(edited=True), sms)
    late = _engine(database_url, settings, clock, visit(), sms)
    try:
        late.upsert_patient(PatientIn(mrn="M1", name="张三", phone="13812341234"))
        late.ingest(h.Events(clock)("appointment.booked", {"appointment_id": "A1", "start": slot(20)}))
        started = clock_time.monotonic()
        result = early.ingest(h.Events(clock)("appointment.rescheduled", {"appointment_id": "A1",
                                                                          "start": slot(22)}))
        assert clock_time.monotonic() - started < 5
        assert result.anchors and "3 moved" in result.anchors[0]
    finally:
        early.close()
        late.close()


# ------------------------------------------------------------ versions and migration

@contextmanager
def _db(url: str):
    db = open_database(url)
    try:
        yield db
    finally:
        db.dispose()


def _cli(*args: str):
    """``carepath journeys ARGS`` where no carepath.toml enables anything (the installed journeys only)."""
    return CliRunner().invoke(cli_journeys.app, list(args), env={"CAREPATH_CONFIG": ""})


def test_versions_lists_enrollment_counts(database_url, settings, clock, sms, old_enrollment):
    edited = visit(edited=True)
    eng = _engine(database_url, settings, clock, edited, sms)
    try:
        eng.ingest(h.Events(clock)("appointment.booked", {"appointment_id": "A2", "start": slot(28)}))
        eng.ingest(h.Events(clock, "M2")("appointment.booked", {"appointment_id": "A3", "start": slot(28),
                                                               "patient": {"name": "李四"}}))
        eng.ingest(h.Events(clock, "M2")("appointment.cancelled", {"appointment_id": "A3"}))
    finally:
        eng.close()
    with _db(database_url) as db, db.begin() as conn:  # an exit on the edited version
        conn.execute(update(Enrollment).where(Enrollment.key == "A3").values(status="exited"))
    result = _cli("versions", "visit", "--db", database_url, "--json")
    assert result.exit_code == 0, result.output
    counts = {v["version"]: (v["active"], v["exited"]) for v in json.loads(result.output)}
    assert counts == {old_enrollment: (1, 0), edited.version: (1, 1)}
    table = _cli("versions", "visit", "--db", database_url)
    assert table.exit_code == 0 and old_enrollment in table.output and edited.version in table.output
    missing = _cli("versions", "nope", "--db", database_url)
    assert missing.exit_code == 3 and "no stored versions" in missing.output  # 3: not found


EXPECTED_STEPS = {
    "fu": {"kept": 1, "retimed": 0, "dropped": 0, "added": 0},
    "r1": {"kept": 0, "retimed": 1, "dropped": 0, "added": 0},
    "r2h": {"kept": 0, "retimed": 0, "dropped": 0, "added": 1},
}


def test_migration_previews_then_moves_unsent_steps(database_url, settings, clock, sms, old_enrollment):
    """r7 was sent (history, dropped from the new version); r1 is re-timed, fu kept, r2h added."""
    edited = visit(edited=True)
    with _db(database_url) as db:
        with db.begin() as conn:
            store_version(conn, edited, clock.now())
        before_rows = h.snapshot(SimpleNamespace(db=db))
        preview = migrate_enrollments(db, "visit", edited.version[:6], now=clock.now(), dry_run=True)
        assert preview.to_json()["steps"] == EXPECTED_STEPS
        assert preview.enrollments == 1 and preview.from_versions == {old_enrollment: 1}
        assert h.snapshot(SimpleNamespace(db=db)) == before_rows, "a dry run changes nothing"
        done = migrate_enrollments(db, "visit", edited.version, now=clock.now())
        assert done.to_json()["steps"] == EXPECTED_STEPS and not done.dry_run
    eng = _engine(database_url, settings, clock, edited, sms)
    try:
        [enrollment] = h.enrollments(eng)
        assert enrollment.version == edited.version
        rows = {t.step: t for t in h.touchpoints(eng)}
        assert tuple(rows["r7"]) == before_rows_row(before_rows, "r7"), "sent touchpoints never change"
        assert tuple(rows["fu"]) == before_rows_row(before_rows, "fu")
        assert rows["r1"].due_at == datetime(2026, 5, 19, 19, 0, tzinfo=SH)
        assert rows["r2h"].due_at == datetime(2026, 5, 20, 12, 0, tzinfo=SH)
        with eng.db.connect() as conn:
            entry = conn.execute(select(AuditEntry.__table__).where(AuditEntry.action == "journey.migrated")).one()
        assert entry.entity_id == f"visit@{edited.version}" and entry.detail["enrollments"] == 1
        assert entry.detail["retimed"] == 1 and entry.detail["added"] == 1
        clock.set(datetime(2026, 5, 19, 18, 30, tzinfo=SH))
        assert eng.dispatch_due().sent == 0, "r1 no longer goes at 18:00"
        clock.set(datetime(2026, 5, 20, 13, 0, tzinfo=SH))
        assert eng.dispatch_due().sent == 2  # r1 at 19:00 the day before, r2h two hours before
        with _db(database_url) as db:
            assert migrate_enrollments(db, "visit", edited.version, now=clock.now()).enrollments == 0
    finally:
        eng.close()


def test_migrate_command_previews_then_migrates(database_url, settings, clock, sms, old_enrollment):
    """The command plans at the real time: every unsent step of May 2026 has passed by then."""
    edited = visit(edited=True)
    with _db(database_url) as db, db.begin() as conn:
        store_version(conn, edited, clock.now())
    preview = _cli("migrate", "visit", "--to", edited.version[:6], "--dry-run", "--db", database_url, "--json")
    assert preview.exit_code == 0, preview.output
    report = json.loads(preview.output)
    assert report["dry_run"] and report["enrollments"] == 1 and report["from_versions"] == {old_enrollment: 1}
    table = _cli("migrate", "visit", "--to", edited.version, "--dry-run", "--db", database_url)
    assert table.exit_code == 0, table.output
    assert "re-timed" in table.output and "would move 1 enrollment" in table.output
    assert "nothing changed" in table.output
    versions = json.loads(_cli("versions", "visit", "--db", database_url, "--json").output)
    assert {v["version"]: v["active"] for v in versions} == {old_enrollment: 1, edited.version: 0}
    done = _cli("migrate", "visit", "--to", edited.version, "--db", database_url, "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["steps"] == report["steps"] and not json.loads(done.output)["dry_run"]
    versions = json.loads(_cli("versions", "visit", "--db", database_url, "--json").output)
    assert {v["version"]: v["active"] for v in versions} == {old_enrollment: 0, edited.version: 1}


def before_rows_row(snapshot: dict, step_id: str) -> tuple:
    from carepath.store.schema import Touchpoint

    step_index = list(Touchpoint.__table__.columns.keys()).index("step")
    [row] = [r for r in snapshot["touchpoints"] if r[step_index] == step_id]
    return row


def test_migrate_refuses_an_unknown_version(database_url, settings, clock, sms, old_enrollment):
    result = _cli("migrate", "visit", "--to", "zzz", "--db", database_url)
    assert result.exit_code == 3 and "not a version of this journey" in result.output  # 3: not found
    assert old_enrollment in result.output
    with pytest.raises(VersionError):
        with _db(database_url) as db:
            migrate_enrollments(db, "visit", "", now=clock.now())


def test_versions_of_a_missing_database_is_an_error_and_creates_nothing(tmp_path):
    missing = tmp_path / "nowhere" / "carepath.db"
    result = _cli("versions", "visit", "--db", f"sqlite:///{missing}")
    assert result.exit_code == 3 and "no database" in result.output  # 3: not found (docs/cli.md)
    assert not missing.parent.exists()


def test_migration_re_times_event_steps_and_drops_removed_ones(database_url, settings, clock, sms):
    """An ``on`` step whose delay changed moves from the same event; a step gone from the journey is cancelled.
    (The business key holds an ``@``, which anchored occurrences use to count re-plans.)"""
    def care(delay: str, with_call: bool) -> Journey:
        steps = [step("survey", "post_visit", on("visit.completed", delay, once_per="visit_id"), send("t", ["sms"]))]
        if with_call:
            steps.append(step("call", "post_visit", on("visit.completed", "3d", once_per="visit_id"),
                              task("call_patient")))
        return journey("care", enroll=enroll_on("program.joined"), templates=[template("t", "hi")], steps=steps)

    old, new = care("2d", True), care("1d", False)
    eng = _engine(database_url, settings, clock, old, sms)
    try:
        eng.upsert_patient(PatientIn(mrn="M1"))
        events = h.Events(clock)
        eng.ingest(events("program.joined"))
        eng.ingest(events("visit.completed", {"visit_id": "V@east"}))
        with eng.db.begin() as conn:
            store_version(conn, new, clock.now())
        report = migrate_enrollments(eng.db, "care", new.version, now=clock.now())
        assert report.to_json()["steps"] == {"call": {"kept": 0, "retimed": 0, "dropped": 1, "added": 0},
                                             "survey": {"kept": 0, "retimed": 1, "dropped": 0, "added": 0}}
        rows = {t.step: t for t in h.touchpoints(eng)}
        assert rows["survey"].due_at == clock.now() + timedelta(days=1) and rows["survey"].status == "scheduled"
        assert rows["call"].status == "cancelled" and new.version in rows["call"].reason
    finally:
        eng.close()

"""Issue 19.4: a check-in camp (打卡): replies stored with their values, one nudge for a missed day, the rates."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from carepath.definition.journey_files import read_journey_text
from carepath.runtime.checkins_report import patient_checkins, programme_checkins
from carepath.store.schema import CheckinRow, Event
from tests.engine import helpers as h
from tests.programmes.conftest import at_local, local

CAMP = """
name: glucose-camp
enroll: {events: [visit.checked_in]}
horizon: 7d
templates:
  prompt: "今天的空腹血糖是多少？回复数值（如 6.1）或“打卡”。"
  nudge: "今天还没有打卡，记得测一下血糖哦。"
  noted: "已收到您的记录，谢谢。"
steps:
  - id: glucose
    stage: post_visit
    every: {interval: 1d, at: "08:00"}
    missed: skip
    checkin: {checkin: fasting-glucose, measure: glucose, template: prompt, via: [sms]}
  - id: nudge
    stage: post_visit
    after_step: {step: glucose, delay: 4h, unless: checked_in}
    send: {template: nudge, via: [sms]}
  - id: noted
    stage: post_visit
    on: checkin.recorded
    when: "event.value is not none and event.value > 10"
    send: {template: noted, via: [sms]}
"""


@pytest.fixture
def journeys():
    journey, problems = read_journey_text(CAMP, known_channels={"sms"})
    assert problems == [], problems
    return [journey]


def _day(eng, clock, day, reply: str | None):
    """Run one camp day: the 08:00 prompt, an optional reply at 09:00, the 12:00 nudge check, the evening."""
    ev = h.Events(clock)
    clock.set(at_local(day, 8, 1))
    eng.dispatch_due()
    if reply is not None:
        clock.set(at_local(day, 9))
        eng.ingest(ev("message.replied", {"text": reply, "channel": "sms"}))
    for hh in (12, 13, 20):
        clock.set(at_local(day, hh, 5))
        eng.dispatch_due()


def _bodies(eng):
    return [m.body for m in eng.sms.messages]


def test_replies_are_stored_a_missed_day_gets_one_nudge_and_the_rate_is_right(eng, clock):
    eng.ingest(h.Events(clock)("visit.checked_in", {"department": "内分泌科"}))
    start = local(clock.now()).date()
    days = [start + timedelta(days=n) for n in range(1, 6)]
    replies = ["6.1", "打卡", None, "60", "血糖 11.2 mmol/L"]
    for day, reply in zip(days, replies):
        _day(eng, clock, day, reply)

    bodies = _bodies(eng)
    assert sum("今天的空腹血糖" in b for b in bodies) == 5  # one prompt a day
    # day 3 had no reply, day 4's "60" is impossible (rejected): one nudge each, none on the kept days
    nudges = [t for t in h.touchpoints(eng, step="nudge")]
    assert sorted((local(t.due_at).date(), t.status) for t in nudges) == [
        (days[0], "skipped"), (days[1], "skipped"), (days[2], "sent"), (days[3], "sent"), (days[4], "skipped")]
    assert sum("还没有打卡" in b for b in bodies) == 2

    with eng.db.connect() as conn:
        rows = conn.execute(select(CheckinRow.__table__).order_by(CheckinRow.id)).all()
    assert [(r.day, r.status, r.source) for r in rows] == [
        (days[0], "recorded", "reply"), (days[1], "recorded", "reply"), (days[3], "rejected", "reply"),
        (days[4], "recorded", "reply")]
    assert [eng.cipher.decrypt(r.value_enc) if r.value_enc else None for r in rows] == ["6.1", None, "60", "11.2"]
    assert all(r.value_enc not in ("6.1", "60", "11.2") for r in rows)  # encrypted at rest
    assert "outside the possible range" in rows[2].reason
    assert rows[0].unit == "mmol/L" and rows[1].measure is None

    # checkin.recorded flows on: the 11.2 reading got the "noted" message, 6.1 did not
    assert sum("已收到您的记录" in b for b in bodies) == 1
    with eng.db.connect() as conn:
        events = conn.execute(select(Event.payload).where(Event.type == "checkin.recorded")
                              .order_by(Event.id)).scalars().all()
        intents = conn.execute(select(Event.intent).where(Event.type == "message.replied")
                               .order_by(Event.id)).scalars().all()
    assert [e.get("value") for e in events] == [6.1, None, 11.2]
    assert intents == ["checkin"] * 4

    [mine] = patient_checkins(eng)
    assert (mine.prompted, mine.completed, mine.streak, mine.longest) == (5, 3, 1, 2)
    assert mine.rate == pytest.approx(0.6)
    [camp] = programme_checkins([mine])
    assert (camp.journey, camp.checkin, camp.patients, camp.rate) == ("glucose-camp", "fasting-glucose", 1,
                                                                     pytest.approx(0.6))


def test_a_reply_that_answers_no_prompt_is_no_check_in(eng, clock):
    ev = h.Events(clock)
    eng.ingest(ev("visit.checked_in", {"department": "内分泌科"}))
    for text in ("谢谢医生", "6.1 kg", "120/80", "明天再说"):
        eng.ingest(ev("message.replied", {"text": text}))
    with eng.db.connect() as conn:
        assert conn.execute(select(CheckinRow.id)).all() == []


def test_the_cli_shows_rates_and_masks_patients_and_values(eng, clock, database_url, settings, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from carepath.cli import _mount_optional, app

    eng.ingest(h.Events(clock)("visit.checked_in", {"department": "内分泌科"}))
    start = local(clock.now()).date()
    for n, reply in ((1, "6.1"), (2, None)):
        _day(eng, clock, start + timedelta(days=n), reply)
    monkeypatch.setenv("CAREPATH_HOME", str(settings.home))
    monkeypatch.delenv("CAREPATH_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no carepath.toml here: console and outbox channels, no journey runs
    monkeypatch.setenv("COLUMNS", "160")
    _mount_optional()
    run = CliRunner().invoke
    summary = run(app, ["checkins", "summary", "--db", database_url, "--json"])
    assert summary.exit_code == 0, summary.output
    import json

    data = json.loads(summary.output)
    assert [(p["prompted"], p["completed"], p["rate"]) for p in data["programmes"]] == [(2, 1, 0.5)]
    listed = run(app, ["checkins", "list", "--db", database_url, "--patient", "M1"])
    assert listed.exit_code == 0, listed.output
    assert "fasting-glucose" in listed.output and "6.1" not in listed.output and "•••" in listed.output
    shown = run(app, ["checkins", "list", "--db", database_url, "--values", "--json"])
    assert json.loads(shown.output)["checkins"][0]["value"] == "6.1"
    missing = run(app, ["checkins", "summary", "--db", database_url, "--patient", "NOBODY"])
    assert missing.exit_code != 0 and "no patient with MRN 'NOBODY'" in missing.output


def test_record_reply_is_the_entry_point_for_conversation_routing_and_counts_a_reply_once(eng, clock):
    from carepath.runtime.checkins import record_reply

    ev = h.Events(clock)
    eng.ingest(ev("visit.checked_in", {"department": "内分泌科"}))
    clock.set(at_local(local(clock.now()).date() + timedelta(days=1), 8, 1))
    eng.dispatch_due()
    reply = eng.ingest(ev("message.replied", {"text": "110 mg/dL"}))  # ingest records it (6.11 mmol/L)
    with eng.db.begin() as conn:  # routing calling it again for the same reply: harmless
        assert record_reply(conn, eng, 1, "110 mg/dL", clock.now(), event_id=reply.event_id) is True
        assert record_reply(conn, eng, 1, "谢谢", clock.now(), event_id=None) is False
    with eng.db.connect() as conn:
        rows = conn.execute(select(CheckinRow.__table__)).all()
    assert [(eng.cipher.decrypt(r.value_enc), r.unit) for r in rows] == [("6.11", "mmol/L")]

"""Due-now wake-ups: ingest wakes the dispatcher for touchpoints due now instead of leaving them to the schedule.

No test here calls ``dispatch_due`` on a schedule: a message that arrives was sent because the
wake-up woke :func:`carepath.flows.due_now_loop` (or, across workers, ``NOTIFY`` woke the other
engine). The waits below only bound a test that would otherwise hang; nothing is timed.
"""

from __future__ import annotations

import threading

import pytest

from carepath.definition.dsl import enroll_on, journey, on, send, step, template
from carepath.definition.events import PatientIn
from carepath.flows import due_now_loop, request_stop, use_engine

from tests.engine import helpers as h

CARE = journey("care", enroll=enroll_on("program.joined"), templates=[template("t", "{{ patient.name }}您好")],
               steps=[step("welcome", "pre_visit", on("program.joined"), send("t", ["sms"])),
                      step("later", "post_visit", on("visit.completed", delay="3d"), send("t", ["sms"]))])


@pytest.fixture
def engine(database_url, settings, clock):
    eng = h.make_engine(database_url, settings, clock, [CARE], {"sms": h.RecordingChannel("sms")})
    eng.upsert_patient(PatientIn(mrn="M1", name="张三", phone="13812341234"))
    yield eng
    eng.close()


def _loop_in_thread(eng, **kw) -> tuple[threading.Thread, dict]:
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(report=due_now_loop("care", eng, **kw)), daemon=True)
    thread.start()
    return thread, out


def test_an_ingested_due_now_message_is_sent_by_the_woken_dispatcher(engine, clock):
    use_engine(engine)  # clears any stop asked by an earlier test
    thread, out = _loop_in_thread(engine, max_wakeups=1)
    result = engine.ingest(h.Events(clock)("program.joined"))
    assert result.due_now == ["care"]
    thread.join(timeout=60)
    assert not thread.is_alive(), "the due-now dispatcher was never woken"
    assert out["report"].messages == 1
    assert [m.body for m in engine.channels["sms"].messages] == ["张三您好"]
    welcome = h.one_touchpoint(engine, step="welcome")
    assert welcome.status == "sent" and welcome.claimed_by.endswith("-now")  # sent by the due-now dispatcher


def test_an_event_that_plans_nothing_due_now_wakes_no_one(engine, clock):
    engine.ingest(h.Events(clock)("program.joined"))
    assert engine.wakeup.wait("care", timeout=1)  # the enrollment's welcome is due now
    result = engine.ingest(h.Events(clock)("visit.completed"))
    assert result.planned == 1 and result.due_now == []
    assert not engine.wakeup.wait("care", timeout=0.3)


def test_a_stop_ends_the_due_now_dispatcher_after_its_batch(engine, clock):
    use_engine(engine)
    thread, _ = _loop_in_thread(engine, wait_seconds=0.05)
    request_stop()
    thread.join(timeout=30)
    assert not thread.is_alive()
    use_engine(engine)


def test_an_ingest_on_one_worker_wakes_the_dispatchers_of_the_others(database_url, settings, clock):
    if not database_url.startswith("postgresql"):
        pytest.skip("NOTIFY across workers is PostgreSQL's; on SQLite the signal is in-process")
    a = h.make_engine(database_url, settings, clock, [CARE], {"sms": h.RecordingChannel("sms")}, worker_id="a")
    b = h.make_engine(database_url, settings, clock, [CARE], {"sms": h.RecordingChannel("sms")}, worker_id="b")
    try:
        a.upsert_patient(PatientIn(mrn="M1", name="张三", phone="13812341234"))
        b.wakeup.listen(b.database_url)
        assert b.wakeup.listening.wait(timeout=30)
        a.ingest(h.Events(clock)("program.joined"))
        assert b.wakeup.wait("care", timeout=30), "worker b was not told of worker a's due-now touchpoint"
        assert b.dispatch_due(journey="care").messages == 1
        assert len(b.channels["sms"].messages) == 1 and not a.channels["sms"].messages
    finally:
        a.close()
        b.close()

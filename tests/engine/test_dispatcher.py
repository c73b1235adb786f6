"""The dispatcher: send once, fall back, retry, re-check policy/consent/condition at send time, survive crashes."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from carepath.connectors.outbox import OutboxChannel, OutboxConfig
from carepath.definition.dsl import after, after_step, enroll_on, journey, on, send, step, tag, task, template
from carepath.definition.events import PatientIn
from carepath.runtime.planner import CAP_DROPPED, DAILY_CAP, QUIET_HOURS
from carepath.runtime.policy import Policy
from carepath.store.schema import Delivery, OutboxMessage


from tests.engine import helpers as h

SH = ZoneInfo("Asia/Shanghai")
TEMPLATES = [template("t", "{{ patient.name }}您好"), template("bad", "您好 {{ patient.nickname }}")]
PATIENT = PatientIn(mrn="M1", name="张三", phone="13812341234", openid="oAbc123456")


@pytest.fixture
def make(database_url, settings, clock):
    """Build engines on this test's database: ``make(steps, channels, ...)``."""
    made = []

    def _make(steps, channels, *, patients=(PATIENT,), templates=TEMPLATES, team=None, **kw):
        j = journey("care", enroll=enroll_on("program.joined"), templates=templates, steps=steps, team=team)
        eng = h.make_engine(database_url, settings, clock, [j], channels, **kw)
        made.append(eng)
        for p in patients:
            eng.upsert_patient(p)
        return eng

    yield _make
    for eng in made:
        eng.close()


def now_step(sid="s", offset="0s", *, via=("sms",), tmpl="t", **kw):
    return step(sid, "post_visit", after("enrolled", offset), send(tmpl, list(via)), **kw)


def join(eng, clock, mrn="M1"):
    return eng.ingest(h.Events(clock, mrn)("program.joined"))


def key(tp, channel="sms") -> str:
    return f"{tp.idempotency_key}:{channel}"


# ------------------------------------------------------------------ sending


def test_sends_due_touchpoints_once(make, clock):
    sms = h.RecordingChannel("sms")
    eng = make([now_step("now"), now_step("later", "2h")], {"sms": sms})
    join(eng, clock)
    report = eng.dispatch_due()
    assert (report.claimed, report.sent) == (1, 1)
    first = h.one_touchpoint(eng, step="now")
    assert (first.status, first.channel, first.sent_at, first.attempts) == ("sent", "sms", clock.now(), 1)
    [d] = h.deliveries(eng, first.id)
    assert (d.status, d.channel, d.attempt, d.provider_id) == ("sent", "sms", 1, "sms-1")
    assert sms.messages[0].body == "张三您好" and sms.messages[0].address == "13812341234"
    assert eng.dispatch_due().claimed == 0, "nothing is due any more"
    assert h.one_touchpoint(eng, step="later").status == "scheduled"
    clock.advance(timedelta(hours=2))
    assert eng.dispatch_due().sent == 1
    assert eng.dispatch_due().claimed == 0
    clock.advance(timedelta(days=3))
    assert eng.dispatch_due().claimed == 0
    later = h.one_touchpoint(eng, step="later")
    assert sms.keys == [key(first), key(later)]


# ----------------------------------------------------------------- fallback


def test_permanent_error_falls_to_next_channel_at_once(make, clock):
    wechat = h.RecordingChannel("wechat", address_kind="openid", permanent=lambda m: True)
    sms = h.RecordingChannel("sms")
    eng = make([now_step(via=("wechat", "sms"))], {"wechat": wechat, "sms": sms})
    join(eng, clock)
    report = eng.dispatch_due()  # one call, no clock movement
    assert report.sent == 1
    tp = h.one_touchpoint(eng)
    assert (tp.status, tp.channel) == ("sent", "sms")
    assert tp.reason == "fallback: wechat: refused"
    assert wechat.keys == [key(tp, "wechat")] and sms.keys == [key(tp, "sms")]
    d1, d2 = h.deliveries(eng, tp.id)
    assert (d1.channel, d1.status, d1.error_kind, d1.error_code) == ("wechat", "failed", "permanent", "refused")
    assert (d2.channel, d2.status) == ("sms", "sent")
    assert not h.staff_tasks(eng)


def test_missing_address_falls_to_next_channel(make, clock):
    wechat = h.RecordingChannel("wechat", address_kind="openid")
    sms = h.RecordingChannel("sms")
    eng = make([now_step(via=("wechat", "sms"))], {"wechat": wechat, "sms": sms},
               patients=[PatientIn(mrn="M1", name="张三", phone="13812341234")])  # no WeChat openid
    join(eng, clock)
    assert eng.dispatch_due().sent == 1
    tp = h.one_touchpoint(eng)
    assert (tp.channel, tp.reason) == ("sms", "fallback: wechat: no openid")
    assert wechat.keys == [] and sms.keys == [key(tp)]


def test_every_channel_refusing_ends_failed_with_a_staff_task(make, clock):
    wechat = h.RecordingChannel("wechat", address_kind="openid", permanent=lambda m: True)
    sms = h.RecordingChannel("sms", permanent=lambda m: True)
    eng = make([now_step(via=("wechat", "sms"))], {"wechat": wechat, "sms": sms}, team="chronic-care")
    join(eng, clock)
    report = eng.dispatch_due()
    assert report.outcomes["failed"] == 1
    tp = h.one_touchpoint(eng)
    assert tp.status == "failed"
    assert tp.reason == "failed: no channel delivered (wechat: refused; sms: refused)"
    [t] = h.staff_tasks(eng)
    assert (t.kind, t.team, t.status, t.touchpoint_id) == ("contact_patient", "chronic-care", "open", tp.id)
    assert t.sla_due_at == clock.now() + timedelta(hours=24)
    # what the nurse needs to make the call: what the patient should have read, and why it did not arrive
    assert t.detail.splitlines() == [
        "Call the patient: message 't' of step s was not delivered on any channel.",
        "Message: 张三您好",
        "Why: wechat: refused; sms: refused"]


def test_a_phone_number_in_an_undelivered_message_is_masked_in_its_task(make, clock):
    sms = h.RecordingChannel("sms", permanent=lambda m: True)
    eng = make([now_step(tmpl="callback")], {"sms": sms},
               templates=[template("callback", "{{ patient.name }}，请回电 {{ event.callback }}")])
    eng.ingest(h.Events(clock, "M1")("program.joined", {"callback": "138 1234 5678"}))
    eng.dispatch_due()
    [t] = h.staff_tasks(eng)
    assert "Message: 张三，请回电 138****5678" in t.detail and "1234" not in t.detail


def test_personal_data_encrypted_at_rest_reaches_the_patient_as_written(make, clock):
    sms = h.RecordingChannel("sms")
    eng = make([now_step(tmpl="callback")], {"sms": sms},
               templates=[template("callback", "{{ patient.name }}，请回电 {{ event.callback }}")])
    eng.ingest(h.Events(clock, "M1")("program.joined", {"callback": "138 1234 5678"}))  # stored encrypted
    assert eng.dispatch_due().sent == 1
    assert [m.body for m in sms.messages] == ["张三，请回电 138 1234 5678"]


# ------------------------------------------------------------------ retries


def test_transient_errors_retry_with_backoff_then_fail_with_staff_task(make, clock):
    sms = h.RecordingChannel("sms", retryable=lambda m: True)
    eng = make([now_step()], {"sms": sms}, max_attempts=4)
    join(eng, clock)
    for attempt in range(1, 4):
        t0 = clock.now()
        assert eng.dispatch_due().outcomes["retry"] == 1
        tp = h.one_touchpoint(eng)
        assert (tp.status, tp.attempts, tp.reason) == ("scheduled", attempt, "retry: sms busy")
        base = timedelta(minutes=2 ** (attempt - 1))  # exponential, with +-20% jitter
        assert base * 0.8 <= tp.due_at - t0 <= base * 1.2
        clock.set(tp.due_at - timedelta(seconds=1))
        assert eng.dispatch_due().claimed == 0, "not retried before its backoff"
        clock.set(tp.due_at)
    report = eng.dispatch_due()
    assert report.outcomes["failed"] == 1
    tp = h.one_touchpoint(eng)
    assert tp.status == "failed"
    assert "sms: busy after 4 attempts" in tp.reason
    [t] = h.staff_tasks(eng)
    assert (t.kind, t.touchpoint_id) == ("contact_patient", tp.id)
    assert sms.keys == [key(tp)] * 4, "every retry carries the same idempotency key"
    assert [(d.attempt, d.status, d.error_kind) for d in h.deliveries(eng, tp.id)] == \
        [(i, "failed", "retryable") for i in range(1, 5)]
    clock.advance(timedelta(days=1))
    assert eng.dispatch_due().claimed == 0 and len(sms.keys) == 4


def test_failed_touchpoint_records_every_attempt(make, clock):
    sms = h.RecordingChannel("sms", retryable=lambda m: True)
    eng = make([now_step()], {"sms": sms}, max_attempts=2)
    join(eng, clock)
    eng.dispatch_due()
    clock.set(h.one_touchpoint(eng).due_at)
    eng.dispatch_due()
    tp = h.one_touchpoint(eng)
    assert tp.status == "failed" and len(h.deliveries(eng, tp.id)) == 2
    assert tp.attempts == 2


def test_transient_error_then_success(make, clock):
    sms = h.RecordingChannel("sms", retryable=lambda m: True, retryable_times=1)
    eng = make([now_step()], {"sms": sms})
    join(eng, clock)
    eng.dispatch_due()
    clock.set(h.one_touchpoint(eng).due_at)
    assert eng.dispatch_due().sent == 1
    tp = h.one_touchpoint(eng)
    assert (tp.status, tp.attempts) == ("sent", 2)
    assert sms.keys == [key(tp)] * 2 and not h.staff_tasks(eng)


def test_connector_exception_is_retried_not_raised(make, clock):
    class Broken(h.RecordingChannel):
        def send_batch(self, messages):
            raise RuntimeError("boom")

    eng = make([now_step()], {"sms": Broken("sms")})
    join(eng, clock)
    assert eng.dispatch_due().outcomes["retry"] == 1
    tp = h.one_touchpoint(eng)
    assert tp.status == "scheduled" and tp.reason == "retry: sms connector_error"


# -------------------------------------------------- policy at send time


def test_quiet_hours_rechecked_at_send_time(make, clock):
    sms = h.RecordingChannel("sms")
    eng = make([now_step(offset="11h30m")], {"sms": sms})  # 09:00 + 11:30 = 20:30 local: allowed when planned
    join(eng, clock)
    tp = h.one_touchpoint(eng)
    assert tp.due_at == datetime(2026, 5, 1, 20, 30, tzinfo=SH)
    clock.set(datetime(2026, 5, 1, 21, 30, tzinfo=SH))  # the worker was down; now it is quiet time
    report = eng.dispatch_due()
    assert report.outcomes["deferred"] == 1 and report.sent == 0
    tp = h.one_touchpoint(eng)
    assert (tp.status, tp.reason, tp.due_at) == ("scheduled", QUIET_HOURS, datetime(2026, 5, 2, 8, 0, tzinfo=SH))
    assert sms.keys == []
    clock.set(datetime(2026, 5, 2, 7, 59, tzinfo=SH))
    assert eng.dispatch_due().claimed == 0
    clock.set(datetime(2026, 5, 2, 8, 0, tzinfo=SH))
    assert eng.dispatch_due().sent == 1 and len(sms.keys) == 1


def test_daily_cap_rechecked_at_send_time(make, clock):
    """Planned under a generous cap (another worker's policy); the sending worker enforces 3 a day."""
    steps = [now_step(f"c{i}", f"{i}m") for i in range(5)]
    steps += [now_step("drop", "6m", over_cap="drop"), now_step("urgent", "7m", category="urgent")]
    sms = h.RecordingChannel("sms")
    planner = make(steps, {"sms": sms}, policy=Policy(daily_cap=10))
    join(planner, clock)
    assert len(h.touchpoints(planner, status="scheduled")) == 7
    sender = make(steps, {"sms": sms}, patients=())
    clock.advance(timedelta(minutes=10))
    report = sender.dispatch_due(batch=1)  # the cap holds across batches
    assert report.sent == 4  # 3 non-urgent + the urgent one
    rows = {r.step: r for r in h.touchpoints(sender)}
    assert [rows[f"c{i}"].status for i in range(5)] == ["sent", "sent", "sent", "scheduled", "scheduled"]
    for sid in ("c3", "c4"):
        assert rows[sid].reason == DAILY_CAP
        assert rows[sid].due_at == clock.now() + timedelta(days=1)
    assert (rows["drop"].status, rows["drop"].reason) == ("skipped", CAP_DROPPED)
    assert rows["urgent"].status == "sent"
    assert len(sms.keys) == 4
    clock.advance(timedelta(days=1))
    assert sender.dispatch_due().sent == 2


def test_tag_steps_do_not_use_up_the_daily_message_cap(make, clock):
    sms = h.RecordingChannel("sms")
    steps = [step("segment", "post_visit", after("enrolled"), tag("joined"))]
    steps += [now_step(f"c{i}", f"{i + 1}m") for i in range(3)]
    eng = make(steps, {"sms": sms})
    join(eng, clock)
    clock.advance(timedelta(minutes=10))
    eng.dispatch_due()
    assert len(sms.keys) == 3, "three messages a day are allowed; a segment update is not a message"


def test_messages_not_sent_do_not_use_up_the_cap_in_a_batch(make, clock):
    """A message skipped for consent or failed on its template is not one of the patient's three a day."""
    sms = h.RecordingChannel("sms")
    steps = [now_step("promo", "0m", category="marketing"), now_step("bad", "1m", tmpl="bad")]
    steps += [now_step(f"c{i}", f"{i + 2}m") for i in range(3)]
    planner = make(steps, {"sms": sms}, policy=Policy(daily_cap=10))
    join(planner, clock)
    sender = make(steps, {"sms": sms}, patients=())
    clock.advance(timedelta(minutes=10))
    sender.dispatch_due()  # one batch: promo (no consent), bad (template error), c0, c1, c2
    rows = {r.step: r for r in h.touchpoints(sender)}
    assert rows["promo"].status != "sent" and rows["bad"].status == "failed"
    assert [rows[f"c{i}"].status for i in range(3)] == ["sent"] * 3
    assert len(sms.keys) == 3


# ------------------------------------------------------------------ consent


def test_marketing_needs_granted_marketing_consent(make, clock):
    sms = h.RecordingChannel("sms")
    patients = [PatientIn(mrn="M1", name="张三", phone="13812341234"),
                PatientIn(mrn="M2", name="李四", phone="13900001111")]
    eng = make([now_step("promo", category="marketing")], {"sms": sms}, patients=patients)
    r = eng.ingest(h.Events(clock, "M2")("consent.changed", {"purpose": "marketing", "granted": True}))
    assert r.notes == ["consent marketing granted"]
    join(eng, clock, "M1")
    join(eng, clock, "M2")
    eng.dispatch_due()
    m1, m2 = h.touchpoints(eng)
    assert m2.status == "sent" and sms.keys == [key(m2)]
    assert m1.status in ("skipped", "failed") and "no marketing consent" in m1.reason


def test_marketing_consent_per_channel(make, clock):
    wechat = h.RecordingChannel("wechat", address_kind="openid")
    sms = h.RecordingChannel("sms")
    eng = make([now_step("promo", via=("sms", "wechat"), category="marketing")], {"sms": sms, "wechat": wechat})
    eng.ingest(h.Events(clock)("consent.changed", {"purpose": "marketing", "granted": True, "channel": "wechat"}))
    join(eng, clock)
    eng.dispatch_due()
    tp = h.one_touchpoint(eng)
    assert (tp.status, tp.channel, tp.reason) == ("sent", "wechat", "fallback: sms: no marketing consent")
    assert sms.keys == []


def test_undelivered_marketing_opens_no_staff_task(make, clock):
    """The nurse-call fallback is for care messages: never for marketing, with or without consent."""
    sms = h.RecordingChannel("sms", retryable=lambda m: True)
    patients = [PatientIn(mrn="M1", name="张三", phone="13812341234"),
                PatientIn(mrn="M2", name="李四", phone="13900001111")]
    eng = make([now_step("promo", category="marketing")], {"sms": sms}, patients=patients, max_attempts=1)
    eng.ingest(h.Events(clock, "M2")("consent.changed", {"purpose": "marketing", "granted": True}))
    join(eng, clock, "M1")
    join(eng, clock, "M2")
    eng.dispatch_due()
    m1, m2 = h.touchpoints(eng)
    assert m1.status != "sent" and m2.status == "failed"
    assert sms.keys == [key(m2)], "only the consenting patient's message reached the provider"
    assert h.staff_tasks(eng) == []


def test_withdrawn_clinical_consent_blocks_until_granted_again(make, clock):
    sms = h.RecordingChannel("sms")
    eng = make([now_step("a", "1h"), now_step("b", "3h")], {"sms": sms})
    join(eng, clock)
    eng.ingest(h.Events(clock)("consent.changed", {"purpose": "clinical", "granted": False}))
    clock.advance(timedelta(hours=1))
    eng.dispatch_due()
    a = h.one_touchpoint(eng, step="a")
    assert a.status != "sent" and "no clinical consent" in a.reason and sms.keys == []
    clock.advance(timedelta(minutes=30))
    eng.ingest(h.Events(clock)("consent.changed", {"purpose": "clinical", "granted": True}))
    clock.advance(timedelta(hours=2))
    assert eng.dispatch_due().sent == 1
    assert sms.keys == [key(h.one_touchpoint(eng, step="b"))]


# ---------------------------------------------------------------- condition


def test_condition_rechecked_at_send_time(make, clock):
    sms = h.RecordingChannel("sms")
    steps = [now_step("fu", "1d", when="not patient.tagged('declined_followup')"),
             now_step("broken", "1d", when="event.nps <= 6")]  # no nps in the enrolling event
    patients = [PATIENT, PatientIn(mrn="M2", name="李四", phone="13900001111")]
    eng = make(steps, {"sms": sms}, patients=patients)
    join(eng, clock, "M1")
    join(eng, clock, "M2")
    eng.upsert_patient(PATIENT.model_copy(update={"tags": ["declined_followup"]}))  # M1 declines meanwhile
    clock.advance(timedelta(days=1))
    eng.dispatch_due()
    rows = {(r.patient_id, r.step): r for r in h.touchpoints(eng)}
    (p1, p2) = sorted({pid for pid, _ in rows})
    assert (rows[(p1, "fu")].status, rows[(p1, "fu")].reason) == ("skipped", "skipped: condition false")
    assert rows[(p2, "fu")].status == "sent"
    assert rows[(p1, "broken")].status == "skipped"
    assert rows[(p1, "broken")].reason.startswith("skipped: condition error")
    assert sms.keys == [key(rows[(p2, "fu")])]


# ----------------------------------------------------------------- templates


def test_template_error_is_recorded_not_raised(make, clock):
    sms = h.RecordingChannel("sms")
    eng = make([now_step("bad", tmpl="bad"), now_step("missing", tmpl="nope"), now_step("ok", "1m")],
               {"sms": sms})
    join(eng, clock)
    clock.advance(timedelta(minutes=1))
    report = eng.dispatch_due()
    assert report.outcomes["failed"] == 2 and report.sent == 1
    rows = {r.step: r for r in h.touchpoints(eng)}
    assert rows["bad"].status == "failed"
    assert rows["bad"].reason.startswith("failed: template bad:") and "nickname" in rows["bad"].reason
    assert (rows["missing"].status, rows["missing"].reason) == ("failed", "failed: unknown template 'nope'")
    assert sms.keys == [key(rows["ok"])]


# ------------------------------------------------------- after_step / replies


def test_after_step_unless_replied(make, clock):
    sms = h.RecordingChannel("sms")
    steps = [now_step("ask"),
             step("call", "post_visit", after_step("ask", "48h", unless="replied"), task("call_patient"))]
    patients = [PATIENT, PatientIn(mrn="M2", name="李四", phone="13900001111")]
    eng = make(steps, {"sms": sms}, patients=patients)
    join(eng, clock, "M1")
    join(eng, clock, "M2")
    # M2's reply to something earlier (before "ask" was sent) does not count
    eng.ingest(h.Events(clock, "M2")("message.replied", {"text": "谢谢"}, occurred_at=clock.now() - timedelta(hours=1)))
    assert eng.dispatch_due().sent == 2
    clock.advance(timedelta(hours=5))
    eng.ingest(h.Events(clock, "M1")("message.replied", {"text": "好的"}))
    clock.advance(timedelta(hours=43))
    eng.dispatch_due()
    calls = {r.patient_id: r for r in h.touchpoints(eng, step="call")}
    p1, p2 = sorted(calls)
    assert (calls[p1].status, calls[p1].reason) == ("skipped", "skipped: patient replied")
    assert (calls[p2].status, calls[p2].channel) == ("sent", "staff-task")
    [t] = h.staff_tasks(eng)
    assert (t.kind, t.patient_id, t.touchpoint_id) == ("call_patient", p2, calls[p2].id)
    assert t.detail == "call patient: step call of care (no reply to ask within 2d)"  # a step without detail


# ---------------------------------------------------------- urgent on events


def test_urgent_on_event_steps_are_dispatched_inline(make, clock):
    sms = h.RecordingChannel("sms")
    steps = [step("alert", "in_visit", on("vitals.alert"), send("t", ["sms"]), category="urgent"),
             step("note", "in_visit", on("vitals.alert"), send("t", ["sms"]))]
    eng = make(steps, {"sms": sms})
    join(eng, clock)
    clock.set(datetime(2026, 5, 1, 23, 30, tzinfo=SH))  # quiet hours do not hold urgent messages
    r = eng.ingest(h.Events(clock)("vitals.alert", {"bp": 190}))
    alert = h.one_touchpoint(eng, step="alert")
    assert r.urgent_touchpoints == [alert.id]
    assert (alert.status, alert.sent_at) == ("sent", clock.now())
    assert sms.keys == [key(alert)]  # without any dispatch_due call
    note = h.one_touchpoint(eng, step="note")
    assert (note.status, note.due_at) == ("scheduled", datetime(2026, 5, 2, 8, 0, tzinfo=SH))
    # the caller may opt out of inline dispatch
    r2 = eng.ingest(h.Events(clock)("vitals.alert", {"bp": 200}), dispatch_urgent=False)
    [second] = [t for t in h.touchpoints(eng, step="alert") if t.id != alert.id]
    assert r2.urgent_touchpoints == [second.id] and second.status == "scheduled" and len(sms.keys) == 1


# ------------------------------------------------------------ crash safety


def _patients(n: int) -> list[PatientIn]:
    return [PatientIn(mrn=f"M{i:04d}", name=f"患者{i}", phone=f"139{i:08d}") for i in range(n)]


def _enroll_all(eng, clock, n: int) -> None:
    ids = eng.upsert_patients(_patients(n))
    assert eng.enroll_many("care", [(pid, {}) for pid in ids]) == n


def test_expired_lease_is_reclaimed_and_sent_once(make, clock):
    dead_channel, live_channel = h.RecordingChannel("sms"), h.RecordingChannel("sms")
    dead = make([now_step()], {"sms": dead_channel}, patients=(), worker_id="dead")
    _enroll_all(dead, clock, 5)
    claimed = dead.dispatcher.claim(limit=10)  # ... and the worker is killed here
    assert len(claimed) == 5
    assert {(t.status, t.claimed_by) for t in h.touchpoints(dead)} == {("claimed", "dead")}
    live = make([now_step()], {"sms": live_channel}, patients=(), worker_id="live")
    clock.advance(timedelta(minutes=4, seconds=59))
    assert live.dispatch_due().claimed == 0, "a valid lease is respected"
    clock.advance(timedelta(seconds=2))  # past the 5-minute lease
    assert live.dispatch_due().sent == 5
    rows = h.touchpoints(live)
    assert {(t.status, t.claimed_by) for t in rows} == {("sent", "live")}
    assert sorted(live_channel.keys) == sorted(key(t) for t in rows) and dead_channel.keys == []
    clock.advance(timedelta(hours=1))
    assert live.dispatch_due().claimed == 0 and dead.dispatch_due().claimed == 0


def test_exit_while_in_flight_cancels_at_send_time(make, clock):
    """A touchpoint already claimed when the patient dies is cancelled by whoever sends it, never sent."""
    sms = h.RecordingChannel("sms")
    eng = make([now_step()], {"sms": sms}, lease=timedelta(minutes=5))
    join(eng, clock)
    [claimed] = eng.dispatcher.claim(limit=5)  # in flight on a worker that then dies
    eng.ingest(h.Events(clock)("patient.deceased"))
    clock.advance(timedelta(minutes=6))
    report = eng.dispatch_due()
    assert report.outcomes["cancelled"] == 1 and sms.keys == []
    tp = h.one_touchpoint(eng, id=claimed.id)
    assert (tp.status, tp.reason) == ("cancelled", "cancelled: patient deceased")


class _SlowChannel(h.RecordingChannel):
    """Blocks inside the provider call until released (a worker stalled past its lease)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.entered, self.release = threading.Event(), threading.Event()

    def send(self, message):
        self.entered.set()
        assert self.release.wait(10)
        return super().send(message)


def test_stalled_worker_past_its_lease_changes_nothing_when_it_wakes(make, clock):
    """Fencing: once another worker took the touchpoint over, the stalled one's outcome is discarded whole."""
    steps = [now_step("ask"),
             step("call", "post_visit", after_step("ask", "0s", outcome="failed"), task("call_patient"))]
    slow = _SlowChannel("sms", permanent=lambda m: True)  # it will come back with a refusal...
    fast = h.RecordingChannel("sms")  # ... after this worker delivered the message
    stalled = make(steps, {"sms": slow}, worker_id="stalled")
    other = make(steps, {"sms": fast}, patients=(), worker_id="other")
    join(stalled, clock)
    errors: list[BaseException] = []

    def run():
        try:
            stalled.dispatch_due()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        assert slow.entered.wait(10)
        clock.advance(timedelta(minutes=6))  # the stalled worker's lease runs out
        assert other.dispatch_due().sent == 1
    finally:
        slow.release.set()
        worker.join(10)
    assert not errors, errors
    ask = h.one_touchpoint(other, step="ask")
    assert (ask.status, ask.claimed_by) == ("sent", "other")
    assert fast.keys == slow.keys == [key(ask)], "same idempotency key on both workers"
    clock.advance(timedelta(minutes=1))
    other.dispatch_due()
    assert h.touchpoints(other, step="call") == [], "no 'failed' follow-up for a message that was sent"
    assert h.staff_tasks(other) == [], "no nurse call for a message that was sent"


def test_killed_after_provider_call_resends_with_same_key(make, clock):
    def outbox():
        return OutboxChannel("sms", OutboxConfig(address="phone"))

    dying = h.RecordingChannel("sms", inner=outbox(), crash_after_send=True)
    dead = make([now_step()], {"sms": dying}, patients=(), worker_id="dead")
    _enroll_all(dead, clock, 3)
    with pytest.raises(h.WorkerKilled):
        dead.dispatch_due()  # the provider took the first message, then the worker died
    assert len(dying.keys) == 1
    crashed_key = dying.keys[0]
    assert {t.status for t in h.touchpoints(dead)} == {"claimed"}
    assert {d.status for d in h.deliveries(dead)} == {"sending"}, "attempts are recorded before the provider call"

    healthy = h.RecordingChannel("sms", inner=outbox())
    live = make([now_step()], {"sms": healthy}, patients=(), worker_id="live")
    assert live.dispatch_due().claimed == 0
    clock.advance(timedelta(minutes=6))
    assert live.dispatch_due().sent == 3
    assert crashed_key in healthy.keys, "the retry carries the same idempotency key"
    assert Counter(healthy.keys) == Counter(key(t) for t in h.touchpoints(live))
    with live.db.connect() as conn:
        outbox_rows = conn.execute(select(OutboxMessage.idempotency_key, OutboxMessage.id)).all()
    assert Counter(k for k, _ in outbox_rows) == Counter(key(t) for t in h.touchpoints(live)), \
        "the provider (outbox) holds exactly one message per touchpoint"
    first_id = dict(outbox_rows)[crashed_key]
    [crashed_tp] = [t for t in h.touchpoints(live) if key(t) == crashed_key]
    assert h.deliveries(live, crashed_tp.id)[-1].provider_id == f"outbox-{first_id}"
    assert {t.status for t in h.touchpoints(live)} == {"sent"}


def test_two_dispatchers_racing_send_each_touchpoint_exactly_once(make, clock):
    n = 300
    channel = h.RecordingChannel("sms", sleep=0.001)
    a = make([now_step()], {"sms": channel}, patients=(), worker_id="w-a")
    b = make([now_step()], {"sms": channel}, patients=(), worker_id="w-b")
    _enroll_all(a, clock, n)
    sent: Counter = Counter()
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(eng):
        try:
            start.wait()
            while True:
                report = eng.dispatch_due(batch=20, max_batches=1)
                sent[eng.dispatcher.worker_id] += report.sent
                if report.claimed == 0:
                    return
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(eng,)) for eng in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    rows = h.touchpoints(a)
    assert len(rows) == n and {t.status for t in rows} == {"sent"}
    counts = channel.sent_keys()
    assert len(counts) == n and set(counts.values()) == {1}, "every key sent exactly once"
    assert set(counts) == {key(t) for t in rows}
    assert sum(sent.values()) == n
    assert {t.claimed_by for t in rows} <= {"w-a", "w-b"}
    with a.db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Delivery)).scalar() == n

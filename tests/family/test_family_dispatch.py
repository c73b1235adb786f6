"""Family and guardians (issue 19): a child's messages reach the guardian, a daily update reaches the patient and
each family member, a family member's own unsubscribe stops only them; every delivery once, per recipient."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from carepath.definition.dsl import after, calendar, enroll_on, journey, send, step, template
from carepath.definition.events import PatientIn
from carepath.definition.journey_files import load_journey_file
from carepath.reporting import timeline_data
from carepath.store.family_schema import RelatedPerson
from carepath.store.schema import Consent, Event

from tests.engine import helpers as h

EXAMPLE = Path(__file__).parents[1] / "data" / "journeys" / "family-inpatient-update.yaml"
CHILD, MOTHER, FATHER = "13800000011", "13900000022", "13700000033"
SPOUSE, DAUGHTER = "13600000044", "13500000055"


@pytest.fixture
def sms():
    return h.RecordingChannel("sms")


@pytest.fixture
def eng(database_url, settings, clock, sms):
    ward = load_journey_file(EXAMPLE)
    with h.running_engine(database_url, settings, clock, [ward], {"sms": sms}) as engine:
        yield engine


def _relative(eng, clock, mrn: str, ref: str, relationship: str, phone: str, *, guardian: bool = False,
              name: str = "王芳", **extra):
    return eng.ingest(h.Events(clock, mrn=mrn)("patient.related_person_added", {
        "ref": ref, "relationship": relationship, "guardian": guardian,
        "contact": {"name": name, "phone": phone}, **extra}))


def _to(sms) -> list[tuple[str, str]]:
    """(address, first words) of every message sent."""
    return [(m.address, m.body[:2]) for m in sms.messages]


def test_a_childs_messages_reach_the_guardians_and_never_the_child(eng, clock, sms):
    eng.upsert_patient(PatientIn(mrn="C1", name="李小明", phone=CHILD, birth_date=date(2016, 3, 1)))
    _relative(eng, clock, "C1", "rp-mother", "mother", MOTHER, guardian=True, name="王芳")
    _relative(eng, clock, "C1", "rp-father", "father", FATHER, guardian=True, name="李强")
    eng.ingest(h.Events(clock, mrn="C1")("encounter.admitted", {"encounter_id": "E1"}))
    clock.advance(timedelta(hours=2, minutes=1))
    eng.dispatch_due()
    eng.dispatch_due()  # the copy for the second guardian, due at once
    sent = {m.address for m in sms.messages}
    assert CHILD not in sent
    # ward rules (to: guardian) and the teaching message (a minor: guardians by default), each to both parents
    assert sorted((m.address, m.template) for m in sms.messages) == sorted(
        (phone, tpl) for phone in (MOTHER, FATHER) for tpl in ("ward_rules", "discharge_teaching"))
    assert {m.body for m in sms.messages if m.template == "ward_rules"} == {
        "王芳您好，病区探视时间为每天15:00-20:00。", "李强您好，病区探视时间为每天15:00-20:00。"}
    # one provider key per recipient, and it names them
    assert len(set(sms.keys)) == 4 and all("|to:rp:" in k for k in sms.keys)

    with eng.db.connect() as conn:
        data = timeline_data(conn, eng.cipher, 2)
    shown = str(data)
    assert MOTHER not in shown and "王芳" not in shown and "139****0022" in shown
    assert {t["recipient"] for t in data["touchpoints"] if t["status"] == "sent"} == {
        "mother (guardian) 王*", "father (guardian) 李*"}


def test_an_adult_gets_her_own_messages_and_to_guardian_is_skipped_without_one(eng, clock, sms):
    eng.upsert_patient(PatientIn(mrn="A1", name="赵丽", phone="13100000066", birth_date=date(1960, 1, 1)))
    _relative(eng, clock, "A1", "rp-son", "child", "13200000077", name="赵磊")
    eng.ingest(h.Events(clock, mrn="A1")("encounter.admitted", {"encounter_id": "E2"}))
    clock.advance(timedelta(hours=2, minutes=1))
    eng.dispatch_due()
    assert [(m.address, m.template) for m in sms.messages] == [("13100000066", "discharge_teaching")]
    [rules] = h.touchpoints(eng, step="ward_rules")
    assert (rules.status, rules.reason) == ("skipped", "skipped: no guardian on record")


def test_the_daily_family_update_reaches_each_member_until_one_unsubscribes(eng, clock, sms):
    eng.upsert_patient(PatientIn(mrn="P1", name="孙梅", phone="13100000088", birth_date=date(1950, 5, 5)))
    _relative(eng, clock, "P1", "rp-spouse", "spouse", SPOUSE, name="周建国")
    _relative(eng, clock, "P1", "rp-daughter", "child", DAUGHTER, name="周晓")
    eng.ingest(h.Events(clock, mrn="P1")("encounter.admitted", {"encounter_id": "E3"}))
    day = lambda: {m.address for m in sms.messages if m.template == "family_update"}  # noqa: E731

    clock.advance(timedelta(days=1, hours=9, minutes=1))  # just past 2026-05-02 18:00 in Shanghai
    eng.dispatch_due()
    eng.dispatch_due()
    assert day() == {"13100000088", SPOUSE, DAUGHTER}
    assert sorted(m.body[:4] for m in sms.messages if m.address == DAUGHTER) == ["周晓您好"]

    # the daughter replies 退订 from her own phone: only she stops
    result = eng.ingest(h.Events(clock, mrn="P1", source="sms")("message.replied", {
        "text": "退订", "channel": "sms", "related_person": "rp-daughter"}))
    assert "rp-daughter" in result.summary()
    with eng.db.connect() as conn:
        assert conn.execute(select(Consent)).all() == []  # the patient's consent is untouched
        assert conn.execute(select(Event.intent).where(Event.type == "message.replied")).scalar() == "unsubscribe"

    sms.messages.clear()
    clock.advance(timedelta(days=1))
    eng.dispatch_due()
    eng.dispatch_due()
    assert day() == {"13100000088", SPOUSE}
    assert all(k.count("|to:") <= 1 for k in sms.keys) and len(sms.keys) == len(set(sms.keys))

    # dispatching again sends nothing twice
    before = len(sms.keys)
    eng.dispatch_due()
    assert len(sms.keys) == before


def test_a_removed_family_member_gets_nothing_more(eng, clock, sms):
    eng.upsert_patient(PatientIn(mrn="P2", name="钱进", phone="13100000099", birth_date=date(1970, 1, 1)))
    _relative(eng, clock, "P2", "rp-wife", "spouse", SPOUSE, name="林静")
    eng.ingest(h.Events(clock, mrn="P2")("encounter.admitted", {"encounter_id": "E4"}))
    eng.ingest(h.Events(clock, mrn="P2")("patient.related_person_removed", {"ref": "rp-wife"}))
    clock.advance(timedelta(days=1, hours=9, minutes=1))
    eng.dispatch_due()
    eng.dispatch_due()
    assert {m.address for m in sms.messages if m.template == "family_update"} == {"13100000099"}


def test_each_family_member_has_their_own_marketing_consent_and_cap(database_url, settings, clock, sms):
    greet = journey("greetings", enroll=enroll_on("program.joined"), templates=[template("mid_autumn", "中秋快乐")],
                    steps=[step("greet", "post_visit", after("enrolled", "1h"),
                                send("mid_autumn", ["sms"], to="family"), category="marketing")])
    with h.running_engine(database_url, settings, clock, [greet], {"sms": sms}) as eng:
        _relative(eng, clock, "M1", "rp-a", "spouse", SPOUSE, marketing_consent=True)
        _relative(eng, clock, "M1", "rp-b", "child", DAUGHTER)
        eng.ingest(h.Events(clock)("program.joined", {}))
        clock.advance(timedelta(hours=1, minutes=1))
        eng.dispatch_due()
        eng.dispatch_due()
        assert [m.address for m in sms.messages] == [SPOUSE]
        [copy] = [t for t in h.touchpoints(eng) if t.recipient and t.status == "skipped"]
        assert copy.reason == "skipped: no marketing consent of the child"


def test_the_stored_related_person_is_encrypted(eng, clock):
    _relative(eng, clock, "M1", "rp-x", "mother", MOTHER, guardian=True, name="王芳")
    stored = str(h.raw_rows(eng, "related_persons")) + str(h.raw_rows(eng, "events"))
    assert MOTHER not in stored and "王芳" not in stored
    with eng.db.connect() as conn:
        row = conn.execute(select(RelatedPerson.__table__)).one()
    assert eng.cipher.decrypt(row.phone_enc) == MOTHER and row.relationship == "mother" and row.guardian


def test_a_merge_brings_the_family_along(eng, clock, sms):
    eng.upsert_patient(PatientIn(mrn="OLD", name="周敏", phone="13100000010", birth_date=date(2017, 2, 2)))
    eng.upsert_patient(PatientIn(mrn="NEW", name="周敏", phone="13100000010", birth_date=date(2017, 2, 2)))
    _relative(eng, clock, "OLD", "NK1/1", "mother", MOTHER, guardian=True)
    _relative(eng, clock, "OLD", "NK1/2", "father", FATHER, guardian=True)
    _relative(eng, clock, "NEW", "NK1/1", "mother", MOTHER, guardian=True)
    eng.ingest(h.Events(clock, mrn="NEW")("patient.merged", {"merged_mrn": "OLD"}))
    with eng.db.connect() as conn:
        rows = conn.execute(select(RelatedPerson.patient_id, RelatedPerson.ref).order_by(RelatedPerson.id)).all()
    new_id = rows[2].patient_id
    assert sorted((pid == new_id, ref) for pid, ref in rows) == [(False, "NK1/1"), (True, "NK1/1"), (True, "NK1/2")]


def test_an_undelivered_message_calls_about_a_guardian_but_not_about_other_family(database_url, settings, clock):
    sms = h.RecordingChannel("sms", permanent=lambda m: m.address in (MOTHER, SPOUSE))
    ward = load_journey_file(EXAMPLE)
    with h.running_engine(database_url, settings, clock, [ward], {"sms": sms}) as eng:
        eng.upsert_patient(PatientIn(mrn="C2", name="吴小雨", phone=CHILD, birth_date=date(2018, 6, 1)))
        _relative(eng, clock, "C2", "NK1/1", "mother", MOTHER, guardian=True)
        _relative(eng, clock, "C2", "NK1/2", "aunt", SPOUSE)
        eng.ingest(h.Events(clock, mrn="C2")("encounter.admitted", {"encounter_id": "E9"}))
        clock.advance(timedelta(days=1, hours=9, minutes=1))
        eng.dispatch_due()
        eng.dispatch_due()
        details = sorted(t.detail.splitlines()[0] for t in h.staff_tasks(eng))
        # every message to the mother (the guardian) failed: a nurse calls her; the aunt's update failed: no call
        assert details == [f"Call the patient's mother: message '{template}' of step {step} was not delivered on "
                           "any channel." for template, step in sorted([("discharge_teaching", "teaching"),
                                                                        ("family_update", "family_update"),
                                                                        ("ward_rules", "ward_rules")])]
        assert {m.address for m in sms.messages if m.template == "family_update"} == {CHILD, MOTHER, SPOUSE}

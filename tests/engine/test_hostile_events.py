"""Hostile events are refused at the door naming the field, nothing stored, alike on SQLite and PostgreSQL;
personal data in payloads is not stored in clear."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from carepath.definition.dsl import anchor, before, enroll_on, journey, send, step, template
from carepath.definition.events import EventIn, EventRejected, PatientIn, parse_event
from carepath.settings import Settings
from carepath.store.personal_data import ENCRYPTED, contains_id_card, reveal_payload
from carepath.store.schema import Enrollment, Event

from tests.engine import helpers as h

SH = ZoneInfo("Asia/Shanghai")
ID_CARD = "11010519491231002X"  # a valid check character
PHONE = "13812345678"


def nested(depth: int) -> dict:
    payload: dict = {}
    node = payload
    for _ in range(depth - 1):
        node["a"] = {}
        node = node["a"]
    return payload


VISIT = journey("visit", enroll=enroll_on("appointment.booked", when="event.id_card is not defined or "
                                                                    "event.id_card[:2] == '11'"),
                anchors={"appointment": anchor(["appointment.booked"], field="start")},
                templates=[template("t", "您好")],
                steps=[step("r1", "pre_visit", before("appointment", "1d", at="18:00"), send("t", ["sms"]))])


@pytest.fixture
def eng(database_url, settings, clock):
    engine = h.make_engine(database_url, settings, clock, [VISIT], {"sms": h.RecordingChannel("sms")})
    engine.upsert_patient(PatientIn(mrn="M1", name="张三", phone=PHONE))
    yield engine
    engine.close()


def base(**changes) -> dict:
    event = dict(type="appointment.booked", source="his", source_id="S1", patient_mrn="M1",
                 occurred_at=datetime(2026, 5, 1, 9, tzinfo=SH), payload={"start": "2026-05-20T14:00:00+08:00"})
    event.update(changes)
    return event


HOSTILE = {
    "nested 3,000 deep": (base(payload=nested(3000)), "payload" + ".a" * 32, "nested deeper than 32"),
    "NUL in a payload value": (base(payload={"note": "a\x00b"}), "payload.note", "NUL"),
    "NUL in a payload key": (base(payload={"no\x00te": "x"}), "payload.no\x00te", "NUL"),
    "NUL in source_id": (base(source_id="S\x001"), "source_id", "NUL"),
    "NaN": (base(payload={"score": float("nan")}), "payload.score", "not a number"),
    "Infinity in a list": (base(payload={"readings": [1.0, float("inf")]}), "payload.readings[1]", "not a number"),
    "type too long": (base(type="a." + "b" * 70), "type", "at most 64"),
    "source too long": (base(source="s" * 65), "source", "at most 64"),
    "source_id too long": (base(source_id="x" * 256), "source_id", "at most 255"),
    "payload too large": (base(payload={"text": "字" * 100_000}), "payload", "over the limit"),
    "occurred in year 1": (base(occurred_at=datetime(1, 1, 1, 12, tzinfo=timezone.utc)), "occurred_at", "0001-01-01"),
    "occurred in year 9999": (base(occurred_at=datetime(9999, 12, 31, 9, tzinfo=SH)), "occurred_at", "9999-12-31"),
    "payload date in 9999": (base(payload={"start": "9999-12-31T14:00:00+08:00"}), "payload.start", "outside"),
    "payload date object in year 1": (base(payload={"visit": {"on": date(1, 1, 1)}}), "payload.visit.on", "outside"),
    "patient record with its own mrn": (base(payload={"patient": {"mrn": "M2", "name": "李四"}}),
                                        "payload.patient.mrn", "patient_mrn names the patient"),
    "a huge integer": (base(payload={"n": 10**5000}), "payload.n", "64-bit"),
    "a set is not JSON": (base(payload={"tags": {"a"}}), "payload.tags", "not JSON data"),
    # a lone surrogate (as json.loads makes of "\\ud800") cannot be encoded as UTF-8 on either database
    "lone surrogate in a payload value": (base(payload={"note": "a\ud800b"}), "payload.note", "lone surrogate"),
    "lone surrogate deep in a list": (base(payload={"visit": {"notes": ["ok", "\udfff"]}}), "payload.visit.notes[1]",
                                      "U+DFFF"),
    "lone surrogate in a payload key": (base(payload={"no\ud800te": "x"}), "payload.no\\ud800te", "lone surrogate"),
    "lone surrogate in source_id": (base(source_id="S\udc801"), "source_id", "lone surrogate"),
    "lone surrogate in a patient record": (base(payload={"patient": {"name": "张\ud83d"}}), "payload.patient.name",
                                           "lone surrogate"),
}


def test_hostile_events_are_refused_naming_the_field_and_nothing_is_stored(eng):
    before = h.snapshot(eng)
    for case, (data, field, reason) in HOSTILE.items():
        with pytest.raises(EventRejected) as refused:
            eng.ingest(EventIn.model_construct(**data))  # as a caller that skipped validation would hand it over
        assert refused.value.field == field and reason in refused.value.reason, (case, str(refused.value))
        assert h.snapshot(eng) == before, case
        with pytest.raises(EventRejected) as parsed:  # the same refusal from the parsing boundary
            parse_event(data)
        assert parsed.value.field == field, (case, str(parsed.value))


def test_a_refused_event_does_not_block_the_next_one(eng):
    with pytest.raises(EventRejected):
        eng.ingest(EventIn.model_construct(**base(payload={"score": float("nan")})))
    assert eng.ingest(EventIn(**base())).enrolled == ["visit"]


def test_json_documents_are_refused_alike():
    deep = json.dumps(base(payload={}), default=str).replace('"payload": {}', '"payload": ' + "[" * 3000 + "]" * 3000)
    with pytest.raises(EventRejected) as too_deep:
        parse_event(deep)
    assert too_deep.value.field.startswith("payload") and "nested deeper" in too_deep.value.reason
    with pytest.raises(EventRejected) as nan:
        parse_event(json.dumps(base(payload={}), default=str).replace('"payload": {}', '"payload": {"score": NaN}'))
    assert "NaN" in str(nan.value)
    with pytest.raises(EventRejected) as not_object:
        parse_event("[1, 2]")
    assert not_object.value.field == "event"
    with pytest.raises(EventRejected) as bad_type:
        parse_event({**base(), "type": "Not A Type"})
    assert bad_type.value.field == "type" and "Not A Type" not in str(bad_type.value)


def test_limits_are_configurable(database_url, tmp_path, clock):
    settings = Settings(home=tmp_path / "home", event_max_depth=3, event_max_payload_bytes=2048,
                        event_latest=date(2030, 12, 31))
    eng = h.make_engine(database_url, settings, clock, [VISIT], {})
    try:
        eng.upsert_patient(PatientIn(mrn="M1"))
        for payload, field in (({"a": {"b": {"c": 1}}}, "payload.a.b.c"), ({"t": "x" * 3000}, "payload"),
                               ({"start": "2031-01-01T09:00:00+08:00"}, "payload.start")):
            with pytest.raises(EventRejected) as refused:
                eng.ingest(EventIn(**base(payload=payload)))
            assert refused.value.field == field
        assert eng.ingest(EventIn(**base(payload={"a": {"b": 1}}))).status == "stored"
    finally:
        eng.close()


def test_datetimes_in_a_payload_are_stored_as_iso_text(eng):
    start = datetime(2026, 5, 20, 14, 0, tzinfo=SH)
    result = eng.ingest(EventIn(**base(payload={"start": start, "visit": {"day": date(2026, 5, 20)}})))
    assert result.enrolled == ["visit"] and result.planned == 1
    with eng.db.connect() as conn:
        payload = conn.execute(select(Event.payload)).scalar_one()
        anchors = conn.execute(select(Enrollment.anchors)).scalar_one()
    assert payload == {"start": start.isoformat(), "visit": {"day": "2026-05-20"}}
    assert datetime.fromisoformat(anchors["appointment"]) == start
    [r1] = h.touchpoints(eng)
    assert r1.due_at == datetime(2026, 5, 19, 18, 0, tzinfo=SH)


def test_id_card_numbers_and_phones_in_a_payload_are_not_stored_in_clear(eng):
    payload = {"start": "2026-05-20T14:00:00+08:00", "id_card": ID_CARD, "phone": "138 1234 5678",
               "visit": {"patient_id_number": "110105194912310021", "room": "3-12"},
               "contact": {"name": "王五", "relation": "son"}, "note": f"家属电话 +86-{PHONE}，身份证{ID_CARD}",
               "department": "cardiology"}
    result = eng.ingest(EventIn(**base(payload=payload)))
    assert result.enrolled == ["visit"], "the engine still used the ID-card number in the clear"
    for table, rows in h.snapshot(eng).items():
        text = json.dumps([[str(c) for c in r] for r in rows], ensure_ascii=False)
        for secret in (ID_CARD, "110105194912310021", PHONE, "1234 5678", "王五"):
            assert secret not in text, (table, secret)
    with eng.db.connect() as conn:
        stored = conn.execute(select(Event.payload)).scalar_one()
        context = conn.execute(select(Enrollment.context)).scalar_one()
    assert set(stored["id_card"]) == {ENCRYPTED} and stored["department"] == "cardiology"
    assert stored["visit"]["room"] == "3-12" and stored["contact"].keys() == {ENCRYPTED}
    assert reveal_payload(stored, eng.cipher) == payload
    assert reveal_payload(context, eng.cipher) == payload


def test_id_card_detection_checks_the_check_character():
    assert contains_id_card(f"证件号 {ID_CARD} 已核对")
    assert not contains_id_card("110105194912310022")  # wrong check character
    assert not contains_id_card("order 2026050112345678901")  # too long, part of another number


def test_patient_records_are_bounded(eng):
    for record, field in (({"mrn": "M1", "birth_date": date(1, 1, 1)}, "birth_date"),
                          ({"mrn": "M1", "name": "张\x00三"}, "name"), ({"mrn": "M1", "sex": "x" * 9}, "sex")):
        with pytest.raises(ValueError) as refused:
            PatientIn(**record)
        assert field in str(refused.value)
    assert PatientIn(mrn="M1", birth_date=date(1950, 3, 1)).birth_date.year == 1950

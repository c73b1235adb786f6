"""The expression sandbox, strict templates, masking of contact data and encryption at rest."""

from __future__ import annotations

import base64
import os
from datetime import date

import pytest
from cryptography.exceptions import InvalidTag
from jinja2.exceptions import SecurityError, UndefinedError
from sqlalchemy import select

from carepath.connectors.outbox import OutboxChannel, OutboxConfig
from carepath.definition.context import PatientView, expression_context
from carepath.definition.dsl import after, enroll_on, journey, send, step, template
from carepath.definition.events import PatientIn
from carepath.definition.expressions import ExpressionError, evaluate, render
from carepath.masking import mask_address, mask_name, mask_openid, mask_phone, mask_text
from carepath.runtime.patients import find_patient_id, load_patients
from carepath.store.crypto import Cipher
from carepath.store.schema import Base, Patient


from tests.engine import helpers as h

PHONE, NAME, OPENID, MRN = "13812341234", "张三丰", "oWx_Abc1234567", "MRN-778899"


def ctx(**extra):
    view = PatientView(id=1, name=NAME, sex="F", birth_date=date(1950, 3, 1), conditions=("E11.9",), tags=("vip",),
                       tz="Asia/Shanghai", language="zh_CN", today=date(2026, 5, 1))
    return expression_context(view, event={"nps": 5, **extra})


# ------------------------------------------------------------------- sandbox

ESCAPES = [
    "().__class__.__mro__",
    "().__class__.__mro__[1].__subclasses__()",
    "patient.__class__.__init__.__globals__",
    "cycler.__init__.__globals__.os",
    "event.update({'nps': 10})",
    "event.__class__",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_conditions_cannot_escape_the_sandbox(source):
    for expr in (source, f"not {source}", f"{source} or true"):
        result = evaluate(expr, ctx())
        assert result.value is False, f"{expr!r} must not evaluate true"
        assert result.error and "SecurityError" in result.error


@pytest.mark.parametrize("source", ESCAPES)
def test_templates_cannot_escape_the_sandbox(source):
    with pytest.raises(SecurityError):
        render("{{ " + source + " }}", ctx())


def test_templates_cannot_mutate_the_context():
    context = ctx()
    with pytest.raises(SecurityError):
        render("{{ event.update({'nps': 10}) }}", context)
    assert context["event"]["nps"] == 5


def test_ordinary_conditions_and_templates_work():
    assert evaluate("patient.age >= 65 and patient.has('E11')", ctx()).value is True
    assert evaluate("event.nps <= 6 and patient.tagged('vip')", ctx()).value is True
    assert evaluate(None, ctx()).value is True
    assert render("{{ patient.surname }}女士，您好（{{ event.nps }}分）", ctx()) == "张女士，您好（5分）"


def test_syntax_errors_are_reported_with_a_column():
    with pytest.raises(ExpressionError) as exc:
        evaluate("patient.age >=", ctx())
    assert exc.value.line == 1 and exc.value.column == len("patient.age >=") + 1


def test_strict_undefined_raises_at_render():
    for source in ("{{ patient.nickname }}", "{{ missing }}", "{% if missing %}x{% endif %}",
                   "{{ event.score }}"):
        with pytest.raises(UndefinedError):
            render(source, ctx())
    result = evaluate("event.score > 3", ctx())
    assert result.value is False and "UndefinedError" in result.error


def test_sandbox_escape_in_a_journey_is_recorded_not_executed(database_url, settings, clock):
    j = journey("care", enroll=enroll_on("program.joined"),
                templates=[template("evil", "{{ ().__class__.__mro__[1].__subclasses__() }}"), template("t", "hi")],
                steps=[step("tmpl", "post_visit", after("enrolled"), send("evil", ["sms"])),
                       step("cond", "post_visit", after("enrolled"), send("t", ["sms"]),
                            when="not ().__class__.__mro__")])
    sms = h.RecordingChannel("sms")
    eng = h.make_engine(database_url, settings, clock, [j], {"sms": sms})
    try:
        eng.upsert_patient(PatientIn(mrn=MRN, name=NAME, phone=PHONE))
        eng.ingest(h.Events(clock, MRN)("program.joined"))
        eng.dispatch_due()
        rows = {t.step: t for t in h.touchpoints(eng)}
        assert rows["tmpl"].status == "failed" and "unsafe" in rows["tmpl"].reason
        assert rows["cond"].status == "skipped" and "SecurityError" in rows["cond"].reason
        assert sms.keys == []
    finally:
        eng.close()


# ------------------------------------------------------------------- masking


def test_mask_phone():
    assert mask_phone(PHONE) == "138****1234"
    assert mask_phone(" 13812341234 ") == "138****1234"
    assert mask_phone("") == mask_phone(None) == ""
    assert PHONE not in mask_phone("+86" + PHONE) and mask_phone("+86" + PHONE).endswith("1234")
    assert mask_phone("12345") == "*****"


def test_mask_text_masks_mainland_mobiles_in_free_text():
    assert mask_text(f"请致电{PHONE}或13900001111。") == "请致电138****1234或139****1111。"
    assert mask_text(f"phone={PHONE}, order=20260501123456") == "phone=138****1234, order=20260501123456"
    assert mask_text("86-" + PHONE) == "86-138****1234"


def test_mask_text_masks_e164_numbers():
    for text in (f"+86{PHONE}", f"to=+86{PHONE} failed", f"86{PHONE}"):
        masked = mask_text(text)
        assert PHONE not in masked and "1234" in masked, masked


def test_mask_name_openid_address():
    assert mask_name(NAME) == "张**" and mask_name("") == ""
    masked = mask_openid(OPENID)
    assert masked == "oWx_****67" and OPENID not in masked
    assert mask_address("phone", PHONE) == "138****1234"
    assert mask_address("openid", OPENID) == masked
    assert mask_address("none", "anything") == "****"


def test_outbox_stores_only_the_masked_address(database_url, settings, clock):
    j = journey("care", enroll=enroll_on("program.joined"), templates=[template("t", "您好")],
                steps=[step("s", "post_visit", after("enrolled"), send("t", ["sms"]))])
    eng = h.make_engine(database_url, settings, clock, [j], {"sms": OutboxChannel("sms", OutboxConfig(address="phone"))})
    try:
        eng.upsert_patient(PatientIn(mrn=MRN, name=NAME, phone=PHONE))
        eng.ingest(h.Events(clock, MRN)("program.joined"))
        assert eng.dispatch_due().sent == 1
        rows = h.raw_rows(eng, "outbox_messages")
        assert len(rows) == 1 and "138****1234" in rows[0]
        assert not any(PHONE in str(cell) for cell in rows[0])
    finally:
        eng.close()


# --------------------------------------------------------- encryption at rest


def _plaintext_cells(eng, secrets, tables=None):
    found = []
    for table in tables or [t.name for t in Base.metadata.sorted_tables]:
        for row in h.raw_rows(eng, table):
            for cell in row:
                text = str(cell)
                found += [(table, s) for s in secrets if s in text or s.encode().hex() in text]
    return found


def test_contact_data_is_encrypted_at_rest_and_decrypts_back(database_url, settings, clock):
    eng = h.make_engine(database_url, settings, clock, [], {})
    try:
        pid = eng.upsert_patient(PatientIn(mrn=MRN, name=NAME, phone=PHONE, openid=OPENID))
        assert len(h.raw_rows(eng, "patients")) == 1
        assert not _plaintext_cells(eng, [PHONE, NAME, OPENID, MRN], ["patients"])
        with eng.db.connect() as conn:
            stored = conn.execute(select(Patient.__table__)).one()
            assert stored.phone_enc.startswith(f"{eng.cipher.current}:") and stored.key_id == eng.cipher.current
            assert eng.cipher.decrypt(stored.phone_enc) == PHONE
            assert eng.cipher.decrypt(stored.name_enc) == NAME
            assert eng.cipher.decrypt(stored.mrn_enc) == MRN
            assert find_patient_id(conn, eng.cipher, MRN) == pid
            record = load_patients(conn, eng.cipher, [pid], clock.now())[pid]
        assert (record.view.name, record.addresses["phone"], record.addresses["openid"]) == (NAME, PHONE, OPENID)
        # an update keeps the same patient (found by keyed hash) and re-encrypts
        assert eng.upsert_patient(PatientIn(mrn=MRN, name=NAME, phone="13900001111")) == pid
        assert not _plaintext_cells(eng, ["13900001111", NAME, MRN], ["patients"])
    finally:
        eng.close()


def test_cipher_uses_fresh_nonces_and_rejects_a_wrong_key():
    k1, k2 = os.urandom(32), os.urandom(32)
    cipher = Cipher({"k1": k1}, "k1")
    a, b = cipher.encrypt(PHONE), cipher.encrypt(PHONE)
    assert a != b and cipher.decrypt(a) == cipher.decrypt(b) == PHONE
    assert base64.b64decode(a.split(":", 1)[1]).find(PHONE.encode()) == -1
    with pytest.raises(InvalidTag):
        Cipher({"k1": k2}, "k1").decrypt(a)
    # rotation: a new current key still reads data written under the old one
    rotated = Cipher({"k1": k1, "k2": k2}, "k2")
    assert rotated.decrypt(a) == PHONE and rotated.encrypt(PHONE).startswith("k2:")


def test_lookups_survive_key_rotation():
    k1, k2 = os.urandom(32), os.urandom(32)
    before = Cipher({"k1": k1}, "k1")
    after_rotation = Cipher({"k1": k1, "k2": k2}, "k2")
    # issue 22: new hashes are under the active key; look-ups try every key of the ring (the rotation then
    # recomputes the stored hashes, tests/cli/test_key_rotation.py)
    assert after_rotation.lookup_hash(MRN) != before.lookup_hash(MRN)
    assert before.lookup_hash(MRN) in after_rotation.lookup_hashes(MRN)


def test_patient_record_in_an_event_is_not_stored_in_plaintext(database_url, settings, clock):
    j = journey("care", enroll=enroll_on("program.joined"), templates=[template("t", "您好")],
                steps=[step("s", "post_visit", after("enrolled", "1d"), send("t", ["sms"]))])
    eng = h.make_engine(database_url, settings, clock, [j], {"sms": h.RecordingChannel("sms")})
    try:
        r = eng.ingest(h.Events(clock, MRN)("program.joined", {"patient": {"name": NAME, "phone": PHONE,
                                                                            "openid": OPENID}}))
        assert r.enrolled == ["care"]
        assert _plaintext_cells(eng, [PHONE, NAME, OPENID]) == []
    finally:
        eng.close()

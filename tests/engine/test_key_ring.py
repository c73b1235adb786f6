"""The key ring: keys from several sources, every registered column rotated, look-ups and signed links across a
rotation, retirement refused while a key protects anything, rotations audited."""

from __future__ import annotations

import base64

import pytest
from sqlalchemy import select, update

from carepath.definition.dsl import after, enroll_on, journey, send, step, template
from carepath.definition.events import PatientIn
from carepath.plugins.hookspecs import hookimpl
from carepath.plugins.manager import get_plugin_manager
from carepath.runtime.survey_links import read_token, survey_token
from carepath.settings import Settings
from carepath.store import KeyError_
from carepath.store.crypto_rotation import RotationError, key_status, retire, rotate
from carepath.store.keyring import load_key_ring, write_key_file
from carepath.store.personal_data import reveal_payload
from carepath.store.schema import AuditEntry, Enrollment, Event, Patient
from tests.engine import helpers as h

K1, K2 = base64.b64encode(b"a" * 32).decode(), base64.b64encode(b"b" * 32).decode()
PHONE = "13812341234"


def _journey():
    return journey("care", enroll=enroll_on("program.joined"), templates=[template("t", "您好")],
                   steps=[step("s", "post_visit", after("enrolled", "1d"), send("t", ["sms"]))])


def test_keys_come_from_the_environment_the_key_folder_and_a_kms_plugin(tmp_path):
    settings = Settings(home=tmp_path, secret_key=K1, keys={"k2": K2})
    write_key_file(settings, "k3")

    class Kms:
        @hookimpl
        def carepath_encryption_keys(self):
            return {"kms-1": b"k" * 32}

    pm = get_plugin_manager().pm
    plugin = Kms()
    pm.register(plugin, name="test-kms")
    try:
        ring = load_key_ring(settings)
    finally:
        pm.unregister(plugin, name="test-kms")
    assert ring.current == "k1" and sorted(ring.key_ids) == ["k1", "k2", "k3", "kms-1"]
    with pytest.raises(KeyError_, match="key id 'k3' has two different keys: in CAREPATH_KEYS and in the key file"):
        load_key_ring(Settings(home=tmp_path, secret_key=K1, keys={"k3": K1}), plugins=False)
    assert load_key_ring(settings, active="k3", plugins=False).current == "k3"


def test_rotation_moves_every_registered_column_and_keeps_lookups_and_links_working(database_url, tmp_path, clock):
    both = Settings(home=tmp_path / "home", secret_key=K1, keys={"k2": K2})
    engine = h.make_engine(database_url, both, clock, [_journey()], {"sms": h.RecordingChannel("sms")})
    try:
        engine.upsert_patient(PatientIn(mrn="M1", name="张三", phone=PHONE, openid="oABC"))
        events = h.Events(clock, "M1")
        engine.ingest(events("program.joined", {"contact": {"phone": PHONE}}))
        engine.ingest(h.Events(clock, "M9")("program.joined", {"note": f"call {PHONE}"}))  # held: M9 unknown
        link = survey_token(engine.cipher, 42)
        before = key_status(engine.db)
        assert set(before.per_key()) == {"k1"}
        assert before.columns["events.payload"]["k1"] == 2 and before.columns["enrollments.context"]["k1"] == 1
        assert before.columns["events.mrn_enc"]["k1"] == 1
        # a writer that switched to k2 between a value and its hash: the rotation corrects the hash
        with engine.db.begin() as conn:
            conn.execute(update(Patient).values(phone_enc=engine.cipher.encrypt(PHONE, key_id="k2"),
                                                phone_hash=engine.cipher.lookup_hash(PHONE, key_id="k1")))
        with pytest.raises(RotationError, match="key 'k3' is not in the key ring"):
            rotate(engine.db, engine.cipher, "k3")
        result = rotate(engine.db, engine.cipher, "k2", actor="cli:ops")
        assert result.moved["patients.mrn_enc"] == 1 and result.moved["events.payload"] == 2
        assert result.moved["patients.phone_enc"] == 0 and result.hashes_fixed == 1
        assert set(key_status(engine.db).per_key()) == {"k2"}
        assert read_token(engine.cipher, link) == 42  # a link sent before the rotation still opens
        with pytest.raises(RotationError, match="is the active key"):
            retire(engine.db, engine.cipher, "k2")
        retire(engine.db, engine.cipher, "k1", actor="cli:ops")
        with engine.db.connect() as conn:
            actions = [(a, e) for a, e in conn.execute(select(AuditEntry.action, AuditEntry.entity_id))]
        assert ("keys.rotation_started", "k2") in actions and ("keys.rotated", "k2") in actions
        assert ("keys.retired", "k1") in actions
    finally:
        engine.close()

    only_new = Settings(home=tmp_path / "home", keys={"k2": K2}, key_id="k2")
    engine = h.make_engine(database_url, only_new, clock, [_journey()], {"sms": h.RecordingChannel("sms")})
    try:
        assert engine.cipher.key_ids == ["k2"]
        with engine.db.connect() as conn:
            payloads = [reveal_payload(p, engine.cipher) for p in conn.execute(select(Event.payload)).scalars()]
            contexts = [reveal_payload(c, engine.cipher) for c in conn.execute(select(Enrollment.context)).scalars()]
        assert {"contact": {"phone": PHONE}} in payloads and {"note": f"call {PHONE}"} in payloads
        assert contexts == [{"contact": {"phone": PHONE}}]
        assert engine.upsert_patient(PatientIn(mrn="M1", name="张三")) == 1  # found by its re-computed MRN hash
        with engine.db.connect() as conn:
            assert conn.execute(select(Patient.id).where(
                Patient.phone_hash == engine.cipher.lookup_hash(PHONE))).scalar() == 1
        engine.upsert_patient(PatientIn(mrn="M9", name="李四"))  # the event held for M9 is released now
        with engine.db.connect() as conn:
            statuses = sorted(conn.execute(select(Event.status)).scalars())
        assert statuses == ["applied", "applied"]
    finally:
        engine.close()


def test_a_running_process_follows_the_store_s_active_key(database_url, tmp_path):
    from carepath.store import open_store
    from carepath.store.database import active_key_id

    settings = Settings(home=tmp_path / "home", secret_key=K1, keys={"k2": K2})
    serving, operator = open_store(settings, database_url), open_store(settings, database_url)
    try:
        serving.cipher.follow(lambda: active_key_id(serving.db), refresh=0)
        assert serving.cipher.current == "k1"
        rotate(operator.db, operator.cipher, "k2")
        with serving.db.begin() as conn:  # asked while a transaction is open (SQLite: while holding the lock)
            conn.execute(select(Event.id)).all()
            assert serving.cipher.current == "k2"
            assert serving.cipher.encrypt("x").startswith("k2:")
    finally:
        serving.db.dispose()
        operator.db.dispose()

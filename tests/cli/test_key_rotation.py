"""Key rotation through the command line: killed halfway (SIGKILL), resumed, every value under the new key only."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import func, select

from carepath.definition.events import PatientIn
from carepath.runtime.patients import find_patient_id, upsert_patients_bulk
from carepath.settings import Settings
from carepath.store import open_store
from carepath.store.crypto import Cipher
from carepath.store.crypto_registry import encrypted_columns, keyed_hashes, table_of
from carepath.store.crypto_rotation import key_status
from carepath.store.schema import Patient
from carepath.store.schema_trust import KeyRotationProgress

K1, K2 = base64.b64encode(b"1" * 32).decode(), base64.b64encode(b"2" * 32).decode()
# four encrypted values each (MRN, name, phone, openid): 20,000 values in 40 batches of 500, killed after 10;
# CAREPATH_ROTATION_PATIENTS=25000 rotates 100,000
PATIENTS = int(os.environ.get("CAREPATH_ROTATION_PATIENTS", "5000"))


def _env(home: Path, **keys: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREPATH_")}
    env.update(CAREPATH_HOME=str(home), CAREPATH_CONFIG=str(home / "none.toml"), **keys)
    return env


def _settings(home: Path, env: dict[str, str]) -> Settings:
    return Settings(home=home, secret_key=env.get("CAREPATH_SECRET_KEY"),
                    keys=json.loads(env.get("CAREPATH_KEYS", "{}")), key_id=env.get("CAREPATH_KEY_ID", "k1"))


def _carepath(*args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "carepath.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _moved(store) -> int:
    with store.db.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.sum(KeyRotationProgress.moved), 0))).scalar())


def test_a_rotation_killed_halfway_and_resumed_leaves_every_value_under_the_new_key(database_url, tmp_path):
    home = tmp_path / "home"
    both = _env(home, CAREPATH_SECRET_KEY=K1, CAREPATH_KEYS=json.dumps({"k2": K2}))
    store = open_store(_settings(home, both), database_url)
    now = datetime(2026, 5, 1, tzinfo=timezone.utc)
    records = [PatientIn(mrn=f"MRN{i:06d}", name=f"患者{i}", phone=f"139{i:08d}", openid=f"o{i:010d}")
               for i in range(PATIENTS)]
    with store.db.begin() as conn:
        for start in range(0, PATIENTS, 5000):
            upsert_patients_bulk(conn, store.cipher, records[start:start + 5000], now)
    assert key_status(store.db).per_key() == {"k1": 4 * PATIENTS}

    rotation = _carepath("keys", "rotate", "--to", "k2", "--db", database_url, "--batch", "500", "--pause", "0.05",
                         env=both)
    try:
        while _moved(store) < 4 * PATIENTS // 4:  # a quarter done: kill it in the middle of its work
            assert rotation.poll() is None, rotation.communicate()
            time.sleep(0.05)
        os.kill(rotation.pid, signal.SIGKILL)
    finally:
        rotation.wait(timeout=60)
    assert rotation.returncode == -signal.SIGKILL
    halfway = key_status(store.db)
    assert halfway.per_key()["k1"] > 0 and halfway.per_key()["k2"] > 0
    assert halfway.running is not None and halfway.running["target"] == "k2"

    # meanwhile: readers decrypt with either key; the old key cannot be retired; a process still writing
    # under k1 (it has not followed the store's active key yet) adds patients
    with store.db.connect() as conn:
        names = [store.cipher.decrypt(v) for v in conn.execute(select(Patient.name_enc)).scalars()]
    assert sorted(names) == sorted(r.name for r in records)
    retire = _carepath("keys", "retire", "k1", "--db", database_url, env=both)
    _, err = retire.communicate(timeout=120)
    assert retire.returncode == 1 and "still protects" in err
    late = Cipher({"k1": base64.b64decode(K1), "k2": base64.b64decode(K2)}, "k1")
    with store.db.begin() as conn:
        upsert_patients_bulk(conn, late, [PatientIn(mrn="LATE1", name="迟到", phone="13700000001")], now)

    resumed = _carepath("keys", "rotate", "--to", "k2", "--db", database_url, "--batch", "2000", env=both)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert "resumed and finished" in out
    store.db.dispose()

    # only the new key now: every value readable, none left under k1, look-ups by MRN and phone work
    only_new = _env(home, CAREPATH_KEYS=json.dumps({"k2": K2}), CAREPATH_KEY_ID="k2")
    store = open_store(_settings(home, only_new), database_url)
    try:
        assert store.cipher.key_ids == ["k2"]
        status = key_status(store.db)
        assert set(status.per_key()) == {"k2"} and status.per_key()["k2"] == 4 * PATIENTS + 3
        with store.db.connect() as conn:
            for entry in encrypted_columns("patients"):
                col = table_of("patients").c[entry.column]
                for token in conn.execute(select(col).where(col.is_not(None))).scalars():
                    assert store.cipher.decrypt(token)
            rows = conn.execute(select(Patient.mrn_enc, Patient.mrn_hash, Patient.phone_enc, Patient.phone_hash))
            for mrn_enc, mrn_hash, phone_enc, phone_hash in rows:
                assert mrn_hash == store.cipher.lookup_hash(store.cipher.decrypt(mrn_enc))
                assert phone_hash == store.cipher.lookup_hash(store.cipher.decrypt(phone_enc))
            assert find_patient_id(conn, store.cipher, records[PATIENTS // 2].mrn) is not None
            assert find_patient_id(conn, store.cipher, "LATE1") is not None
        assert [h.name for h in keyed_hashes("patients")] == ["patients.mrn_hash", "patients.phone_hash",
                                                              "patients.openid_hash"]
    finally:
        store.db.dispose()
    retired = _carepath("keys", "retire", "k1", "--db", database_url, env=both)
    out, err = retired.communicate(timeout=120)
    assert retired.returncode == 0, err
    verify = _carepath("audit", "verify", "--db", database_url, env=only_new)
    out, err = verify.communicate(timeout=120)
    assert verify.returncode == 0, err
    assert "audit chain intact" in out


def test_keys_new_status_and_rotate_on_the_command_line(workdir, cli, database_url):
    store = open_store(Settings(), database_url)  # a new store: its key file is written (k1)
    with store.db.begin() as conn:
        upsert_patients_bulk(conn, store.cipher, [PatientIn(mrn="M1", name="张三", phone="13812341234")],
                             datetime(2026, 5, 1, tzinfo=timezone.utc))
    store.db.dispose()
    unknown = cli("keys", "rotate", "--to", "k9", "--db", database_url)
    assert unknown.exit_code == 3 and "key 'k9' is not in the key ring (k1)" in unknown.stderr
    made = cli("keys", "new", "k2")
    assert made.exit_code == 0 and (workdir / ".carepath" / "keys" / "k2.key").stat().st_mode & 0o777 == 0o600
    assert cli("keys", "new", "k2").exit_code == 1  # never overwritten
    before = json.loads(cli("keys", "status", "--json", "--db", database_url).stdout)
    assert before["per_key"] == {"k1": 3} and before["active"] == "k1"
    assert sorted(k["key_id"] for k in before["ring"]) == ["k1", "k2"]
    rotated = cli("keys", "rotate", "--to", "k2", "--db", database_url)
    assert rotated.exit_code == 0, rotated.stderr
    assert "3 values re-encrypted" in rotated.stdout
    after = cli("keys", "status", "--db", database_url)
    assert after.exit_code == 0 and "patients.name_enc" in after.stdout
    assert json.loads(cli("keys", "status", "--json", "--db", database_url).stdout)["per_key"] == {"k2": 3}

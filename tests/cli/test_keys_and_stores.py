"""One rule for the key, whatever the database; a store knows its key; readers create nothing."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from sqlalchemy import delete

from carepath.definition.events import PatientIn
from carepath.engine import Engine
from carepath.settings import Settings
from carepath.store import KeyMismatch, KeyNotFound, open_database
from carepath.store.schema import StoreMeta

from tests.cli.conftest import Cli

KEY_A = base64.b64encode(os.urandom(32)).decode()
KEY_B = base64.b64encode(os.urandom(32)).decode()


def _store_with_a_patient(url: str, settings: Settings) -> None:
    engine = Engine(url, journeys=[], channels={}, settings=settings)
    try:
        engine.upsert_patient(PatientIn(mrn="M1", name="张三", phone="13912345678"))
    finally:
        engine.close()


def test_read_only_commands_in_an_empty_folder_create_nothing(workdir: Path, cli: Cli) -> None:
    for command in (["patients", "timeline", "1"], ["touchpoints", "list"], ["tasks", "list", "--json"],
                    ["patients", "timeline", "1", "--db", "elsewhere/carepath.db"], ["tasks", "show", "1", "--as", "li"],
                    ["report", "surveys", "--db", "typo.db"]):
        result = cli(*command)
        assert result.exit_code == 3, (command, result.output)
        assert "error: no database at" in result.stderr and result.stdout == ""
        assert "Traceback" not in result.output
    assert list(workdir.iterdir()) == []  # no database, no key, no folder


def test_a_wrong_key_is_refused_naming_where_the_key_was_looked_for(hospital: Path, cli: Cli, database_url: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _store_with_a_patient(database_url, Settings(secret_key=KEY_A))
    monkeypatch.setenv("CAREPATH_SECRET_KEY", KEY_B)
    wrong = cli("patients", "timeline", "1", "--db", database_url)
    assert wrong.exit_code == 1
    assert "wrong encryption key" in wrong.stderr and "CAREPATH_SECRET_KEY (set)" in wrong.stderr
    assert "InvalidTag" not in wrong.output and "Traceback" not in wrong.output
    with pytest.raises(KeyMismatch, match="fingerprint"):
        Engine(database_url, journeys=[], channels={}, settings=Settings(secret_key=KEY_B))

    monkeypatch.delenv("CAREPATH_SECRET_KEY")
    missing = cli("events", "ingest", "-", "--db", database_url, input="")
    assert missing.exit_code == 3
    key_file = hospital / ".carepath" / "secret.key"
    assert f"no encryption key: looked in CAREPATH_SECRET_KEY (not set), then the key file {key_file} " \
           "(does not exist); this database was written with the key whose fingerprint is" in missing.stderr
    assert not key_file.exists(), "never a silently generated key for a store that has one"

    monkeypatch.setenv("CAREPATH_SECRET_KEY", KEY_A)
    right = cli("patients", "timeline", "1", "--db", database_url)
    assert right.exit_code == 0, right.output
    assert "139****5678" in right.stdout


def test_a_store_from_before_fingerprints_is_checked_by_decrypting(database_url: str) -> None:
    _store_with_a_patient(database_url, Settings(secret_key=KEY_A))
    db = open_database(database_url)
    with db.begin() as conn:
        conn.execute(delete(StoreMeta))
    db.dispose()
    with pytest.raises(KeyMismatch, match="does not decrypt"):
        Engine(database_url, journeys=[], channels={}, settings=Settings(secret_key=KEY_B))
    Engine(database_url, journeys=[], channels={}, settings=Settings(secret_key=KEY_A)).close()  # records it


def test_the_key_rule_is_the_same_for_a_db_file_and_the_default(workdir: Path, cli: Cli) -> None:
    elsewhere = workdir / "exports" / "hospital.db"
    _store_with_a_patient(f"sqlite:///{elsewhere}", Settings())  # a new store: the key goes to $CAREPATH_HOME
    assert (workdir / ".carepath" / "secret.key").exists() and not (elsewhere.parent / "secret.key").exists()
    found = cli("patients", "timeline", "1", "--db", str(elsewhere))
    assert found.exit_code == 0, found.output

    (workdir / "other.key").write_text(KEY_B)
    os.environ["CAREPATH_KEY_FILE"] = str(workdir / "other.key")
    try:
        refused = cli("patients", "timeline", "1", "--db", str(elsewhere), "--json")
    finally:
        del os.environ["CAREPATH_KEY_FILE"]
    assert refused.exit_code == 1 and f"the key file {workdir / 'other.key'} (exists)" in refused.stderr
    with pytest.raises(KeyNotFound):
        Engine(f"sqlite:///{elsewhere}", journeys=[], channels={}, settings=Settings(home=workdir / "nowhere"))


def test_a_missing_patient_is_not_found(workdir: Path, cli: Cli, database_url: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREPATH_SECRET_KEY", KEY_A)
    _store_with_a_patient(database_url, Settings(secret_key=KEY_A))
    result = cli("patients", "timeline", "42", "--db", database_url)
    assert result.exit_code == 3 and "no patient with id 42" in result.stderr

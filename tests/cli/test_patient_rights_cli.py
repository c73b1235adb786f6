"""``carepath patients export|erase`` (issue 22, point 4) on a store filled through the command line."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from sqlalchemy import select

from carepath.settings import Settings
from carepath.store import open_store
from carepath.store.schema import Event

from tests.cli.conftest import Cli, event_line, noon_zone
from tests.privacy.test_patient_rights import personal_values_left

PATIENT = {"name": "王小明", "phone": "13800001111", "birth_date": "1946-03-02", "tz": noon_zone()}
OTHER = {"name": "李芳", "phone": "13900002222", "birth_date": "1990-07-15", "tz": noon_zone()}


def test_export_then_erase_from_the_command_line(hospital: Path, cli: Cli, database_url: str) -> None:
    lines = [event_line("A1-booked", "HZ0001", patient=PATIENT), event_line("A2-booked", "HZ0002", patient=OTHER)]
    assert cli("events", "ingest", "-", "--db", database_url, input="\n".join(lines)).exit_code == 0
    assert cli("dispatch", "--db", database_url).exit_code == 0

    out = hospital / "patient-1.json"
    exported = cli("patients", "export", "1", "--out", out, "--db", database_url)
    assert exported.exit_code == 0, exported.output
    assert "exported patient 1 to" in exported.stderr and "record 1" in exported.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600, "readable by its owner only"
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["manifest"]["format"] == "carepath-patient-export/1" and doc["manifest"]["patient_id"] == 1
    assert doc["data"]["record"][0]["name"] == "王小明" and doc["data"]["record"][0]["mrn"] == "HZ0001"
    assert doc["manifest"]["kinds"]["events"]["count"] == 1 and doc["manifest"]["kinds"]["messages"]["count"] >= 1

    refused = cli("patients", "erase", "1", "--db", database_url)
    assert refused.exit_code == 2 and "run again with --yes" in refused.stderr
    erased = cli("patients", "erase", "1", "--yes", "--db", database_url)
    assert erased.exit_code == 0, erased.output
    assert erased.stdout.startswith("patient 1 erased: ")
    assert "already erased" in cli("patients", "erase", "1", "--yes", "--db", database_url).stdout

    missing = cli("patients", "export", "99", "--db", database_url)
    assert missing.exit_code == 3 and "no patient with id 99" in missing.stderr and "Traceback" not in missing.output

    later = cli("events", "ingest", "-", "--db", database_url,
                input=event_line("A3-booked", "HZ0001", patient=PATIENT))
    assert later.exit_code == 1 and "stdin:1: refused: the patient's data was erased on" in later.stderr
    store = open_store(Settings(), database_url, read_only=True)
    try:
        with store.db.connect() as conn:
            status, outcome = conn.execute(select(Event.status, Event.outcome).order_by(Event.id.desc())).first()
        assert status == "refused" and "erased" in outcome
        assert personal_values_left(store, ("王小明", "13800001111", "HZ0001")) == []
        assert personal_values_left(store, ("李芳",)), "the other patient is untouched"
    finally:
        store.db.dispose()

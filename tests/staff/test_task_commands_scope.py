"""The task commands with ``--as``: a ward A nurse lists, opens, unmasks and works only ward A's tasks."""

from __future__ import annotations

import json
from sqlalchemy import select

from carepath.engine import Engine
from carepath.settings import Settings
from carepath.store.schema import AuditEntry
from tests.staff.conftest import PHONE_A, PHONE_B, SECRETS

def viewed(database_url: str) -> list[tuple[str, str]]:
    engine = Engine(database_url, journeys=[], channels={}, settings=Settings())
    try:
        with engine.db.connect() as conn:
            return [tuple(r) for r in conn.execute(select(AuditEntry.actor, AuditEntry.entity_id)
                                                   .where(AuditEntry.action == "patient.contact_viewed"))]
    finally:
        engine.close()


def test_a_ward_a_nurse_works_only_ward_a_from_the_command_line(wards, cli):
    db, patient_a, _, task_a, task_b = wards
    mine = json.loads(cli("tasks", "list", "--as", "nurse-a", "--json", "--db", db).stdout)["tasks"]
    assert [(t["id"], t["team"]) for t in mine] == [(task_a, "ward-a")]
    every = json.loads(cli("tasks", "list", "--as", "ops", "--json", "--db", db).stdout)["tasks"]
    assert sorted(t["id"] for t in every) == sorted([task_a, task_b])

    shown = cli("tasks", "show", task_a, "--as", "nurse-a", "--db", db)
    assert shown.exit_code == 0 and "138****1234" in shown.stdout and PHONE_A not in shown.stdout
    assert viewed(db) == []
    revealed = cli("tasks", "show", task_a, "--reveal", "--as", "nurse-a", "--json", "--db", db)
    assert json.loads(revealed.stdout)["phone"] == PHONE_A
    assert viewed(db) == [("staff:nurse-a", str(patient_a))]

    for args in (["show", task_b], ["show", task_b, "--reveal"], ["claim", task_b], ["note", task_b, "called"],
                 ["done", task_b]):
        refused = cli("tasks", *args, "--as", "nurse-a", "--db", db)
        assert refused.exit_code == 1, (args, refused.output)
        assert "nurse-a (nurse) may not" in refused.stderr and "belongs to team 'ward-b'" in refused.stderr
        assert PHONE_B not in refused.output and "139****2222" not in refused.output
    assert viewed(db) == [("staff:nurse-a", str(patient_a))]
    assert cli("tasks", "claim", task_a, "--as", "nurse-a", "--db", db).exit_code == 0


def test_oversight_roles_read_every_ward_but_never_unmask_or_act(wards, cli):
    db, _, _, task_a, task_b = wards
    masked = cli("tasks", "show", task_b, "--as", "admin", "--db", db)
    assert masked.exit_code == 0 and "139****2222" in masked.stdout
    for who in ("ops", "admin"):
        refused = cli("tasks", "show", task_a, "--reveal", "--as", who, "--db", db)
        assert refused.exit_code == 1 and "never sees a contact in clear" in refused.stderr
        assert PHONE_A not in refused.output
        assert cli("tasks", "claim", task_a, "--as", who, "--db", db).exit_code == 1
    assert viewed(db) == []
    assert cli("tasks", "show", 999, "--as", "ops", "--db", db).exit_code == 3


def test_staff_list_shows_roles_teams_and_origin_never_a_secret(wards, cli):
    listed = cli("staff", "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = {r["name"]: r for r in json.loads(listed.stdout)["staff"]}
    assert rows["nurse-a"] == {"name": "nurse-a", "role": "nurse", "teams": ["ward-a"], "from": "carepath.toml"}
    assert rows["ops"]["teams"] == [] and not any(secret in listed.stdout for secret in SECRETS.values())

"""Two wards, A and B, each with one patient and one open task, and staff of every kind of role."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from carepath.config import CarepathConfig, load_config
from carepath.definition.events import PatientIn
from carepath.engine import Engine
from carepath.runtime.work_queue import new_task
from carepath.settings import Settings
from carepath.staff_accounts import AccountSettings
from carepath.store.schema import StaffTask
from carepath.teams import StaffMember, TeamConfig
from tests.cli.conftest import cli, hospital, workdir  # noqa: F401  (the command-line fixtures)
from tests.engine import helpers as h
from tests.live_app import LiveApp, plugin_app

#: each member's login secret (in a real carepath.toml: {env = "..."})
SECRETS = {"nurse-a": "nurse-a-login-secret-01", "nurse-b": "nurse-b-login-secret-02",
           "ops": "operations-login-secret-03", "admin": "administrator-secret-04"}
ROLES = {"nurse-a": ("nurse", ["ward-a"]), "nurse-b": ("nurse", ["ward-b"]), "ops": ("operations", []),
         "admin": ("administrator", [])}
PHONE_A, PHONE_B = "13812341234", "13900002222"


def staff() -> dict[str, StaffMember]:
    return {name: StaffMember(teams=teams, role=role, token=SECRETS[name]) for name, (role, teams) in ROLES.items()}


def config(**accounts: Any) -> CarepathConfig:
    return CarepathConfig(teams={"ward-a": TeamConfig(), "ward-b": TeamConfig()}, staff=staff(),
                          accounts=AccountSettings(**accounts))


@dataclass
class Ward:
    engine: Any
    clock: Any
    patient_a: int
    patient_b: int
    task_a: int
    task_b: int


def seed(engine: Any) -> tuple[int, int, int, int]:
    """Patients 张三 (ward A) and 李四 (ward B), each with an open call task: ``(pa, pb, ta, tb)``."""
    pa = engine.upsert_patient(PatientIn(mrn="A1", name="张三", phone=PHONE_A))
    pb = engine.upsert_patient(PatientIn(mrn="B1", name="李四", phone=PHONE_B))
    tasks = []
    with engine.db.begin() as conn:
        for patient, team in ((pa, "ward-a"), (pb, "ward-b")):
            columns = new_task(TeamConfig(), now=engine.clock.now(), sla=timedelta(hours=4))
            tasks.append(conn.execute(insert(StaffTask).values(patient_id=patient, kind="call_patient", team=team,
                                                               **columns).returning(StaffTask.id)).scalar_one())
    return pa, pb, tasks[0], tasks[1]


@pytest.fixture
def ward(database_url, settings, clock) -> Ward:
    engine = h.make_engine(database_url, settings, clock, [], {}, config=config(), connectors={})
    try:
        yield Ward(engine, clock, *seed(engine))
    finally:
        engine.close()


@pytest.fixture
def live(ward):
    with LiveApp(plugin_app(ward.engine)) as running:
        yield running


def env_name(member: str) -> str:
    return "T_" + member.upper().replace("-", "_")


STAFF_TOML = "".join(f'\n[staff.{name}]\nrole = "{role}"\nteams = {json.dumps(teams)}\n'
                     f'token = {{env = "{env_name(name)}"}}\n' for name, (role, teams) in ROLES.items())


@pytest.fixture
def wards(hospital: Path, database_url: str, monkeypatch) -> tuple[str, int, int, int, int]:
    """carepath.toml with wards A and B and their staff; the database with a task on each ward."""
    for name, secret in SECRETS.items():
        monkeypatch.setenv(env_name(name), secret)
    config = hospital / "carepath.toml"
    config.write_text(config.read_text() + '\n[teams.ward-a]\n[teams.ward-b]\n' + STAFF_TOML, encoding="utf-8")
    engine = Engine(database_url, journeys=[], channels={}, settings=Settings(), config=load_config(config))
    try:
        return (database_url, *seed(engine))
    finally:
        engine.close()

"""Fixtures for the command line: an isolated folder, key home and carepath.toml per test."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import pytest
from click.testing import Result
from typer.testing import CliRunner

JOURNEY = """\
name: checkup
enroll: {events: [appointment.booked]}
exit: {events: [appointment.cancelled]}
reentry: per_key
key: appointment_id
anchors:
  appointment: {set_by: [appointment.booked], field: start, cancelled_by: [appointment.cancelled]}
templates:
  confirmation: {title: Booked, body: "Your check-up is booked for {{ anchors.appointment | datetime }}."}
  reminder: {title: Tomorrow, body: "Your check-up is tomorrow at {{ anchors.appointment | time }}."}
steps:
  - id: confirmation
    stage: pre_visit
    on: appointment.booked
    send: {template: confirmation, via: [sms]}
    category: urgent
  - id: reminder
    stage: pre_visit
    before: {anchor: appointment, offset: 1d, at: "18:00"}
    send: {template: reminder, via: [sms]}
  - id: call
    stage: pre_visit
    on: appointment.booked
    when: "patient.age >= 75"
    task: {task: call_patient, team: nursing, sla: 4h}
"""

CONFIG = """\
[connectors.sms]
type = "outbox"
address = "phone"

[journeys]
paths = ["journeys"]
"""

Cli = Callable[..., Result]


def wechat_toml(secret_env: str, token_env: str) -> str:
    """A ``[connectors.wechat]`` table whose secrets come from these environment variables."""
    return (f'[connectors.wechat]\ntype = "wechat"\nappid = "wx1234567890abcd"\n'
            f'secret = {{env = "{secret_env}"}}\ntoken = {{env = "{token_env}"}}\n')


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder as the current directory, with its own key home and no carepath.toml yet."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("CAREPATH_HOME", str(folder / ".carepath"))
    monkeypatch.setenv("CAREPATH_CONFIG", str(folder / "carepath.toml"))
    for name in ("CAREPATH_SECRET_KEY", "CAREPATH_KEY_FILE", "CAREPATH_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "100")
    return folder


@pytest.fixture
def hospital(workdir: Path) -> Path:
    """``workdir`` with a journey folder and a carepath.toml enabling it on an outbox channel named sms."""
    (workdir / "journeys").mkdir()
    (workdir / "journeys" / "checkup.yaml").write_text(JOURNEY, encoding="utf-8")
    (workdir / "carepath.toml").write_text(CONFIG, encoding="utf-8")
    return workdir


@pytest.fixture
def cli() -> Cli:
    """Run ``carepath ARGS...`` in-process; stdout and stderr are kept apart."""
    from carepath.cli import _mount_optional, app

    _mount_optional()

    def run(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(app, [str(a) for a in args], input=input)

    return run


def noon_zone() -> str:
    """A time zone where it is about noon now, so no quiet hours get in a test's way."""
    offset = 12 - datetime.now(timezone.utc).hour
    return "Etc/GMT" + (f"+{-offset}" if offset < 0 else f"-{offset}")


def event_line(source_id: str, mrn: str, *, kind: str = "appointment.booked", start_in: timedelta = timedelta(days=2),
               patient: dict | None = None, **payload: object) -> str:
    """One JSON line: an event that happened a minute ago, for a visit ``start_in`` from now."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    body: dict = {"appointment_id": source_id.split("-")[0], **payload}
    if kind == "appointment.booked":
        body["start"] = (now + start_in).isoformat()
    if patient is not None:
        body["patient"] = patient
    return json.dumps({"type": kind, "source": "his", "source_id": source_id, "patient_mrn": mrn,
                       "occurred_at": (now - timedelta(minutes=1)).isoformat(), "payload": body},
                      ensure_ascii=False)

"""Shared by the portrait tests: an engine with a carepath.toml of its own, and the CLI against its store."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from typer.testing import CliRunner

from carepath.config import load_config
from carepath.runtime.patients import load_patients
from carepath.runtime.portrait import with_portraits


@contextmanager
def sms_engine(database_url: str, settings: Any, clock: Any, journeys: list[Any], **kw: Any) -> Iterator[Any]:
    """An engine running ``journeys`` with a recording ``sms`` channel (``engine.sms``) and patient M1."""
    from tests.engine import helpers as h

    sms = h.RecordingChannel("sms")
    with h.running_engine(database_url, settings, clock, journeys, {"sms": sms}, **kw) as engine:
        engine.sms = sms
        yield engine


def config_file(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "carepath.toml"
    path.write_text(text, encoding="utf-8")
    return path


def loaded_config(tmp_path: Path, text: str = "") -> Any:
    return load_config(config_file(tmp_path, text))


def view(engine: Any, patient_id: int = 1) -> Any:
    """The patient as expressions see them now, portrait attached."""
    now = engine.clock.now()
    with engine.db.connect() as conn:
        records = load_patients(conn, engine.cipher, [patient_id], now, with_addresses=False)
        return with_portraits(conn, engine.cipher, records, now, engine.config.segments.sensitive_code)[
            patient_id].view


def cli(monkeypatch: Any, settings: Any, database_url: str, *args: str, config: Path | None = None) -> Any:
    """Run ``carepath ARGS`` against the test's store (its key home), returning the click result."""
    from carepath.cli import _mount_optional, app

    _mount_optional()
    monkeypatch.setenv("CAREPATH_HOME", str(settings.home))
    if config is None:
        config = config_file(settings.home.parent)
    extra = ["--db", database_url, "--config", str(config)]
    return CliRunner().invoke(app, [*args, *extra], catch_exceptions=False)

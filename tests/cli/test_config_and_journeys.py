"""``[journeys]`` in carepath.toml, ``config check`` and the command line's conventions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carepath.config import ConfigError, load_config
from carepath.definition.events import EventIn
from carepath.definition.registry import enabled_journeys
from carepath.engine import Engine
from carepath.settings import Settings

from tests.cli.conftest import JOURNEY, Cli

CHANNELS_ONLY = '[connectors.sms]\ntype = "outbox"\naddress = "phone"\n'


def _problems(config: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        enabled_journeys(load_config(config))
    return [str(p) for p in caught.value.problems]


def test_the_stock_journey_runs_only_where_it_is_enabled(workdir: Path, database_url: str, clock) -> None:
    (workdir / "carepath.toml").write_text(CHANNELS_ONLY, encoding="utf-8")
    engine = Engine(database_url, settings=Settings(), clock=clock)
    try:
        assert engine.journeys == {}
        result = engine.ingest(EventIn(type="appointment.booked", source="his", source_id="b1", patient_mrn="M1",
                                       occurred_at=clock.now(), payload={"appointment_id": "A1",
                                                                         "start": "2026-05-03T10:00:00+08:00",
                                                                         "patient": {"name": "张三"}}))
        assert result.enrolled == [] and result.planned == 0
    finally:
        engine.close()
    (workdir / "carepath.toml").write_text(CHANNELS_ONLY + '[journeys]\nenabled = ["outpatient-visit"]\n')
    assert list(enabled_journeys(load_config())) == ["outpatient-visit"]


def test_journeys_from_paths_and_every_problem_with_its_place(hospital: Path) -> None:
    config = hospital / "carepath.toml"
    assert list(enabled_journeys(load_config(config))) == ["checkup"]
    (hospital / "journeys" / "other.yml").write_text(JOURNEY.replace("name: checkup", "name: other"))
    assert sorted(enabled_journeys(load_config(config))) == ["checkup", "other"]
    config.write_text(config.read_text() + 'enabled = ["other", "outpatient-visit"]\n')
    assert sorted(enabled_journeys(load_config(config))) == ["other", "outpatient-visit"]

    (hospital / "journeys" / "other.yml").write_text(JOURNEY.replace("via: [sms]", "via: [wechat]", 1))
    config.write_text(CHANNELS_ONLY + '[journeys]\npaths = ["journeys", "missing.yaml"]\nenabled = ["nope"]\n'
                      'colour = "blue"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert [str(p) for p in caught.value.problems] == [
        f"journeys.colour: unknown key (known: paths, enabled)",
        f"journeys.paths[1]: no such file or folder: {hospital / 'missing.yaml'}"]
    config.write_text(CHANNELS_ONLY + '[journeys]\npaths = ["journeys"]\nenabled = ["nope"]\n')
    found = _problems(config)
    assert any("other.yml:" in p and "unknown channel 'wechat'" in p for p in found), found
    assert any(p.startswith("journeys.enabled: unknown journey 'nope' (available: ") for p in found), found


def test_config_check_fails_for_a_file_that_is_not_there(workdir: Path, cli: Cli,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    named = cli("config", "check", "--config", "typo.toml")
    assert named.exit_code == 3 and "typo.toml" in named.stderr and "does not exist" in named.stderr
    by_env = cli("config", "check")  # $CAREPATH_CONFIG names workdir/carepath.toml, which does not exist
    assert by_env.exit_code == 3 and "carepath.toml" in by_env.stderr
    monkeypatch.delenv("CAREPATH_CONFIG")
    assert cli("config", "check").exit_code == 0  # nothing named: the defaults


def test_config_check_reports_in_plain_words_and_as_json(hospital: Path, cli: Cli,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ok = cli("config", "check", "--json")
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.stdout)
    assert data["ok"] and [j["name"] for j in data["journeys"]] == ["checkup"]
    assert data["connectors"] == [{"name": "sms", "type": "outbox", "kind": "channel"}]
    assert "journeys enabled: checkup" in cli("config", "check").stdout

    (hospital / "carepath.toml").write_text('[connectors.sms]\ntype = "outbox"\nsimulate_permanent_rate = 2\n')
    bad = cli("config", "check", "--json")
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)["problems"] == [{"path": "connectors.sms.simulate_permanent_rate",
                                                   "message": "must be at most 1"}]
    pytest.importorskip("carepath_plugin_example")
    monkeypatch.setenv("HOOK_SECRET", "short")
    (hospital / "carepath.toml").write_text('[connectors.hook]\ntype = "webhook"\nurl = "http://127.0.0.1:9/"\n'
                                            'secret = {env = "HOOK_SECRET"}\n')
    text = cli("config", "check")
    assert text.exit_code == 1
    assert "connectors.hook.secret: must be at least 16 characters long" in text.stderr
    assert "short" not in text.output.replace("HOOK_SECRET", "")


def test_journeys_validate_json(hospital: Path, cli: Cli) -> None:
    good = cli("journeys", "validate", "journeys", "--json")
    assert good.exit_code == 0, good.output
    assert json.loads(good.stdout)["valid"][0]["journey"] == "checkup"
    (hospital / "journeys" / "bad.yaml").write_text(JOURNEY.replace("template: reminder", "template: remindr"))
    bad = cli("journeys", "validate", "journeys", "--json")
    assert bad.exit_code == 1
    [problem] = json.loads(bad.stdout)["problems"]
    assert problem["file"].endswith("bad.yaml") and problem["step"] == "reminder" and problem["line"]


def test_version_usage_errors_and_widths(hospital: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import version

    assert cli("--version").stdout.strip() == f"carepath {version('carepath')}"
    usage = cli("touchpoints", "list", "--limit", "zero")
    assert usage.exit_code == 2 and usage.stdout == ""
    assert cli("no-such-command").exit_code == 2
    monkeypatch.setenv("COLUMNS", "72")
    narrow = cli("config", "check")
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 72


def _alias_bomb(levels: int = 9) -> str:
    """Each level lists the one before ten times: 10**levels values once every alias is followed."""
    lines = ["lol0: &lol0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n" + JOURNEY


def test_journeys_validate_refuses_an_alias_bomb_at_once(hospital: Path, cli: Cli) -> None:
    import time

    (hospital / "journeys" / "bomb.yaml").write_text(_alias_bomb(), encoding="utf-8")
    started = time.monotonic()
    answer = cli("journeys", "validate", "journeys/bomb.yaml", "--json")
    elapsed = time.monotonic() - started
    assert answer.exit_code == 1, answer.output
    [problem] = json.loads(answer.stdout)["problems"]
    assert problem["message"].startswith("aliases expand to 12,345,678,990 more values, over the limit")
    assert problem["line"] == 1
    # following every alias took minutes before; a measured file is refused in milliseconds (bound kept loose)
    assert elapsed < 5, elapsed
    # a journey that shares a value through an alias is still fine
    shared = JOURNEY.replace("send: {template: confirmation, via: [sms]}", "send: {template: confirmation, via: &sms [sms]}")
    (hospital / "journeys" / "bomb.yaml").write_text(shared.replace("template: reminder, via: [sms]",
                                                                    "template: reminder, via: *sms"))
    assert cli("journeys", "validate", "journeys/bomb.yaml").exit_code == 0

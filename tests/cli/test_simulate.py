"""``carepath simulate``: deterministic figures, staff peaks, SMS cost by hand, every stock journey, chart, errors."""

from __future__ import annotations

import json
import math
import sqlite3
import struct
from pathlib import Path

import pytest

from carepath.simulation.costs import sms_parts

#: old patients who never reply: the outpatient journey's nurse call (65 and over, no reply in 48 h) fires
OLD_SILENT = "ages: {'65-79': 1}\nbehaviour: {reply: 0, click: 0}\n"


def _figures(cli, *args: str) -> dict:
    result = cli("simulate", *args, "--json")
    assert result.exit_code == 0, result.stderr or result.stdout
    return json.loads(result.stdout)


def test_a_seed_gives_the_same_figures_and_the_nurses_peak_day(cli, workdir: Path) -> None:
    chart = workdir / "load.png"
    patients = 60  # small: a suite test (four nurse calls, two of them on the peak day, with this seed)
    args = ("outpatient-visit", "--patients", str(patients), "--days", "14", "--seed", "1")
    first = _figures(cli, *args)
    second = _figures(cli, *args, "--chart", chart)
    assert first == second
    assert first["totals"]["messages"] > patients  # every booking is confirmed at least
    nursing = first["staff_tasks"]["teams"]["nursing"]
    per_day = {day: teams.get("nursing", 0) for day, teams in first["staff_tasks"]["per_day"].items()}
    assert nursing["peak"] == max(per_day.values()) > 0
    assert nursing["peak_day"] == min(day for day, n in per_day.items() if n == nursing["peak"])
    assert nursing["total"] == sum(per_day.values())
    data = chart.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 300 and height > 300


def test_a_log_sees_the_days_go_by(cli) -> None:
    # no terminal (a cron job, CI, a redirected log): a line every tenth of the run, not a silent hour
    result = cli("simulate", "outpatient-visit", "--patients", "20", "--days", "10", "--json")
    assert result.exit_code == 0, result.stderr
    days = [line for line in result.stderr.splitlines() if line.startswith("simulating: day ")]
    assert [line.split()[2] for line in days] == [f"{d}/10" for d in range(1, 11)]
    json.loads(result.stdout)  # the JSON on stdout is untouched by the progress lines


def test_the_table_shows_each_teams_peak_day(cli, workdir: Path) -> None:
    population = workdir / "old.yaml"
    population.write_text(OLD_SILENT, encoding="utf-8")
    args = ("outpatient-visit", "--patients", "20", "--days", "14", "--seed", "3", "--population", population)
    figures = _figures(cli, *args)
    nursing = figures["staff_tasks"]["teams"]["nursing"]
    assert nursing["kinds"].get("call_patient", 0) > 0
    table = cli("simulate", *args)
    assert table.exit_code == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.strip().startswith("nursing"))
    assert nursing["peak_day"] in row and f" {nursing['peak']} " in f" {row} "
    assert "cost estimate (CNY)" in table.stdout and "not sent, and why" in table.stdout
    other = _figures(cli, *args[:-3], "4", *args[-2:])
    assert other["staff_tasks"] != figures["staff_tasks"]  # the seed is what decides


def test_cost_matches_a_hand_count_of_what_the_sandbox_recorded(cli, workdir: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    production = workdir / "production.db"
    monkeypatch.setenv("CAREPATH_DATABASE_URL", f"sqlite:///{production}")
    prices = workdir / "prices.yaml"
    prices.write_text("channels:\n  sms: 0.05\n  wechat: {price: 0.01, per: message}\n", encoding="utf-8")
    kept = workdir / "scratch.db"
    figures = _figures(cli, "outpatient-visit", "--patients", "10", "--days", "20", "--seed", "5",
                       "--prices", prices, "--keep", kept)
    assert not production.exists()  # the configured database is never opened
    with sqlite3.connect(kept) as conn:
        recorded = conn.execute("SELECT channel, body FROM outbox_messages").fetchall()
    sms = [body for channel, body in recorded if channel == "sms"]
    wechat = [body for channel, body in recorded if channel == "wechat"]
    assert sms and wechat
    parts = sum(1 if len(body) <= 70 else math.ceil(len(body) / 67) for body in sms)
    lines = {line["channel"]: line for line in figures["cost"]["channels"]}
    assert (lines["sms"]["messages"], lines["sms"]["units"]) == (len(sms), parts)
    assert lines["sms"]["cost"] == pytest.approx(parts * 0.05)
    assert lines["wechat"]["cost"] == pytest.approx(len(wechat) * 0.01)
    assert figures["cost"]["total"] == pytest.approx(parts * 0.05 + len(wechat) * 0.01)
    assert figures["totals"]["messages"] == len(recorded)


def test_sms_parts_follow_the_70_then_67_rule() -> None:
    assert [sms_parts("字" * n) for n in (1, 70, 71, 134, 135, 201, 202)] == [1, 1, 2, 2, 3, 3, 4]
    assert sms_parts("字" * 66, signature_chars=6) == 2  # the provider's signature counts too


def test_all_runs_every_stock_journey(cli) -> None:
    from carepath.journeys import HERE

    figures = _figures(cli, "all", "--patients", "10", "--days", "3", "--seed", "1")
    assert figures["run"]["journeys"] == [p.stem for p in sorted(HERE.glob("*.yaml"))]


@pytest.mark.parametrize(("text", "named"), [
    ("behaviour: {reply: 1.5}\n", "behaviour.reply"),
    ("agez: {'0-17': 1}\n", "agez: unknown key"),
    ("ages: {'old': 1}\n", "ages"),
    ("visits: {per_patient: {1: 0}}\n", "visits.per_patient"),
    ("ages: [1, 2\n", "not valid YAML"),
])
def test_a_bad_population_file_is_named_without_a_traceback(cli, workdir: Path, text: str, named: str) -> None:
    population = workdir / "population.yaml"
    population.write_text(text, encoding="utf-8")
    result = cli("simulate", "outpatient-visit", "--patients", "5", "--days", "2", "--population", population)
    assert result.exit_code == 1
    assert f"{population}: " in result.stderr and named in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def test_missing_files_and_unknown_journeys_are_named(cli, workdir: Path) -> None:
    missing = cli("simulate", "outpatient-visit", "--population", workdir / "nope.yaml")
    assert missing.exit_code == 3 and "nope.yaml" in missing.stderr
    unknown = cli("simulate", "outpatient-vist", "--patients", "5", "--days", "2")
    assert unknown.exit_code == 3 and "no journey 'outpatient-vist'" in unknown.stderr


def test_two_worker_processes_give_the_figures_of_one() -> None:
    """A large population is shared among processes (one scratch database each): the JSON must not change."""
    from carepath.journeys import HERE, journey_files
    from carepath.definition.journey_files import load_journey_file
    from carepath.simulation.simulate import run_simulation

    journeys = [load_journey_file(p) for p in journey_files()]
    assert journeys and all(p.parent == HERE for p in journey_files())
    one = run_simulation(journeys, patients=40, days=6, seed=2, workers=1)
    two = run_simulation(journeys, patients=40, days=6, seed=2, workers=2)
    assert json.dumps(two, sort_keys=True) == json.dumps(one, sort_keys=True)
    assert one["totals"]["messages"] > 0 and one["run"]["patient_events"] > 0

"""A journey page's simulated figures: per 1,000 patients a month, messages per channel and staff tasks per team.

``carepath journeys doc NAME --simulate`` runs the journey through
:func:`carepath.simulation.simulate.run_simulation` (the same run as ``carepath simulate NAME --patients 1000
--days 30 --seed 1``), keeps what the page shows as a small JSON record next to the journey file
(``simulated/NAME.json``: the command, seed, date and journey version that produced it) and the page shows the
record. Pages stay a function of files in the repository: regenerating a page without ``--simulate`` shows
the recorded figures, and a test fails when they were produced for another version of the journey.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

from carepath.definition.model import Journey

__all__ = ["PER_PATIENTS", "PER_DAYS", "figures_path", "figures_record", "read_figures", "figures_section"]

#: the page's unit: per 1,000 patients a month
PER_PATIENTS, PER_DAYS = 1000, 30
FOLDER = "simulated"


def figures_path(journey_file: Path, name: str) -> Path:
    """Where the figures of journey ``name`` (read from ``journey_file``) are kept."""
    return journey_file.parent / FOLDER / f"{name}.json"


def population_path(journey_file: Path, name: str) -> Path:
    """The synthetic population a journey's page is simulated with, when the default outpatients do not fit it
    (``simulated/NAME.population.yaml``: children for paediatrics, pregnant women for maternity...)."""
    return journey_file.parent / FOLDER / f"{name}.population.yaml"


def simulate_command(name: str, patients: int, days: int, seed: int, population: str | None = None) -> str:
    extra = f" --population {population}" if population else ""
    return f"carepath simulate {name} --patients {patients} --days {days} --seed {seed}{extra}"


def figures_record(journey: Journey, figures: dict[str, Any], *, patients: int, days: int, seed: int,
                   run_on: date, population: str | None = None) -> dict[str, Any]:
    """What the page shows of a simulation's ``figures`` (the dict ``run_simulation`` returns), with how it was
    produced; counts are as simulated (the page scales them to 1,000 patients and 30 days)."""
    channels: Counter[str] = Counter()
    for counts in figures["messages_per_day"].values():
        channels.update(counts)
    teams = {team: {"total": info["total"], "peak_day": info["peak_day"], "peak": info["peak"],
                    "kinds": info["kinds"]} for team, info in figures["staff_tasks"]["teams"].items()}
    return {"journey": journey.name, "version": journey.version,
            "command": simulate_command(journey.name, patients, days, seed, population), "patients": patients,
            "days": days, "population": population,
            "seed": seed, "run_on": run_on.isoformat(), "start": figures.get("run", {}).get("start"),
            "enrollments": figures["totals"]["enrollments"], "messages": dict(sorted(channels.items())),
            "tasks": teams}


def read_figures(journey_file: Path | None, name: str) -> dict[str, Any] | None:
    """The recorded figures of journey ``name``, or ``None`` when it was never simulated for its page."""
    if journey_file is None:
        return None
    path = figures_path(journey_file, name)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def write_figures(journey_file: Path, record: dict[str, Any]) -> Path:
    """Keep ``record`` next to the journey file; its path."""
    path = figures_path(journey_file, record["journey"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def _scaled(n: int, factor: float) -> str:
    return f"{round(n * factor):,}"


def figures_section(journey: Journey, record: dict[str, Any] | None) -> list[str]:
    """The page's "Simulated load" section (Markdown lines)."""
    out = ["## Simulated load", ""]
    regenerate = f"carepath journeys doc {journey.name} --simulate --out docs/journeys"
    if record is None:
        return out + [f"Not simulated yet: run `{regenerate}`.", ""]
    factor = (PER_PATIENTS / record["patients"]) * (PER_DAYS / record["days"])
    out += [f"Per {PER_PATIENTS:,} patients a month ({PER_DAYS} days), from `{record['command']}` run on "
            f"{record['run_on']} for version `{record['version']}` (a synthetic population: visits, consent and "
            f"answers drawn at random, see [simulation.md](../simulation.md); the first virtual day "
            f"{record['start']}). Enrollments: {_scaled(record['enrollments'], factor)} (a patient enrolls once per "
            "episode where the journey has a key, such as each booked appointment).", ""]
    if record.get("population"):
        out += [f"The synthetic patients are the journey's own kind (`{record['population']}` overrides the "
                "default outpatients' ages and conditions).", ""]
    if not record["enrollments"]:
        out += ["None of the synthetic patients enrolled: the synthetic HIS sends outpatient bookings, check-ins, "
                "reports and discharges only, not the events or departments this journey enrolls on. Simulate "
                "it with the hospital's own events (`carepath simulate` on a copy, or the HIS emulator).", ""]
    if factor != 1:
        out += [f"Simulated with {record['patients']:,} patients over {record['days']} days and scaled to "
                f"{PER_PATIENTS:,} patients and {PER_DAYS} days.", ""]
    if record["version"] != journey.version:
        out += [f"> These figures are from version `{record['version']}`; the journey is now version "
                f"`{journey.version}`: run `{regenerate}`.", ""]
    out += ["| channel | messages |", "| --- | ---: |"]
    out += [f"| {channel} | {_scaled(n, factor)} |" for channel, n in record["messages"].items()]
    out += [f"| **all** | {_scaled(sum(record['messages'].values()), factor)} |", ""]
    if record["tasks"]:
        out += ["| team | staff tasks | kinds | peak day | tasks on the peak day |", "| --- | ---: | --- | --- | ---: |"]
        for team, info in record["tasks"].items():
            kinds = ", ".join(f"{kind} {_scaled(n, factor)}" for kind, n in info["kinds"].items())
            out.append(f"| {team} | {_scaled(info['total'], factor)} | {kinds} | {info['peak_day']} | "
                       f"{_scaled(info['peak'], factor)} |")
        out.append("")
    else:
        out += ["No staff tasks in the simulated month.", ""]
    return out

"""``carepath simulate JOURNEY…|all``: what journeys would send, ask of staff and cost, before they run."""

from __future__ import annotations

import time
from datetime import date, datetime
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.table import Table

from carepath.cli.common import ExitCode, err_console, fail, out_console, print_json


def _journeys(names: list[str]) -> list:
    """Stock journeys by name (``all``: every file in journeys/), or journey files by path."""
    from carepath.definition.journey_files import JourneyFileError, load_journey_file
    from carepath.journeys import HERE, journey_files

    if names == ["all"]:
        paths = journey_files()
    else:
        paths = []
        for name in names:
            path = Path(name) if name.endswith((".yaml", ".yml")) else HERE / f"{name}.yaml"
            if not path.is_file():
                known = ", ".join(p.stem for p in journey_files())
                fail(f"no journey '{name}' (stock journeys: {known}; or give a journey file's path, or all)",
                     ExitCode.NOT_FOUND)
            paths.append(path)
    journeys = []
    for path in paths:
        try:
            journeys.append(load_journey_file(path))
        except JourneyFileError as exc:
            fail(str(exc))
    return journeys


def simulate(journeys: list[str] = typer.Argument(..., help="stock journey names or journey files, or all",
                                                  show_default=False),
             patients: int = typer.Option(1000, min=1, max=200_000, help="synthetic patients"),
             days: int = typer.Option(30, min=1, max=365, help="virtual days"),
             seed: int = typer.Option(1, help="random seed: the same seed gives the same figures"),
             start: Optional[str] = typer.Option(None, help="first virtual day, YYYY-MM-DD (default 2026-03-02)"),
             population: Optional[Path] = typer.Option(None, help="YAML/JSON overriding the population's "
                                                                   "distributions (docs/simulation.md)"),
             prices: Optional[Path] = typer.Option(None, help="YAML/JSON of prices per channel (docs/simulation.md)"),
             chart: Optional[Path] = typer.Option(None, help="also draw messages and staff tasks per day to this PNG"),
             keep: Optional[Path] = typer.Option(None, help="keep the scratch database as this new SQLite file"),
             json_out: bool = typer.Option(False, "--json", help="print the figures as JSON")) -> None:
    """Run journeys on a synthetic population over virtual days in a scratch database: messages, deferrals,
    skips, staff load and cost. Nothing is sent and the configured database is not touched."""
    from carepath.simulation.costs import PricesError, load_prices
    from carepath.simulation.population import PopulationError, load_population
    from carepath.simulation.simulate import DEFAULT_START, SimulationError, run_simulation

    try:
        first = date.fromisoformat(start) if start else DEFAULT_START
    except ValueError:
        fail(f"--start: '{start}' is not a date (YYYY-MM-DD)", ExitCode.USAGE)
    for option, path in (("--population", population), ("--prices", prices)):
        if path is not None and not path.is_file():
            fail(f"{option}: no file at {path}", ExitCode.NOT_FOUND)
    try:
        pop = load_population(population)
        price_list = load_prices(prices)
    except (PopulationError, PricesError) as exc:
        fail(str(exc))
    chosen = _journeys(journeys)
    if chart is not None and not chart.parent.exists():
        fail(f"--chart: folder {chart.parent} does not exist", ExitCode.NOT_FOUND)
    began = time.monotonic()
    console = err_console()
    with console.status("simulating") as status:
        told = set()

        def progress(day: int, total: int) -> None:
            status.update(f"simulating: day {day}/{total}")
            # a log (no terminal) gets a line every tenth of the run instead of the live status
            tenth = day * 10 // max(total, 1)
            if not console.is_terminal and tenth not in told:
                told.add(tenth)
                console.print(f"simulating: day {day}/{total} ({time.monotonic() - began:.0f} s)", highlight=False)

        try:
            figures = run_simulation(chosen, patients=patients, days=days, seed=seed, population=pop,
                                     prices=price_list, start=first, keep=keep, progress=progress)
        except SimulationError as exc:
            fail(str(exc))
    if chart is not None:
        from carepath.content_chart import ChartError
        from carepath.simulation.chart import draw_simulation_chart

        try:
            draw_simulation_chart(figures, chart)
        except ChartError as exc:
            fail(str(exc))
    if json_out:
        print_json(figures)
    else:
        print_tables(figures)
        out_console().print(f"{time.monotonic() - began:.1f} s" + (f"; chart: {chart}" if chart else "")
                            + (f"; database kept: {keep}" if keep else ""), style="dim")


def print_tables(figures: dict) -> None:
    """The figures as rich tables: per step, per day and channel, skips, staff load and cost."""
    from carepath.reporting import StepRow, step_table

    out = out_console()
    run = figures["run"]
    several = len(run["journeys"]) > 1
    rows = []
    for line in figures["steps"]:
        row = StepRow(line["stage"], f"{line['journey']}/{line['step']}" if several else line["step"], line["channel"])
        row.counts.update({k: v for k, v in line.items() if isinstance(v, int)})
        rows.append(row)
    out.print(step_table(rows, f"{', '.join(run['journeys'])}: {run['patients']} patients, {run['days']} days "
                               f"from {run['start']}, seed {run['seed']}"))
    out.print(_per_day(figures))
    out.print(_reasons(figures))
    out.print(_staff(figures))
    out.print(_cost(figures))


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    return table


def _per_day(figures: dict) -> Table:
    per_day = figures["messages_per_day"]
    tasks = figures["staff_tasks"]["per_day"]
    channels = sorted({c for per in per_day.values() for c in per})
    teams = list(figures["staff_tasks"]["teams"])
    table = _table("messages sent and staff tasks opened per day", "day", *channels, *[f"tasks {t}" for t in teams])
    for day, counts in per_day.items():
        weekday = datetime.fromisoformat(day).strftime("%a")
        table.add_row(f"{day} {weekday}", *[str(counts.get(c, 0)) for c in channels],
                      *[str(tasks.get(day, {}).get(t, 0)) for t in teams])
    return table


def _reasons(figures: dict) -> Table:
    table = _table("not sent, and why", "status / reason", "touchpoints")
    for status, reasons in figures["why"].items():
        for reason, n in reasons.items():
            table.add_row(f"{status}: {reason}", str(n))
    totals = figures["totals"]
    table.add_section()
    table.add_row("deferred by quiet hours (then sent or not)", str(totals["quiet"]))
    table.add_row("deferred by the daily cap (then sent or not)", str(totals["cap"]))
    return table


def _staff(figures: dict) -> Table:
    table = _table("staff tasks per team", "team", "total", "per day", "peak day", "on the peak day", "kinds")
    for team, info in figures["staff_tasks"]["teams"].items():
        kinds = ", ".join(f"{k} {n}" for k, n in info["kinds"].items())
        table.add_row(team, str(info["total"]), f"{info['mean_per_day']:g}", info["peak_day"], str(info["peak"]), kinds)
    return table


def _cost(figures: dict) -> Table:
    cost = figures["cost"]
    table = _table(f"cost estimate ({cost['currency']})", "channel", "messages", "billed per", "units", "price",
                   "cost")
    for line in cost["channels"]:
        table.add_row(line["channel"], str(line["messages"]), line["billed_per"], str(line["units"]),
                      f"{line['price']:g}", f"{line['cost']:.2f}")
    table.add_section()
    table.add_row("total", "", "", "", "", f"{cost['total']:.2f}")
    table.caption = cost["rule"]
    return table

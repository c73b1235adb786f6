"""``carepath journeys``: check journey YAML files before they reach a hospital."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Iterable, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from carepath.cli.common import (CONFIG_OPTION, DB_HELP, ExitCode, cli_config, cli_journeys, err_console,
                                 out_console, print_json)
from carepath.config import build_channels, configured_channel_names, installed_channel_names
from carepath.definition.journey_files import read_journey_file
from carepath.definition.model import Journey, Send, Stage
from carepath.definition.registry import known_template_names, plugin_templates
from carepath.definition.validation import Problem
from carepath.runtime.migrate import OUTCOMES

app = typer.Typer(name="journeys", help="Check journey definitions; list and migrate their stored versions.",
                  no_args_is_help=True)

JOURNEY_SUFFIXES = (".yaml", ".yml")


@app.callback()
def _journeys() -> None:
    """Check journey definitions; list and migrate their stored versions."""


def journey_paths(paths: Iterable[Path]) -> tuple[list[Path], list[Problem]]:
    """The journey files named by ``paths``: files as given, folders by their *.yaml/*.yml files."""
    files: list[Path] = []
    problems: list[Problem] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in JOURNEY_SUFFIXES and p.is_file())
            if not found:
                problems.append(Problem("no *.yaml or *.yml journey files in this folder", file=str(path)))
            files += found
        elif path.exists():
            files.append(path)
        else:
            problems.append(Problem("no such file or folder", file=str(path)))
    return files, problems


def journey_summary(journey: Journey) -> str:
    """One line: name, version, steps per stage, anchors and channels used."""
    per_stage = Counter(step.stage for step in journey.steps)
    stages = ", ".join(f"{stage.value} {per_stage[stage]}" for stage in Stage if per_stage[stage])
    channels = sorted({c for step in journey.steps if isinstance(step.action, Send) for c in step.action.via})
    title = f" ({journey.title})" if journey.title else ""
    return (f"{journey.name}{title} version {journey.version}: {len(journey.steps)} steps ({stages or 'none'}); "
            f"anchors: {', '.join(sorted(journey.anchors)) or 'none'}; channels: {', '.join(channels) or 'none'}")


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Journey YAML files, or folders holding them.",
                                                show_default=False)],
    channel: Annotated[list[str] | None, typer.Option(
        "--channel", help="A channel name the journeys may use (repeat it); default: the channels of "
                          "carepath.toml, or the installed channel types where there is none.",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of text")] = False,
    config_file: Path | None = CONFIG_OPTION,
) -> None:
    """Report every problem in journey files; exit 1 if there is any."""
    console = out_console(soft_wrap=True, quiet=as_json)
    files, problems = journey_paths(paths)
    valid: list[dict[str, str]] = []
    _print_problems(console, problems)
    provided = plugin_templates()
    templates = {name: provided.get(name) for name in known_template_names()}
    channels, instances = _channels_to_check(channel, config_file)
    for path in files:
        journey, found = read_journey_file(path, known_templates=templates, known_channels=channels,
                                           channels=instances)
        if journey is not None and not found:
            valid.append({"file": str(path), "journey": journey.name, "version": journey.version})
            console.print(f"✓ {path}: {journey_summary(journey)}", style="green", markup=False)
        _print_problems(console, found)
        problems += found
    if as_json:
        print_json({"ok": not problems, "valid": valid, "problems": [asdict(p) for p in problems]})
    if problems:
        console.print(f"{len(problems)} problem(s) found", style="bold red", markup=False)
        if any("unknown channel" in p.message for p in problems):
            console.print("hint: channels are connector instances declared in carepath.toml "
                          "([connectors.NAME] type = \"...\"); --channel NAME checks against other names",
                          markup=False)
        raise typer.Exit(1)
    console.print(f"{len(files)} journey file(s) valid", style="bold green", markup=False)


def _channels_to_check(given: list[str] | None, config_file: Path | None) -> tuple[set[str], dict]:
    """The channel names journeys may use and the configured instances that check their templates:
    ``--channel`` names; else carepath.toml's channels; else, with no carepath.toml, every installed
    channel type (and a note saying so)."""
    if given:
        return set(given), {}
    config = cli_config(config_file)
    if config.path is not None:
        return configured_channel_names(config), dict(build_channels(config))
    names = installed_channel_names()
    err_console().print(f"note: no carepath.toml here, so channel names are checked against the installed channel "
                        f"types: {', '.join(sorted(names))} (in a hospital's folder, against its "
                        f"[connectors.NAME] instances)", style="dim")
    return names, {}


def _print_problems(console: Console, problems: list[Problem]) -> None:
    for problem in problems:
        console.print(str(problem), style="red", markup=False)


def _open_store(db: str | None):
    """The database named by ``--db`` (file or URL; default: the configured one), never created here."""
    from carepath.cli.common import ExitCode, database_url, fail
    from carepath.settings import Settings
    from carepath.store import DatabaseNotFound, open_database

    try:
        return open_database(database_url(db) or Settings().resolved_database_url(), must_exist=True)
    except DatabaseNotFound as exc:
        fail(str(exc), ExitCode.NOT_FOUND)


def _live(name: str, config_file: Path | None) -> tuple[Journey | None, bool]:
    """The definition of journey ``name`` here and whether it runs: the journey carepath.toml enables
    (a hospital's own YAML file or a plugin's), else a plugin's journey that is installed but not enabled."""
    from carepath.definition.registry import plugin_journeys

    running = cli_journeys(cli_config(config_file)).get(name)
    return (running, True) if running is not None else (plugin_journeys().get(name), False)


def _not_found(message: str) -> NoReturn:
    err_console().print(message, style="red")
    raise typer.Exit(int(ExitCode.NOT_FOUND))


DB_OPTION = typer.Option("--db", show_default=False, help=DB_HELP)


@app.command()
def versions(
    name: Annotated[str, typer.Argument(help="The journey's name.", show_default=False)],
    db: Annotated[str | None, DB_OPTION] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the versions as JSON.")] = False,
    config_file: Path | None = CONFIG_OPTION,
) -> None:
    """List a journey's versions with how many enrollments are active on and exited from each, and which
    version is live here (the definition carepath.toml enables)."""
    from carepath.runtime.versions import version_counts

    store = _open_store(db)
    try:
        current, live = _live(name, config_file)
        with store.connect() as conn:
            rows = version_counts(conn, name, current)
    finally:
        store.dispose()
    if not rows:
        _not_found(f"journey {name!r} has no stored versions and is neither enabled nor installed")
    if as_json:
        typer.echo(json.dumps([{**r.to_json(), "live": r.current and live} for r in rows], indent=2))
        return
    table = Table(title=f"versions of {name}")
    for column in ("version", "first enrolled", "active", "exited", ""):
        table.add_column(column, justify="right" if column in ("active", "exited") else "left")
    mark = "live" if live else "installed, not enabled"
    for r in rows:
        table.add_row(r.version, f"{r.created_at:%Y-%m-%d %H:%M} UTC" if r.created_at else "-", str(r.active),
                      str(r.exited), mark if r.current else "")
    out_console().print(table)


@app.command()
def migrate(
    name: Annotated[str, typer.Argument(help="The journey's name.", show_default=False)],
    to: Annotated[str, typer.Option("--to", help="Target version (a hash or a unique prefix; see `versions`).",
                                    show_default=False)],
    from_version: Annotated[str | None, typer.Option("--from", help="Only enrollments pinned to this version.",
                                                     show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; change nothing.")] = False,
    db: Annotated[str | None, DB_OPTION] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
    config_file: Path | None = CONFIG_OPTION,
) -> None:
    """Move running enrollments' unsent steps to another version; sent touchpoints never change."""
    from rich.progress import Progress

    from carepath.runtime.clock import SystemClock
    from carepath.runtime.migrate import migrate_enrollments
    from carepath.runtime.versions import VersionError, VersionNotFound

    store = _open_store(db)
    errors = err_console()
    try:
        current, _ = _live(name, config_file)
        with Progress(console=errors, transient=True, disable=as_json) as bar:
            task = bar.add_task("migrating enrollments", total=None)
            report = migrate_enrollments(store, name, to, now=SystemClock().now(), current=current,
                                         from_version=from_version, dry_run=dry_run, actor="cli",
                                         progress=lambda n, total: bar.update(task, completed=n, total=total))
    except VersionNotFound as exc:
        _not_found(str(exc))
    except VersionError as exc:
        errors.print(str(exc), style="red")
        raise typer.Exit(int(ExitCode.INVALID)) from None
    finally:
        store.dispose()
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    console = out_console(soft_wrap=True)
    table = Table(title=f"{name} → {report.to_version}" + (" (dry run)" if dry_run else ""))
    table.add_column("step")
    for label in ("kept", "re-timed", "dropped", "added"):
        table.add_column(label, justify="right")
    for step, counts in sorted(report.steps.items()):
        table.add_row(step, *(str(counts[o]) for o in OUTCOMES))
    table.add_row("total", *(str(report.totals[o]) for o in OUTCOMES), style="bold")
    console.print(table)
    origin = ", ".join(f"{v} ({n})" for v, n in sorted(report.from_versions.items())) or "none"
    verb = "would move" if dry_run else "moved"
    console.print(f"{verb} {report.enrollments} enrollment(s) from {origin} to {report.to_version}"
                  + ("; nothing changed (dry run)" if dry_run else ""), markup=False)


# show, schema, doc, new, diff, export and import live in their own modules; importing them adds their commands to ``app``
from carepath.cli import journeys_fhir, journeys_library, journeys_maps  # noqa: E402,F401

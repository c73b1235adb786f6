"""``carepath journeys``: check journey YAML files before they reach a hospital."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Iterable

import typer
from rich.console import Console

from carepath.cli.common import print_json
from carepath.definition.journey_files import read_journey_file
from carepath.definition.model import Journey, Send, Stage
from carepath.definition.registry import known_channel_names, known_template_names
from carepath.definition.validation import Problem

app = typer.Typer(name="journeys", help="Check journey definitions written in YAML.", no_args_is_help=True)

JOURNEY_SUFFIXES = (".yaml", ".yml")


@app.callback()
def _journeys() -> None:
    """Check journey definitions written in YAML."""


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
        "--channel", help="A channel name the journeys may use (repeat it); default: the installed channels.",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of text")] = False,
) -> None:
    """Report every problem in journey files; exit 1 if there is any."""
    console = Console(highlight=False, soft_wrap=True, quiet=as_json)
    files, problems = journey_paths(paths)
    valid: list[dict[str, str]] = []
    _print_problems(console, problems)
    templates = known_template_names()
    channels = set(channel) if channel else known_channel_names()
    for path in files:
        journey, found = read_journey_file(path, known_templates=templates, known_channels=channels)
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


def _print_problems(console: Console, problems: list[Problem]) -> None:
    for problem in problems:
        console.print(str(problem), style="red", markup=False)

"""``carepath journeys show/schema/doc``: a journey's map in the terminal or as Mermaid, the JSON Schema of
journey files for editors, and the generated documentation pages."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from carepath.cli.common import CONFIG_OPTION, cli_config, err_console, fail, out_console
from carepath.cli.journeys import app
from carepath.cli.journeys_sources import JourneySource, find_source, read_source


class MapFormat(str, enum.Enum):
    terminal = "terminal"
    mermaid = "mermaid"


NAME_ARGUMENT = typer.Argument(help="A journey's name (the hospital's, else a stock journey) or a YAML file.",
                               show_default=False)


@app.command()
def show(
    name: Annotated[str, NAME_ARGUMENT],
    fmt: Annotated[MapFormat, typer.Option("--format", "-f", help="terminal: a tree by stage; mermaid: a Mermaid "
                                                                  "flowchart (for docs, GitHub, mermaid.live).")]
    = MapFormat.terminal,
    config_file: Path | None = CONFIG_OPTION,
) -> None:
    """Draw a journey by stage: what starts each step and what it does."""
    from carepath.definition.render_mermaid import mermaid_flowchart
    from carepath.definition.render_terminal import journey_tree

    source = find_source(name, cli_config(config_file))
    if fmt is MapFormat.mermaid:
        typer.echo(mermaid_flowchart(source.journey), nl=False)
        return
    out_console(soft_wrap=False).print(journey_tree(source.journey))


def _write(text: str, out: Path | None, what: str) -> None:
    if out is None:
        typer.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    out_console().print(f"wrote {what} to {out}", style="green")


@app.command()
def schema(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file (e.g. "
                                             "journeys/journey.schema.json) instead of standard output.",
                                             show_default=False)] = None,
) -> None:
    """Write the JSON Schema of journey files (from the journey model), for editors with yaml-language-server:
    a journey file that starts with `# yaml-language-server: $schema=journey.schema.json` is completed,
    explained and checked as it is typed."""
    from carepath.definition.journey_schema import schema_text

    _write(schema_text(), out, "the journey schema")


@app.command()
def doc(
    names: Annotated[list[str] | None, typer.Argument(help="Journeys (names or YAML files); default: every stock "
                                                            "journey carepath ships.", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write NAME.md pages into this folder (e.g. "
                                             "docs/journeys) instead of printing them.", show_default=False)] = None,
    simulate: Annotated[bool, typer.Option("--simulate", help="Simulate each journey first (as `carepath simulate "
                                           "NAME`) and record its figures next to the journey file "
                                           "(simulated/NAME.json), which the page shows.")] = False,
    patients: Annotated[int, typer.Option(min=1, max=200_000, help="--simulate: synthetic patients (the page "
                                          "scales to 1,000)")] = 1000,
    days: Annotated[int, typer.Option(min=1, max=365, help="--simulate: virtual days (the page scales to 30)")] = 30,
    seed: Annotated[int, typer.Option(help="--simulate: random seed")] = 1,
    config_file: Path | None = CONFIG_OPTION,
) -> None:
    """Generate a journey's documentation page: purpose (the file's opening comment), map, steps, simulated load
    per 1,000 patients a month (recorded by --simulate), what to adapt (the journey's `adapt`), templates."""
    from carepath.definition.doc_figures import read_figures
    from carepath.definition.render_docs import journey_page
    from carepath.journeys import journey_files

    if names:
        config = cli_config(config_file)
        sources: list[JourneySource] = [find_source(name, config) for name in names]
    else:  # carepath's own library (docs/journeys), not the journeys other plugins provide
        sources = [read_source(path, stock=True) for path in journey_files()]
    for source in sources:
        if simulate:
            _simulate_for_page(source, patients=patients, days=days, seed=seed)
        page = journey_page(source.journey, source_text=source.text, source_name=source.shown_path,
                            figures=read_figures(source.path, source.journey.name))
        _write(page, out / f"{source.journey.name}.md" if out else None, f"the page of {source.journey.name}")


def _simulate_for_page(source: JourneySource, *, patients: int, days: int, seed: int) -> None:
    """Run the simulation of ``source``'s journey and record the page's figures next to its file."""
    from datetime import date

    from carepath.definition.doc_figures import figures_record, write_figures
    from carepath.simulation.simulate import SimulationError, run_simulation

    from carepath.definition.doc_figures import population_path
    from carepath.simulation.population import PopulationError, load_population

    name = source.journey.name
    own = population_path(source.path, name)
    try:
        population = load_population(own if own.is_file() else None)
    except PopulationError as exc:
        fail(f"{own}: {exc}")
    shown = (f"journeys/{own.parent.name}/{own.name}" if source.stock else str(own)) if own.is_file() else None
    with err_console().status(f"simulating {name}: {patients} patients, {days} days") as status:
        try:
            figures = run_simulation([source.journey], patients=patients, days=days, seed=seed,
                                     population=population, progress=lambda day, total: status.update(f"simulating {name}: day {day}/{total}"))
        except SimulationError as exc:
            fail(f"{name}: {exc}")
    record = figures_record(source.journey, figures, patients=patients, days=days, seed=seed, run_on=date.today(),
                            population=shown)
    path = write_figures(source.path, record)
    err_console().print(f"recorded the simulated figures of {name} in {path}", style="green")

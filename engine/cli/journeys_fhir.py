"""``carepath journeys export/import``: a journey as a FHIR PlanDefinition and back (issue 23)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from carepath.cli.common import CONFIG_OPTION, ExitCode, cli_config, err_console, fail, out_console
from carepath.cli.journeys import app
from carepath.cli.journeys_sources import find_source

_OUT = typer.Option("--out", "-o", help="Write to this file instead of standard output.", show_default=False)


def _write(text: str, out: Path | None) -> None:
    if out is None:
        typer.echo(text)
        return
    try:
        out.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")


@app.command("export")
def export_command(
    name: Annotated[str, typer.Argument(help="A journey file, a journey of the hospital's folder or a stock journey.",
                                        show_default=False)],
    fmt: Annotated[str, typer.Option("--format", help="The format: fhir (a FHIR R4 PlanDefinition).")] = "fhir",
    out: Annotated[Path | None, _OUT] = None,
    config_file: Path | None = CONFIG_OPTION,
) -> None:
    """Write a journey as a FHIR PlanDefinition; report (on standard error) what only carepath's extension holds."""
    from carepath.definition.fhir_plan import export_plan

    if fmt != "fhir":
        fail(f"--format {fmt!r}: the only export format is fhir", ExitCode.USAGE)
    source = find_source(name, cli_config(config_file))
    plan, report = export_plan(source.journey)
    _write(json.dumps(plan, ensure_ascii=False, indent=2), out)
    errors = err_console()
    for line in report.lines():
        errors.print(line, style="yellow" if report.extension_only else "green", markup=False)
    if out is not None:
        errors.print(f"✓ {out}: PlanDefinition {source.journey.name} version {source.journey.version}",
                     style="green", markup=False)


@app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="A FHIR PlanDefinition (JSON).", show_default=False)],
    out: Annotated[Path | None, _OUT] = None,
) -> None:
    """Read a FHIR PlanDefinition into a journey file (YAML); report the actions that could not be mapped and
    why, and the assumptions made. Exit 1 when the journey does not validate."""
    from carepath.definition.fhir_plan_import import PlanImportError, import_plan, read_plan_text
    from carepath.definition.journey_files import journey_to_yaml

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}", ExitCode.NOT_FOUND)
    try:
        plan = read_plan_text(text, str(file))
    except PlanImportError as exc:
        fail(str(exc))
    journey, report = import_plan(plan, str(file))
    errors = err_console()
    clean = not (report.unmapped or report.assumed or report.problems)
    for line in report.lines():
        errors.print(line, style="green" if clean else "yellow", markup=False)
    if journey is None:
        fail(f"{file}: the imported journey does not validate (problems above)")
    _write(journey_to_yaml(journey).rstrip("\n"), out)
    if out is not None:
        out_console(soft_wrap=True).print(f"✓ {out}: journey {journey.name} version {journey.version}",
                                          style="green", markup=False)

"""``carepath journeys new/diff``: start a hospital's journey from a stock one, and see what was changed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from carepath.cli.common import CONFIG_OPTION, ExitCode, cli_config, err_console, fail, out_console, print_json
from carepath.cli.journeys import app
from carepath.cli.journeys_sources import find_hospital_source, hospital_folder, stock_source

_NAME = re.compile(r"^[a-z0-9][a-z0-9\-]*$")


@app.command()
def new(
    name: Annotated[str, typer.Argument(help="The new journey's name (lowercase letters, digits, dashes).",
                                        show_default=False)],
    stock: Annotated[str, typer.Option("--from", help="The stock journey to start from.", show_default=False)],
    into: Annotated[Path | None, typer.Option("--into", help="The hospital's journeys folder (default: the first "
                                              "folder of carepath.toml's [journeys] paths, else ./journeys).",
                                              show_default=False)] = None,
    config_file: Path | None = CONFIG_OPTION,
) -> None:
    """Copy a stock journey (its templates and questionnaires) into the hospital's journeys folder under a new
    name, recording which stock journey and version it came from; adapt it, then `journeys diff NAME`."""
    from carepath.definition.journey_copy import CopyError, copy_stock_journey

    if not _NAME.match(name):
        fail(f"journey name {name!r}: use lowercase letters, digits and dashes (e.g. my-diabetes)", ExitCode.USAGE)
    config = cli_config(config_file)
    source = stock_source(stock)
    folder = into or hospital_folder(config)
    try:
        copied = copy_stock_journey(source.path, name, folder)
    except CopyError as exc:
        fail(str(exc))
    console = out_console(soft_wrap=True)
    console.print(f"✓ {copied.journey}: journey {name}, a copy of {stock} version {source.journey.version}",
                  style="green")
    for path in copied.questionnaires:
        console.print(f"✓ {path}: questionnaire", style="green")
    for path in copied.kept:
        err_console().print(f"note: {path} was already there and differs from the stock questionnaire: kept "
                            f"as it is (`journeys diff {name}` shows how)", style="yellow")
    if copied.schema:
        console.print(f"✓ {copied.schema}: the journey schema (editors validate and complete the copy)", style="green")
    console.print(f"next: edit {copied.journey}, then `carepath journeys validate {copied.journey}` and "
                  f"`carepath journeys diff {name}`")
    if config.path is not None and folder.resolve() not in {p.resolve() for p in config.journey_paths}:
        console.print(f"note: {folder} is not in [journeys] paths of {config.path}: add it there for the copy "
                      "to run", style="yellow")
    elif config.enabled_journeys is not None and name not in config.enabled_journeys:
        console.print(f"note: {config.path} lists [journeys] enabled: add {name!r} there for it to run "
                      f"(and remove {stock!r} if the copy replaces it)", style="yellow")


@app.command()
def diff(
    name: Annotated[str, typer.Argument(help="The hospital's journey (a name or a YAML file).", show_default=False)],
    stock: Annotated[str | None, typer.Option("--from", help="The stock journey to compare with (default: the one "
                                              "the copy records in origin).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the differences as JSON.")] = False,
    config_file: Path | None = CONFIG_OPTION,
) -> None:
    """Show how a hospital's journey differs from the stock journey it came from: journey fields, templates,
    steps and questionnaires (as definitions: comments and formatting do not count)."""
    from carepath.definition.journey_copy import differences

    config = cli_config(config_file)
    copy = find_hospital_source(name, config)
    origin = copy.journey.origin
    stock_name = stock or (origin.journey if origin else None)
    if stock_name is None:
        fail(f"{copy.path} records no origin (it was not made by `journeys new`): name the stock journey with "
             f"--from STOCK")
    base = stock_source(stock_name)
    found = differences(base.journey, base.path.parent, copy.journey, copy.path.parent)
    moved = origin is not None and origin.journey == stock_name and origin.version != base.journey.version
    if as_json:
        print_json({"journey": copy.journey.name, "file": str(copy.path), "stock": stock_name,
                    "copied_from_version": origin.version if origin else None,
                    "stock_version": base.journey.version, "differences": [d.to_json() for d in found]})
        return
    console = out_console(soft_wrap=True)
    console.print(f"{copy.journey.name} ({copy.path}) against stock {stock_name} version {base.journey.version}: "
                  f"{len(found)} difference(s)", style="bold")
    if moved:
        console.print(f"note: the stock journey changed since the copy was made from version {origin.version}: "
                      "its own changes show here too", style="yellow")
    colours = {"+": "green", "-": "red", "@": "cyan"}
    for difference in found:
        console.print(f"{difference.what} {difference.name}: {difference.change}", style="bold")
        for line in difference.lines:
            console.print(f"    {line}", style=colours.get(line[:1], "") if not line.startswith(("+++", "---"))
                          else "dim")

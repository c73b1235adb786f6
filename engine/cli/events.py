"""``carepath events``: the event types the engine knows (and, later, feeding it events)."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table

from carepath.definition.catalog import event_types

app = typer.Typer(name="events", help="Events: the types the engine knows and their payloads.",
                  no_args_is_help=True, add_completion=False)


@app.callback()
def _events() -> None:
    """Events: the types the engine knows and their payloads."""


@app.command("types")
def types(as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")) -> None:
    """Every event type (built-in and from plugins) with its payload fields."""
    known = sorted(event_types().values(), key=lambda t: t.name)
    if as_json:
        typer.echo(json.dumps({"event_types": [t.to_json() for t in known]}, ensure_ascii=False, indent=2))
        return
    console = Console(highlight=False) if sys.stdout.isatty() else Console(highlight=False, width=140)
    for event_type in known:
        source = "" if event_type.source == "builtin" else f" (plugin {event_type.source})"
        table = Table(title=f"{event_type.name}{source}: {event_type.summary}", title_justify="left",
                      caption=event_type.effect or None, caption_justify="left")
        for column in ("field", "type", "required", "meaning"):
            table.add_column(column)
        for field in event_type.fields():
            table.add_row(field.name, field.type, "required" if field.required else "optional", field.description)
        console.print(table)

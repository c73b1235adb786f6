"""``carepath dispatch``: send what is due now through the configured channels."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from carepath.cli.common import CONFIG_OPTION, DB_OPTION, err_console, open_cli_engine, out_console, print_json

if TYPE_CHECKING:
    from carepath.runtime.dispatcher import DispatchReport


def dispatch(until_idle: bool = typer.Option(False, "--until-idle", help="batch after batch until nothing due "
                                             "now is left (default: one batch)"),
             journey: Optional[str] = typer.Option(None, "--journey", help="only this journey's touchpoints"),
             batch: int = typer.Option(500, "--batch", min=1, help="touchpoints claimed per batch"),
             as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
             config: Optional[Path] = CONFIG_OPTION,
             db: Optional[str] = DB_OPTION) -> None:
    """Dispatch due touchpoints: send, defer (quiet hours, caps), retry, fall back, open staff tasks."""
    engine = open_cli_engine(db, config)
    try:
        report = _run(engine, until_idle, journey, batch)
    finally:
        engine.close()
    if as_json:
        print_json({"claimed": report.claimed, "outcomes": dict(report.outcomes),
                    "by_step": [{"journey": j, "stage": s, "step": st, "channel": c, "outcome": o, "count": n}
                                for (j, s, st, c, o), n in sorted(report.by_step.items())]})
        return
    console = out_console()
    console.print(dispatch_table(report))
    console.print(LEGEND, style="dim")


def _run(engine, until_idle: bool, journey: str | None, batch: int) -> "DispatchReport":  # noqa: ANN001
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from carepath.runtime.dispatcher import DispatchReport

    report = DispatchReport()
    console = err_console()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True,
                  disable=not console.is_terminal) as progress:
        task = progress.add_task("dispatching", total=None)
        while True:
            part = engine.dispatcher.run_batch(limit=batch, journey=journey)
            report.merge(part)
            progress.update(task, description=f"dispatching: {report.claimed} claimed, {report.sent} sent")
            if not until_idle or part.claimed < batch:
                return report


def dispatch_table(report: "DispatchReport") -> Table:
    """What one dispatch did, per journey, step, channel and outcome."""
    table = Table(title=f"dispatched: {report.claimed} touchpoint(s) claimed")
    for column in ("journey", "step", "channel", "outcome", "count"):
        table.add_column(column, justify="right" if column == "count" else "left", overflow="fold")
    for (journey, _, step, channel, outcome), n in sorted(report.by_step.items()):
        table.add_row(journey, step, channel, outcome, str(n))
    if not report.by_step:
        table.add_row("—", "nothing due now", "", "", "0")
    return table


LEGEND = ("sent: handed to the channel; deferred: quiet hours or the daily cap, due again later; retry: a "
          "transient error, due again after a back-off; skipped: condition false, no consent or too late; "
          "failed: every channel failed, a staff task was opened (carepath tasks list)")

"""The demo's closing table fits 100 columns without cutting a name or a count."""

from __future__ import annotations

from rich.console import Console

from carepath.definition.journey_files import load_journey_file
from carepath.definition.model import Send
from carepath.journeys import HERE
from carepath.reporting import COLUMNS, StepRow, step_table


def test_the_demo_table_fits_100_columns_with_every_step_of_the_stock_journey() -> None:
    journey = load_journey_file(HERE / "outpatient-visit.yaml")
    rows = []
    for step in journey.steps:
        for channel in (step.action.via if isinstance(step.action, Send) else ["—"]):
            row = StepRow(step.stage.value, step.id, channel)
            row.counts.update({c: 12345 for c in COLUMNS})
            rows.append(row)
    console = Console(width=100, record=True)
    console.print(step_table(rows, "outpatient-visit: 20000 patients, 365 days"))
    text = console.export_text()
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 100
    assert "…" not in text
    for step in journey.steps:
        assert step.id in text

"""``carepath report outcomes``: reading the figures from the store, and the tables people read."""

from __future__ import annotations

from datetime import date, timedelta

from rich.console import Console
from rich.table import Table

from carepath.outcomes_report import OutcomesReport, Proportion, outcomes_report


def run_outcomes(journey: str, since: date | None, until: date | None, db: str | None) -> OutcomesReport:
    """The report over the days given (default: patients assigned in the last 90 days), read-only."""
    from zoneinfo import ZoneInfo

    from carepath.cli.common import open_cli_store
    from carepath.reporting import report_days
    from carepath.runtime.clock import SystemClock
    from carepath.settings import Settings

    now = SystemClock().now()
    start, end = report_days(since, until, ZoneInfo(Settings().timezone), now, default_days=90)
    store = open_cli_store(db, read_only=True)  # a report creates no database and no key
    try:
        with store.db.connect() as conn:
            return outcomes_report(conn, journey, start, end, now, store.cipher)
    finally:
        store.db.dispose()


def cell(p: Proportion | None) -> str:
    """``41.0 % (82/200) 34.4–47.9``: the rate, the count behind it and its interval."""
    if p is None or not p.n:
        return "—"
    return f"{p.rate:g} % ({p.count}/{p.n}) {p.low:g}–{p.high:g}"


def print_outcomes(report: OutcomesReport, out: Console) -> None:
    """One table per experiment (measures × arms), then the comparisons in plain language and the warnings."""
    labels = report.labels
    last = (report.until - timedelta(days=1)).date()
    for exp in report.experiments:
        table = Table("measure", *[f"{a.name} (n={a.patients})" for a in exp.arms],
                      title=f"{report.journey} · experiment {exp.experiment} · assigned {report.since.date()} – "
                            f"{last} (95 % CI)")
        for key in [k for k in labels if exp.arms and k in exp.arms[0].rates]:
            table.add_row(labels[key], *[cell(a.rates.get(key)) for a in exp.arms])
        table.add_row("mean satisfaction", *[
            "—" if a.satisfaction.mean is None else
            f"{a.satisfaction.mean:g} (n={a.satisfaction.n})" + (
                f" {a.satisfaction.low:g}–{a.satisfaction.high:g}" if a.satisfaction.low is not None else "")
            for a in exp.arms])
        table.add_row("NPS", *["—" if a.nps is None else f"{a.nps:+g} (n={a.nps_answers})" for a in exp.arms])
        out.print(table)
        for c in exp.comparisons:
            out.print(c.text)
        for w in exp.warnings:
            out.print(f"warning: {w}", style="yellow")

"""``carepath report surveys``: what patients said, and how fast staff acted on it."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from carepath.cli.common import (CONFIG_OPTION, DB_OPTION, ExitCode, cli_config, cli_journeys, fail, open_cli_store,
                                 out_console, print_json)

app = typer.Typer(help="Reports for people: surveys, NPS, task SLAs, content performance.", no_args_is_help=True)


def _day(value: Optional[str]) -> Optional[date]:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _pct(value: Optional[float]) -> str:
    return "" if value is None else f"{value:g}%"


@app.command("surveys")
def surveys(since: Optional[str] = typer.Option(None, help="first day (YYYY-MM-DD, in the hospital's time zone "
                                                        "CAREPATH_TIMEZONE, default Asia/Shanghai); default 30 days ago"),
            until: Optional[str] = typer.Option(None, help="day after the last (YYYY-MM-DD); default tomorrow there"),
            json_out: bool = typer.Option(False, "--json", help="print the figures as JSON"),
            config: Optional[Path] = CONFIG_OPTION, db: Optional[str] = DB_OPTION) -> None:
    """Response rate, satisfaction and NPS (with its three shares) per journey and step; task SLA compliance."""
    from zoneinfo import ZoneInfo

    from carepath.reporting import report_days
    from carepath.runtime.clock import SystemClock
    from carepath.settings import Settings
    from carepath.survey_report import survey_report

    start, end = report_days(_day(since), _day(until), ZoneInfo(Settings().timezone), SystemClock().now())
    store = open_cli_store(db, read_only=True)  # a report creates no database and no key
    try:
        journeys = cli_journeys(cli_config(config)).values()  # what the engine would run
        with store.db.connect() as conn:
            report = survey_report(conn, journeys, start, end)
    finally:
        store.db.dispose()
    if json_out:
        print_json(report.as_dict())
        return
    table = Table("journey", "step", "invited", "answered", "rate", "satisfaction", "NPS", "promoters", "passives",
                  "detractors", title=f"surveys {start.date()} – {(end - timedelta(days=1)).date()}")
    for line in [*report.lines, report.total]:
        d = line.as_dict()
        table.add_row(d["journey"], d["step"], str(d["invited"]), str(d["responses"]), _pct(d["response_rate"]),
                      "" if d["satisfaction"] is None else f"{d['satisfaction']:g}",
                      "" if d["nps"] is None else f"{d['nps']:+g}", _pct(d["promoters"]), _pct(d["passives"]),
                      _pct(d["detractors"]))
    out = out_console()
    out.print(table)
    tasks = Table("team", "task", "opened", "closed", "within SLA", "breached", "compliance", title="task SLAs")
    for t in report.tasks:
        tasks.add_row(t.team, t.kind, str(t.total), str(t.closed), str(t.within_sla), str(t.breached),
                      _pct(t.compliance))
    out.print(tasks)


def _rated(n: int, rate: Optional[float]) -> str:
    return f"{n} ({rate:g}%)" if rate is not None else str(n)


@app.command("content")
def content(since: Optional[str] = typer.Option(None, help="first day (YYYY-MM-DD, in the hospital's time zone "
                                                        "CAREPATH_TIMEZONE, default Asia/Shanghai); default 30 days ago"),
            until: Optional[str] = typer.Option(None, help="day after the last (YYYY-MM-DD); default tomorrow there"),
            json_out: bool = typer.Option(False, "--json", help="print the figures as JSON"),
            chart: Optional[Path] = typer.Option(None, "--chart", help="also draw a PNG bar chart of the rates "
                                                                       "per template to this file"),
            segments_too: bool = typer.Option(True, "--segments/--no-segments", help="a line per template and "
                                                                                     "segment too"),
            db: Optional[str] = DB_OPTION, config: Optional[Path] = CONFIG_OPTION) -> None:
    """Per template and segment: messages sent, delivered, clicked, replied, with rates and the numbers behind them."""
    from zoneinfo import ZoneInfo

    from carepath.content_chart import ChartError, draw_chart
    from carepath.content_report import content_report
    from carepath.reporting import report_days
    from carepath.runtime.clock import SystemClock
    from carepath.settings import Settings

    start, end = report_days(_day(since), _day(until), ZoneInfo(Settings().timezone), SystemClock().now())
    segments = cli_config(config).segments
    store = open_cli_store(db, read_only=True)
    try:
        with store.db.connect() as conn:
            report = content_report(conn, start, end, segments, by_segment=segments_too)
    finally:
        store.db.dispose()
    if chart is not None:
        overall = [line.as_dict() for line in report.overall()]
        if not overall:
            fail(f"no message was sent from {start.date()} to {end.date()}: no chart drawn")
        try:
            draw_chart(overall, f"内容效果 {start.date()} – {(end - timedelta(days=1)).date()}", chart)
        except ChartError as exc:
            fail(str(exc), ExitCode.INVALID)
    if json_out:
        print_json(report.as_dict())
        return
    table = Table("template", "segment", "sent", "delivered", "clicked", "replied",
                  title=f"content {start.date()} – {(end - timedelta(days=1)).date()} (rates of messages sent)")
    for line in report.lines:
        d = line.as_dict()
        if d["suppressed"]:
            table.add_row(d["title"], d["segment"], "withheld: sensitive segment below the group size", "", "", "")
            continue
        table.add_row(f"{d['title']} ({d['template']})" if d["title"] != d["template"] else d["template"],
                      d["segment"] or "all", str(d["sent"]), _rated(d["delivered"], d["delivery_rate"]),
                      _rated(d["clicked"], d["click_rate"]), _rated(d["replied"], d["reply_rate"]))
    out = out_console()
    out.print(table)
    if chart is not None:
        out.print(f"chart: {chart}")


@app.command("complaints")
def complaints(since: Optional[str] = typer.Option(None, help="first day (YYYY-MM-DD, in the hospital's time zone); "
                                                           "default 30 days ago"),
               until: Optional[str] = typer.Option(None, help="day after the last (YYYY-MM-DD); default tomorrow"),
               json_out: bool = typer.Option(False, "--json", help="print the figures as JSON"),
               db: Optional[str] = DB_OPTION) -> None:
    """Per month: complaint cases received, first responses within 24 h, resolutions within 7 working days."""
    from zoneinfo import ZoneInfo

    from carepath.reporting import report_days
    from carepath.runtime.clock import SystemClock
    from carepath.runtime.complaints import monthly_counts
    from carepath.settings import Settings

    tz = ZoneInfo(Settings().timezone)
    start, end = report_days(_day(since), _day(until), tz, SystemClock().now())
    store = open_cli_store(db, read_only=True)
    try:
        with store.db.connect() as conn:
            months = monthly_counts(conn, start, end, tz)
    finally:
        store.db.dispose()
    if json_out:
        print_json([m.__dict__ for m in months])
        return
    table = Table("month", "received", "responded in 24 h", "resolved in 7 working days",
                  title=f"complaints {start.date()} – {(end - timedelta(days=1)).date()}")
    for m in months:
        table.add_row(m.month, str(m.received), str(m.responded_24h), str(m.resolved_7d))
    out_console().print(table)


@app.command("outcomes")
def outcomes(journey: str = typer.Argument(..., help="the journey whose experiments to report"),
             since: Optional[str] = typer.Option(None, help="first day patients were assigned (YYYY-MM-DD, in the "
                                                            "hospital's time zone); default 90 days ago"),
             until: Optional[str] = typer.Option(None, help="day after the last (YYYY-MM-DD); default tomorrow"),
             json_out: bool = typer.Option(False, "--json", help="print the figures as JSON"),
             chart: Optional[Path] = typer.Option(None, "--chart", help="also draw a PNG chart of the rates per "
                                                                        "arm with their intervals to this file"),
             db: Optional[str] = DB_OPTION) -> None:
    """Per variant and holdout of the journey's experiments: outcomes with 95 % intervals, and each variant
    against the holdout in plain language."""
    from carepath.outcomes_print import print_outcomes, run_outcomes

    report = run_outcomes(journey, _day(since), _day(until), db)
    if not report.experiments:
        fail(f"journey {journey!r}: no patient was assigned to an experiment arm in these days "
             "(steps declare experiment: with variants or a holdout)", ExitCode.NOT_FOUND)
    if chart is not None:
        from carepath.outcomes_chart import draw_outcomes

        draw_outcomes(report, chart)
    if json_out:
        print_json(report.as_dict())
        return
    print_outcomes(report, out_console())
    if chart is not None:
        out_console().print(f"chart: {chart}")

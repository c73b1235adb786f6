"""The ``carepath`` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(name="carepath", help="Patient journeys for hospitals, run as Prefect flows.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
patients_app = typer.Typer(help="Look at patients (contacts always masked).", no_args_is_help=True)
app.add_typer(patients_app, name="patients")
# Piped output (CI logs, files) gets room for the closing tables instead of 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=140)


def _mount_optional() -> None:
    from carepath.cli.journeys import app as journeys_app

    app.add_typer(journeys_app, name="journeys")
    from carepath.cli.events import app as events_app

    app.add_typer(events_app, name="events")
    from carepath.cli.emulator import emulator

    app.command("emulator")(emulator)
    from carepath.cli.serve import serve

    app.command("serve")(serve)
    from carepath.cli.hl7 import app as hl7_app

    app.add_typer(hl7_app, name="hl7")
    from carepath.cli.report import app as report_app
    from carepath.cli.tasks import app as tasks_app

    app.add_typer(tasks_app, name="tasks")
    app.add_typer(report_app, name="report")
    try:
        from carepath.cli.plugins import config_app, plugins_app
    except ImportError:  # pragma: no cover - during development only
        return
    app.add_typer(plugins_app, name="plugins")
    app.add_typer(config_app, name="config")


def _database_url(db: Optional[str]) -> str:
    from carepath.settings import Settings

    if db is None:
        return Settings().resolved_database_url()
    if "://" in db:
        return db
    path = Path(db)
    if not path.exists():
        console.print(f"[red]no database at {path}[/]")
        raise typer.Exit(2)
    return f"sqlite:///{path.resolve()}"


@app.command()
def demo(patients: int = typer.Option(300, min=1, max=20000, help="synthetic patients"),
         days: int = typer.Option(30, min=1, max=365, help="virtual days to run"),
         seed: int = typer.Option(7, help="random seed of the synthetic HIS"),
         home: Path = typer.Option(Path(".carepath"), help="where the demo database goes")) -> None:
    """Run the built-in outpatient journey on synthetic patients for a virtual month, as Prefect flows."""
    from carepath.simulation.demo import run_demo

    run_demo(home=home, patients=patients, days=days, seed=seed, console=console)


@patients_app.command("timeline")
def timeline(patient_id: int = typer.Argument(..., help="internal patient id"),
             db: Optional[str] = typer.Option(None, "--db", help="database file or URL (default: CAREPATH_DATABASE_URL or ./.carepath/carepath.db)")) -> None:
    """One patient's journey: events, touchpoints with due and sent times, deliveries, masked contacts."""
    from carepath.reporting import timeline_tables
    from carepath.settings import Settings
    from carepath.store import load_cipher, open_database

    url = _database_url(db)
    settings = Settings()
    if db and "://" not in db:
        settings = Settings(home=Path(db).resolve().parent)
    engine = open_database(url)
    cipher = load_cipher(settings.secret_key, settings.key_id, settings.key_file)
    with engine.connect() as conn:
        tables = timeline_tables(conn, cipher, patient_id)
    if tables is None:
        console.print(f"[red]no patient with id {patient_id} in {url}[/]")
        raise typer.Exit(1)
    for table in tables:
        console.print(table)


@app.command()
def bench(json_out: bool = typer.Option(False, "--json", help="print the figures as JSON"),
          sizes: str = typer.Option("10000,100000", help="enrolled patients per size, comma separated"),
          postgres: Optional[str] = typer.Option("postgresql://postgres@127.0.0.1:5432/postgres",
                                                 help="server to create a scratch database on ('' to skip)"),
          naive_sample: int = typer.Option(200, help="touchpoints in the one-task-per-touchpoint sample")) -> None:
    """Planning and dispatch rates on SQLite and PostgreSQL, and the naive Prefect way for comparison."""
    from carepath.bench import run_bench

    run_bench([int(s) for s in sizes.split(",") if s.strip()], postgres or None, naive_sample, json_out, console)


def main() -> None:
    _mount_optional()
    try:
        app()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()

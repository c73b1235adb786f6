"""The ``carepath`` command line. Exit codes: see carepath.cli.common and docs/cli.md."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from carepath.cli.common import ExitCode, err_console, out_console

app = typer.Typer(name="carepath", help="Patient journeys for hospitals, run as Prefect flows.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"carepath {version('carepath')}")
        raise typer.Exit()


@app.callback()
def _main(show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                            help="print the version and exit")) -> None:
    """Patient journeys for hospitals, run as Prefect flows."""


def _mount_optional() -> None:
    """Mount the command groups (once)."""
    if getattr(app, "_carepath_mounted", False):
        return
    app._carepath_mounted = True  # type: ignore[attr-defined]
    from carepath.cli import dispatch, events, journeys, lists, patients
    from carepath.cli.emulator import emulator
    from carepath.cli.plugins import config_app, plugins_app

    app.add_typer(journeys.app, name="journeys")
    app.add_typer(events.app, name="events")
    app.command("dispatch")(dispatch.dispatch)
    app.add_typer(lists.touchpoints_app, name="touchpoints")
    app.add_typer(patients.app, name="patients")
    app.command("emulator")(emulator)
    from carepath.cli.serve import serve

    app.command("serve")(serve)
    from carepath.cli.hl7 import app as hl7_app

    app.add_typer(hl7_app, name="hl7")
    from carepath.cli.wechat import app as wechat_app

    app.add_typer(wechat_app, name="wechat")
    from carepath.cli.report import app as report_app
    from carepath.cli.tasks import app as tasks_app

    tasks_app.command("list")(lists.list_tasks)
    app.add_typer(tasks_app, name="tasks")
    app.add_typer(report_app, name="report")
    app.add_typer(plugins_app, name="plugins")
    app.add_typer(config_app, name="config")


@app.command()
def demo(patients: int = typer.Option(300, min=1, max=20000, help="synthetic patients"),
         days: int = typer.Option(30, min=1, max=365, help="virtual days to run"),
         seed: int = typer.Option(7, help="random seed of the synthetic HIS"),
         home: Path = typer.Option(Path(".carepath"), help="where the demo database goes")) -> None:
    """Run the built-in outpatient journey on synthetic patients for a virtual month, as Prefect flows."""
    from carepath.simulation.demo import run_demo

    run_demo(home=home, patients=patients, days=days, seed=seed, console=out_console())


@app.command()
def bench(json_out: bool = typer.Option(False, "--json", help="print the figures as JSON"),
          sizes: str = typer.Option("10000,100000", help="enrolled patients per size, comma separated"),
          postgres: Optional[str] = typer.Option("postgresql://postgres@127.0.0.1:5432/postgres",
                                                 help="server to create scratch databases on ('' to skip)"),
          workers: str = typer.Option("1,2,4", help="PostgreSQL dispatcher processes per run, comma separated"),
          batch: int = typer.Option(500, help="touchpoints per claim (serve's default)"),
          latency: int = typer.Option(0, help="events per second for the event-to-send latency run under "
                                              "carepath serve (0 skips it)"),
          peers: bool = typer.Option(False, "--peers", help="also run procrastinate and pgqueuer on the same jobs "
                                                            "(pip install 'carepath[peers]')"),
          naive_sample: int = typer.Option(0, help="touchpoints in the one-Prefect-task-per-touchpoint sample "
                                                   "(0 skips it)"),
          dispatch_max: int = typer.Option(100_000, help="larger sizes are planned only (planning cost and "
                                                         "peak RSS at 1M patients)"),
          out: Optional[Path] = typer.Option(None, help="also write the JSON here, after every run")) -> None:
    """Messages sent per second, claims and planning on SQLite and PostgreSQL, each against the same run's floor."""
    from carepath.bench import run_bench

    run_bench([int(s) for s in sizes.split(",") if s.strip()], postgres or None,
              workers=[int(w) for w in workers.split(",") if w.strip()], batch=batch, naive_sample=naive_sample,
              latency=latency, peers=peers, as_json=json_out, console=out_console(), dispatch_max=dispatch_max,
              out=out)


def main() -> None:
    _mount_optional()
    try:
        app()
    except KeyboardInterrupt:
        err_console().print("[yellow]interrupted[/]")
        sys.exit(int(ExitCode.INTERRUPTED))


if __name__ == "__main__":
    main()

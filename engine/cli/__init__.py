"""The ``carepath`` command line. Exit codes: see carepath.cli.common and docs/cli.md."""

from __future__ import annotations

import os
import signal
import sys


def _interrupted_while_starting(signum, frame) -> None:  # noqa: ANN001
    os.write(2, b"interrupted\n")
    os._exit(130)


# Ctrl-C while the command line is still importing (a second or more on a busy machine) ends in one line,
# not in a traceback through whatever module was loading; the handler before is back once this module is.
try:
    _before_import = signal.signal(signal.SIGINT, _interrupted_while_starting)
except ValueError:  # imported outside the main thread: nothing to guard
    _before_import = None

from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

import typer  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

from carepath.cli.common import ExitCode, config_failed, err_console, out_console  # noqa: E402


class _Commands(TyperGroup):
    """The root command group: a carepath.toml that does not load ends any command the same way,
    one line per problem and exit 1, wherever the command happened to read it."""

    def invoke(self, ctx):  # noqa: ANN001, ANN201 - click's signature
        from carepath.config import ConfigError

        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            config_failed(exc)


app = typer.Typer(name="carepath", help="Patient journeys for hospitals, run as Prefect flows.", cls=_Commands,
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"carepath {version('carepath')}")
        raise typer.Exit()


#: commands that keep the start-up Ctrl-C guard until they put their own handling in place: Ctrl-C while they
#: import Prefect and the like must not be an exception, which third-party code may wrap or swallow (pydantic turns a
#: KeyboardInterrupt inside a serializer into a PydanticSerializationError with a traceback)
_KEEP_START_GUARD = {"demo", "serve"}  # both put their own SIGINT handler in place before starting anything
_handler_before_main: object = None


@app.callback()
def _main(ctx: typer.Context,
          show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                            help="print the version and exit")) -> None:
    """Patient journeys for hospitals, run as Prefect flows."""
    if _handler_before_main is not None and ctx.invoked_subcommand not in _KEEP_START_GUARD:
        signal.signal(signal.SIGINT, _handler_before_main)  # the command's own Ctrl-C: a KeyboardInterrupt


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
    from carepath.cli.segments import app as segments_app

    app.add_typer(segments_app, name="segments")
    from carepath.cli.checkins import app as checkins_app  # issue 19

    app.add_typer(checkins_app, name="checkins")
    app.add_typer(config_app, name="config")
    from carepath.cli.consent import app as consent_app
    from carepath.cli.staff import app as staff_app

    app.add_typer(staff_app, name="staff")
    app.add_typer(consent_app, name="consent")
    from carepath.cli.audit import app as audit_app
    from carepath.cli.keys import app as keys_app

    app.add_typer(keys_app, name="keys")
    app.add_typer(audit_app, name="audit")
    from carepath.cli.conversations import complaints_app, conversations_app, managers_app  # issue 21

    app.add_typer(complaints_app, name="complaints")
    app.add_typer(managers_app, name="managers")
    app.add_typer(conversations_app, name="conversations")
    from carepath.cli.simulate import simulate  # issue 23

    app.command("simulate")(simulate)


@app.command()
def demo(patients: int = typer.Option(300, min=1, max=20000, help="synthetic patients"),
         days: int = typer.Option(30, min=1, max=365, help="virtual days to run"),
         seed: int = typer.Option(7, help="random seed of the synthetic HIS"),
         home: Path = typer.Option(Path(".carepath"), help="where the demo database goes")) -> None:
    """Run the built-in outpatient journey on synthetic patients for a virtual month, as Prefect flows."""
    try:
        from carepath.simulation.demo import run_demo

        run_demo(home=home, patients=patients, days=days, seed=seed, console=out_console())
    except KeyboardInterrupt:  # before the demo's own Ctrl-C handling is in place, or raised past it: one line
        from carepath.simulation.demo import exit_now, interrupted_message

        exit_now(interrupted_message(home))


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
          portrait_events: int = typer.Option(100_000, help="events applied to patients' portraits and segments "
                                                            "for the portrait upkeep figure (0 skips it)"),
          simulate: int = typer.Option(0, "--simulate", help="patients for the simulation figure (carepath "
                                                             "simulate outpatient-visit, 90 days; 0 skips it)"),
          out: Optional[Path] = typer.Option(None, help="also write the JSON here, after every run")) -> None:
    """Messages sent per second, claims and planning on SQLite and PostgreSQL, each against the same run's floor."""
    from carepath.bench import run_bench

    run_bench([int(s) for s in sizes.split(",") if s.strip()], postgres or None,
              workers=[int(w) for w in workers.split(",") if w.strip()], batch=batch, naive_sample=naive_sample,
              latency=latency, peers=peers, as_json=json_out, console=out_console(), dispatch_max=dispatch_max,
              out=out, portrait_events=portrait_events, simulate=simulate)


def main() -> None:
    """The ``carepath`` command: from here until a command takes Ctrl-C over, it ends in one line and exit 130."""
    global _handler_before_main
    try:
        _handler_before_main = signal.signal(signal.SIGINT, _interrupted_while_starting)
    except ValueError:  # not the main thread: nothing to guard
        pass
    try:
        _mount_optional()  # imports every command group: seconds on a busy machine, and Ctrl-C may come then
        app()
    except KeyboardInterrupt:
        err_console().print("interrupted", style="yellow")
        sys.exit(int(ExitCode.INTERRUPTED))


if _before_import is not None:
    signal.signal(signal.SIGINT, _before_import)

if __name__ == "__main__":
    main()

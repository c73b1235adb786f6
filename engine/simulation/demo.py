"""``carepath demo``: a month of a hospital's outpatient care path in about a minute."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time as _time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import func, select

from carepath.config import CarepathConfig
from carepath.runtime.clock import VirtualClock
from carepath.connectors.outbox import OutboxChannel, OutboxConfig
from carepath.reporting import step_summary, step_table
from carepath.settings import Settings
from carepath.simulation.his import SHANGHAI, generate
from carepath.store.schema import Enrollment, Event, StaffTask, Touchpoint

DEMO_JOURNEY = "outpatient-visit"


def demo_channels() -> dict:
    """Simulated providers: WeChat needs an openid, SMS a phone; both fail now and then."""
    return {
        "wechat": OutboxChannel("wechat", OutboxConfig(address="openid", simulate_retryable_rate=0.03,
                                                       simulate_permanent_rate=0.02)),
        "sms": OutboxChannel("sms", OutboxConfig(address="phone", simulate_retryable_rate=0.02,
                                                 simulate_permanent_rate=0.01)),
    }


@dataclass
class DemoResult:
    database: Path
    patient_id: int
    seconds: float


def _fresh_database(home: Path) -> Path:
    path = (home / "demo.db").resolve()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return path


GRACE_SECONDS = 3.0  # after Ctrl-C, how long the flow in hand may take before the demo exits anyway


def interrupted_message(home: Path) -> str:
    """The one line a Ctrl-C of the demo ends with."""
    db_path = (home / "demo.db").resolve()
    return f"interrupted; what ran so far is in {db_path}" if db_path.exists() else "interrupted before the demo began"


def exit_now(message: str) -> None:
    """Leave at once, quietly: the ephemeral Prefect server is stopped first, carepath's state is committed."""
    server_module = sys.modules.get("prefect.server.api.server")  # never import here: the main thread may hold the lock
    for server in list(getattr(getattr(server_module, "SubprocessASGIServer", None), "_instances", {}).values()):
        if getattr(server, "server_process", None) is not None:
            server.server_process.kill()
    # straight to the terminal (file descriptor 1): a live progress display would hold console output
    for stream in (sys.stdout, sys.__stdout__):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os.write(1, (message + "\n").encode())
    os._exit(130)


@contextmanager
def _stop_on_interrupt(db_path: Path):
    """Ctrl-C lets the flow in hand finish its batch and the demo report what ran; if that takes more than
    a few seconds (Prefect's server went down with the terminal's Ctrl-C), it exits at once. No tracebacks."""
    from carepath.flows import request_stop

    interrupted = threading.Event()
    message = f"interrupted; what ran so far is in {db_path}"

    def handler(signum, frame):
        if interrupted.is_set():
            exit_now(message)
        interrupted.set()
        request_stop()
        threading.Timer(GRACE_SECONDS, exit_now, args=(message,)).start()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def _leave(engine, db_path: Path) -> None:  # noqa: ANN001 - an Engine
    engine.close()
    exit_now(f"interrupted; what ran so far is in {db_path}")


def prefect_server_url() -> str | None:
    """The Prefect server the demo's runs go to (``PREFECT_API_URL`` or the profile's), or None: ephemeral mode."""
    from prefect.settings import get_current_settings

    return os.environ.get("PREFECT_API_URL") or get_current_settings().api.url or None


def run_tags(journey) -> list[str]:  # noqa: ANN001 - a Journey
    """What a demo run is tagged with in the Prefect UI: as a served run of the journey, plus ``demo``."""
    return ["carepath", f"journey:{journey.name}", f"version:{journey.version}", "demo"]


def run_demo(*, home: Path = Path(".carepath"), patients: int = 300, days: int = 30, seed: int = 7,
             console: Console | None = None) -> DemoResult:
    """Run the built-in outpatient journey over ``days`` virtual days as Prefect flows."""
    from carepath.flows import (ephemeral_defaults, journey_flow, quiet_ephemeral_shutdown,
                                start_ephemeral_server, use_engine)

    console = console or Console()
    ephemeral_defaults()  # before Prefect is imported: its settings (the server's start-up timeout) are read then
    from prefect import tags

    server = prefect_server_url()
    started = _time.monotonic()
    db_path = _fresh_database(home)
    interrupt = ExitStack()  # from here on, Ctrl-C is the demo's (not a KeyboardInterrupt in some import)
    interrupted = interrupt.enter_context(_stop_on_interrupt(db_path))
    start = datetime.now(SHANGHAI).date()
    his = generate(patients, days, start, seed)
    from carepath.engine import Engine
    from carepath.definition.journey_files import load_journey_file
    from carepath.journeys import HERE

    journey = load_journey_file(HERE / f"{DEMO_JOURNEY}.yaml")
    clock = VirtualClock(datetime.combine(start, time(0), tzinfo=SHANGHAI))
    # the demo brings its own journey and channels: a carepath.toml in this folder is not read
    engine = Engine(f"sqlite:///{db_path}", journeys=[journey], channels=demo_channels(), templates={},
                    clock=clock, settings=Settings(home=home), config=CarepathConfig())
    engine.upsert_patients(his.patients)
    use_engine(engine)
    flow = journey_flow(journey.name)
    by_day: dict[date, list] = {}
    for ev in his.events:
        by_day.setdefault(ev.occurred_at.astimezone(SHANGHAI).date(), []).append(ev)

    if not server and not interrupted.is_set():
        with console.status("starting Prefect (ephemeral mode, ~15 s)"):
            start_ephemeral_server(home / "prefect-server.log")
    if interrupted.is_set():
        _leave(engine, db_path)
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(f"Prefect server {server}" if server else "Prefect (ephemeral mode)",
                                total=days)
        for d in range(days):
            if interrupted.is_set():  # leave from inside: a stopping progress bar would print itself first
                _leave(engine, db_path)
            day = start + timedelta(days=d)
            for ev in by_day.get(day, []):
                clock.set(ev.occurred_at)
                engine.ingest(ev)
            day_start = datetime.combine(day, time(0), tzinfo=SHANGHAI)
            with tags(*run_tags(journey)):
                flow(start=day_start, end=day_start + timedelta(hours=23, minutes=30), tick_minutes=30)
            if d == 0 and not server:
                quiet_ephemeral_shutdown()
            with engine.db.connect() as conn:
                sent = conn.execute(select(func.count()).select_from(Touchpoint)
                                    .where(Touchpoint.status.in_(("sent", "delivered")))).scalar()
            progress.update(bar, advance=1, description=f"day {d + 1:>2}/{days} {day.isoformat()}  sent {sent}")
    if interrupted.is_set():
        _leave(engine, db_path)
    with engine.db.connect() as conn:
        console.print(step_table(step_summary(conn), f"{DEMO_JOURNEY}: {patients} patients, {days} days"))
        counts = {name: conn.execute(select(func.count()).select_from(model)).scalar()
                  for name, model in [("events", Event), ("enrollments", Enrollment), ("staff tasks", StaffTask)]}
        busiest = conn.execute(select(Touchpoint.patient_id, func.count()).group_by(Touchpoint.patient_id)
                               .order_by(func.count().desc(), Touchpoint.patient_id).limit(1)).first()
    elapsed = _time.monotonic() - started
    console.print(", ".join(f"{v} {k}" for k, v in counts.items()) + f"; {elapsed:.0f} s")
    _closing_notes(console, db_path, home, busiest[0], server)
    engine.close()
    interrupt.close()
    return DemoResult(db_path, busiest[0], elapsed)


LEGEND = (
    "sent: handed to the provider; delivered: receipt confirmed; quiet hours / daily cap: deferred by quiet hours "
    "(21:00-08:00 patient time) or the daily cap of 3 messages, counted besides their final status; skipped: "
    "condition false, consent missing or too late; cancelled: the visit was cancelled or moved, or the journey "
    "ended; failed: every channel failed, so a nurse task was opened; pending: due after the last virtual day; "
    "channel '—': staff tasks and tags (no channel) or not sent yet."
)


def _closing_notes(console: Console, db_path: Path, home: Path, patient_id: int, server: str | None) -> None:
    """The legend, where staff tasks are, one patient's timeline and how to see the runs in the Prefect UI."""
    env = "" if home.resolve() == Path(".carepath").resolve() else f"CAREPATH_HOME={home} "
    console.print(LEGEND, style="dim")
    console.print(f"database: {db_path}", soft_wrap=True)
    console.print(f"staff tasks (nurse calls, failed sends):  {env}carepath tasks list --db {db_path}", soft_wrap=True)
    console.print(f"one patient's journey:  {env}carepath patients timeline {patient_id} --db {db_path}",
                  soft_wrap=True)
    if server:
        ui = server.rstrip("/").removesuffix("/api")
        console.print(f"Prefect UI: the runs are on the Prefect server at {ui}, flow {DEMO_JOURNEY}, tagged demo "
                      f"and journey:{DEMO_JOURNEY}.", soft_wrap=True)
        return
    console.print("Prefect UI: the demo ran Prefect in ephemeral mode, which keeps no runs. To watch them, start a "
                  "server with `prefect server start` (or `carepath serve`), then run "
                  "`PREFECT_API_URL=http://127.0.0.1:4200/api carepath demo` and open http://127.0.0.1:4200.")

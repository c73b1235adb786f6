"""The bench's workload: the built-in outpatient journey, synthetic patients, outbox channels, scratch databases."""

from __future__ import annotations

import os
import random
import uuid
from datetime import date, datetime, time as dtime, timedelta
from pathlib import Path
from typing import Callable
from zoneinfo import ZoneInfo

BENCH_JOURNEY = "outpatient-visit"
CHUNK = 5000
BOOKING = {"department": "内分泌科", "fasting": False}  # what the booking event would have carried
TZ = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 6, 1, 0, 0, tzinfo=TZ)
HORIZON = timedelta(days=50)
CHANNELS = ("wechat", "sms")


def journey():
    from carepath.definition.journey_files import load_journey_file
    from carepath.journeys import HERE

    return load_journey_file(HERE / f"{BENCH_JOURNEY}.yaml")


def channels() -> dict:
    from carepath.connectors.outbox import OutboxChannel, OutboxConfig

    return {"wechat": OutboxChannel("wechat", OutboxConfig(address="openid")),
            "sms": OutboxChannel("sms", OutboxConfig(address="phone"))}


def engine(url: str, home: Path, clock, worker_id: str | None = None):
    from carepath.engine import Engine
    from carepath.settings import Settings

    return Engine(url, journeys=[journey()], channels=channels(), templates={}, clock=clock,
                  settings=Settings(home=home), worker_id=worker_id)


def patients(n: int, first: int = 0) -> list:
    """``n`` distinct synthetic patients numbered from ``first`` (MRNs never repeat across calls)."""
    from carepath.definition.events import PatientIn

    rng = random.Random(first)
    return [PatientIn(mrn=f"B{i}", name="测试患者", phone=f"13{rng.randrange(10**9):09d}",
                      openid=f"oBENCH{i:08d}" if i % 3 else None, birth_date=date(1950 + i % 60, 1 + i % 12, 1),
                      conditions=["E11.9"] if i % 4 == 0 else []) for i in range(first, first + n)]


def add_patients(eng, size: int) -> list[int]:
    """Insert ``size`` patients (not timed: the bench measures planning and dispatch)."""
    ids: list[int] = []
    for i in range(0, size, CHUNK):  # distinct patients: the cap and the indexes see real sizes
        ids += eng.upsert_patients(patients(min(CHUNK, size - i), first=i))
    return ids


def bookings(ids: list[int], seed: int) -> list[tuple[int, dict]]:
    """One appointment per patient, spread over ten days of clinic hours."""
    rng = random.Random(seed)
    items = []
    for pid in ids:
        appt = datetime.combine(date(2026, 6, 3) + timedelta(days=rng.randrange(0, 10)),
                                dtime(8 + rng.randrange(0, 9), rng.choice([0, 15, 30, 45])), tzinfo=TZ)
        items.append((pid, {"appointment": appt, "visit_end": appt + timedelta(hours=1)}))
    return items


def scratch_postgres(server_url: str) -> tuple[str, Callable[[], None]] | None:
    """Create a scratch database on the server; returns its URL and a dropper, or None if unreachable."""
    from sqlalchemy import create_engine, text

    name = f"carepath_bench_{uuid.uuid4().hex[:8]}"
    url = server_url.replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception:
        return None
    base = server_url.rsplit("/", 1)[0]

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return f"{base}/{name}", drop


class Scratch:
    """A fresh database of one kind for one measurement: a new SQLite file, or a scratch PostgreSQL database."""

    def __init__(self, kind: str, home: Path, postgres: str | None) -> None:
        self.kind, self.home, self.postgres = kind, home, postgres
        self.url = ""
        self._drop: Callable[[], None] | None = None

    def __enter__(self) -> str:
        if self.kind == "sqlite":
            self.url = f"sqlite:///{self.home / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        else:
            made = scratch_postgres(self.postgres or "")
            if made is None:
                raise RuntimeError(f"PostgreSQL at {self.postgres} is not reachable")
            self.url, self._drop = made
        return self.url

    def __exit__(self, *exc) -> None:
        if self._drop is not None:
            self._drop()
        elif self.url.startswith("sqlite:///"):
            path = self.url[len("sqlite:///"):]
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages (other work on it shows here)."""
    return [round(x, 2) for x in os.getloadavg()]

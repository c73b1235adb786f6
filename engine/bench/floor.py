"""The floor: the least row work a message (or a planned touchpoint) needs, on the same database, in Python.

Dispatch floor, per message, in the dispatcher's own batch and chunk sizes, through the
driver (no SQLAlchemy, no decisions, no rendering): claim a batch (one ``UPDATE ...
RETURNING``), then per provider-call chunk a ``sending`` delivery row, the outbox row and
its id read back (what the outbox provider does), and the two status updates (delivery and
touchpoint ``sent``), each step one transaction. Planning floor: the enrollment and
touchpoint rows of the same patients, built beforehand and bulk written the way the
planner writes them (``executemany`` on SQLite, ``COPY`` on PostgreSQL).

Both run on a fresh database of the same kind, with the real schema and indexes, in the
same invocation as the figures they are compared with: a ratio to the floor is comparable
across machines and loads, a rate alone is not.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from carepath.bench.workload import START, Scratch, add_patients, engine, load_average
from carepath.runtime.bulk_writes import sqlite_time

BODY = "提醒：您的门诊时间为10:30，请按时到院签到。"


@dataclass
class Floor:
    per_s: float
    rows: int
    seconds: float
    load: list[float]
    cpu_s: float = 0.0  # this process's CPU time: on SQLite all of the work (the database runs in-process)


class _Raw:
    """A driver connection with ``?`` placeholders on both databases and explicit transactions."""

    def __init__(self, url: str) -> None:
        self.sqlite = url.startswith("sqlite")
        if self.sqlite:
            import sqlite3

            self.conn = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "cache_size=-65536"):
                self.conn.execute(f"PRAGMA {pragma}")
        else:
            import psycopg

            self.conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))

    def t(self, value: datetime):
        return sqlite_time(value) if self.sqlite else value

    def sql(self, text: str) -> str:
        return text if self.sqlite else text.replace("?", "%s")

    def begin(self) -> None:
        if self.sqlite:
            self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        if self.sqlite:
            self.conn.execute("COMMIT")
        else:
            self.conn.commit()

    def execute(self, text: str, params=()) -> list:
        cur = self.conn.cursor()
        cur.execute(self.sql(text), params)
        return cur.fetchall() if cur.description else []

    def executemany(self, text: str, rows: list) -> None:
        if rows:
            self.conn.cursor().executemany(self.sql(text), rows)

    def close(self) -> None:
        self.conn.close()


_CLAIM = ("UPDATE touchpoints SET status = 'claimed', claimed_by = ?, lease_until = ?, updated_at = ?, "
          "claims = claims + 1 WHERE id IN (SELECT id FROM touchpoints WHERE status = 'scheduled' AND due_at <= ? "
          "ORDER BY status, due_at LIMIT ?{lock}) RETURNING id, patient_id, idempotency_key")
_DELIVERY = ("INSERT INTO deliveries (touchpoint_id, attempt, channel, status, created_at, updated_at) "
             "VALUES (?, 1, 'sms', 'sending', ?, ?)")
_OUTBOX = ("INSERT INTO outbox_messages (idempotency_key, channel, patient_id, address_masked, title, body, created_at) "
           "VALUES {values} ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key, id")
_SENT_DELIVERY = ("UPDATE deliveries SET status = 'sent', provider_id = ?, updated_at = ? "
                  "WHERE touchpoint_id = ? AND attempt = 1 AND status = 'sending'")
_SENT_TOUCHPOINT = ("UPDATE touchpoints SET status = 'sent', channel = 'sms', sent_at = ?, updated_at = ?, "
                    "attempts = 1, lease_until = NULL, claims = 0 WHERE id = ? AND status = 'claimed' AND claimed_by = ?")


def _touchpoint_rows(pairs: list[tuple[int, int]], per: int, due: datetime, now: datetime) -> list[tuple]:
    from carepath.runtime.bulk_writes import COLUMNS

    rows = []
    for enrollment_id, patient_id in pairs:
        for k in range(per):
            values = dict(enrollment_id=enrollment_id, patient_id=patient_id, journey="floor", step=f"s{k}",
                          stage="pre_visit", category="transactional", action="send", occurrence="-",
                          idempotency_key=f"floor:{enrollment_id}:s{k}", anchor=None, anchor_at=None,
                          status="scheduled", planned_at=due, due_at=due + timedelta(seconds=k), reason=None,
                          attempts=0, channel_index=0, event_id=None, created_at=now, updated_at=now)
            rows.append(tuple(values[c] for c in COLUMNS))
    return rows


def _enroll(eng, pids: list[int], now: datetime) -> list[tuple[int, int]]:
    from carepath.runtime.scheduling import insert_enrollments

    pairs = []
    for i in range(0, len(pids), 5000):
        chunk = pids[i:i + 5000]
        with eng.db.begin() as conn:
            ids = insert_enrollments(conn, [(pid, "floor", "1", f"floor-{pid}", "active", "{}", json.dumps({}), now)
                                            for pid in chunk])
        pairs += list(zip(ids, chunk))
    return pairs


def analyze(raw: "_Raw") -> None:
    """Fresh statistics for the bulk-loaded tables on PostgreSQL (what autovacuum does within a minute in
    production): without them the planner takes a 40,000-row table for an empty one. Tables that start
    empty are left unanalyzed, as they would be: statistics of an empty table would make it plan scans."""
    if not raw.sqlite:
        raw.conn.execute("ANALYZE patients, enrollments, touchpoints")
        raw.conn.commit()


def dispatch_floor(kind: str, home: Path, postgres: str | None, patients: int, per_patient: int = 4,
                   batch: int = 500, chunk: int = 100) -> Floor:
    """Messages per second of the least row work per message (see the module docstring)."""
    from carepath.runtime.clock import VirtualClock
    from carepath.runtime.scheduling import insert_touchpoints

    with Scratch(kind, home, postgres) as url:
        eng = engine(url, home, VirtualClock(START))
        pairs = _enroll(eng, add_patients(eng, patients), START)
        rows = _touchpoint_rows(pairs, per_patient, START, START)
        for i in range(0, len(rows), 20000):
            with eng.db.begin() as conn:
                insert_touchpoints(conn, rows[i:i + 20000])
        eng.close()
        raw = _Raw(url)
        analyze(raw)
        now = START + timedelta(hours=1)
        claim = _CLAIM.format(lock="" if raw.sqlite else " FOR UPDATE SKIP LOCKED")
        sent = 0
        t0, cpu0 = time.perf_counter(), os.times()
        while True:
            raw.begin()
            claimed = raw.execute(claim, ("floor", raw.t(now + timedelta(minutes=5)), raw.t(now), raw.t(now), batch))
            raw.commit()
            if not claimed:
                break
            for at in range(0, len(claimed), chunk):
                part = claimed[at:at + chunk]
                raw.begin()
                raw.executemany(_DELIVERY, [(tp_id, raw.t(now), raw.t(now)) for tp_id, _, _ in part])
                raw.commit()
                raw.begin()
                values = ", ".join(["(?, 'sms', ?, '138****0000', '就诊提醒', ?, ?)"] * len(part))
                ids = dict(raw.execute(_OUTBOX.format(values=values),
                                       [v for _, pid, key in part for v in (key + ":sms", pid, BODY, raw.t(now))]))
                raw.commit()
                raw.begin()
                raw.executemany(_SENT_DELIVERY, [(f"outbox-{ids[key + ':sms']}", raw.t(now), tp_id)
                                                 for tp_id, _, key in part])
                raw.executemany(_SENT_TOUCHPOINT, [(raw.t(now), raw.t(now), tp_id, "floor") for tp_id, _, _ in part])
                raw.commit()
                sent += len(part)
        seconds, cpu1 = time.perf_counter() - t0, os.times()
        raw.close()
    return Floor(sent / seconds, sent, seconds, load_average(),
                 (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system))


def planning_floor(kind: str, home: Path, postgres: str | None, patients: int, per_patient: int = 6) -> Floor:
    """Touchpoints per second of writing already-built enrollment and touchpoint rows in bulk."""
    from carepath.runtime.clock import VirtualClock
    from carepath.runtime.scheduling import insert_enrollments, insert_touchpoints

    with Scratch(kind, home, postgres) as url:
        eng = engine(url, home, VirtualClock(START))
        pids = add_patients(eng, patients)
        enrollments = [(pid, "floor", "1", f"floor-{pid}", "active", "{}", "{}", START) for pid in pids]
        t0 = time.perf_counter()
        written = 0
        for i in range(0, len(pids), 5000):
            with eng.db.begin() as conn:
                ids = insert_enrollments(conn, enrollments[i:i + 5000])
                rows = _touchpoint_rows(list(zip(ids, pids[i:i + 5000])), per_patient, START, START)
                written += insert_touchpoints(conn, rows)
        seconds = time.perf_counter() - t0
        eng.close()
    return Floor(written / seconds, written, seconds, load_average())

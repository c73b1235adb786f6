"""Due-now wake-ups: ingest tells the dispatchers at once that it planned touchpoints due now.

A message due now (a booking confirmation, a step ``on`` an event) need not wait for the next
scheduled dispatch run. After ingest commits, :meth:`Wakeup.announce` signals the journeys
concerned: in this process through a condition variable (SQLite, and PostgreSQL too), and on
PostgreSQL to every other worker through ``NOTIFY carepath_due`` (sent after the commit, so the
touchpoints are visible to whoever wakes). Each worker's :meth:`Wakeup.listen` thread turns
notifications into the same in-process signal; ``carepath serve`` runs a due-now dispatcher per
journey that waits on it (:func:`carepath.flows.due_now_flow`).

A wake-up is only a hint: the scheduled runs still dispatch everything due, so a lost
notification (a worker restarting, the database connection dropped) delays a message to the next
run, never loses it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterable

log = logging.getLogger("carepath.wakeup")
CHANNEL = "carepath_due"
EVERY_JOURNEY = "*"


class Wakeup:
    """Per-journey wake-up signals for this process, fed by ingest here and by other workers' NOTIFY."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._waiting: set[str] = set()
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        self.listening = threading.Event()  # set while this worker LISTENs (PostgreSQL)
        self.notifications = 0  # received from the database (other workers and this one)

    def notify(self, journeys: Iterable[str]) -> None:
        """Wake this process's due-now dispatchers of ``journeys`` (``*``: every journey)."""
        names = set(journeys)
        if not names:
            return
        with self._cond:
            self._pending |= (self._waiting | {EVERY_JOURNEY}) if EVERY_JOURNEY in names else names
            self._cond.notify_all()

    def wait(self, journey: str, timeout: float) -> bool:
        """Block until ``journey`` is woken (``True``) or ``timeout`` seconds pass (``False``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._waiting.add(journey)
            while journey not in self._pending and EVERY_JOURNEY not in self._pending:
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    if journey not in self._pending and EVERY_JOURNEY not in self._pending:
                        return False
            self._pending.discard(journey)
            if not (self._waiting - {journey}) & self._pending:
                self._pending.discard(EVERY_JOURNEY)
            return True

    def announce(self, db: Any, journeys: Iterable[str]) -> None:
        """After a commit that planned touchpoints due now: wake this process, and on PostgreSQL every worker."""
        names = sorted(set(journeys))
        if not names:
            return
        self.notify(names)
        if db.dialect.name != "postgresql":
            return
        try:
            with db.connect() as conn:
                for name in names:
                    conn.exec_driver_sql("SELECT pg_notify(%s, %s)", (CHANNEL, name))
                conn.commit()
        except Exception as exc:  # a hint only: the scheduled run still sends it
            log.warning("could not notify other workers of due-now work (%s); the next scheduled run sends it",
                        type(exc).__name__)

    def listen(self, url: str) -> None:
        """Turn other workers' notifications into wake-ups here (PostgreSQL; a daemon thread, reconnecting)."""
        if self._listener is not None or not url.startswith("postgresql"):
            return
        self._stop.clear()
        self._listener = threading.Thread(target=self._listen, args=(url,), name="due-now-listener", daemon=True)
        self._listener.start()

    def _listen(self, url: str) -> None:
        import psycopg

        dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
        delay = 0.1
        while not self._stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()  # (what was announced while not listening, the scheduled runs send)
                    delay = 0.1
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self.notifications += 1
                            self.notify([note.payload or EVERY_JOURNEY])
            except Exception as exc:  # the database restarting: listen again once it is back
                self.listening.clear()
                log.warning("due-now listener lost its connection (%s); listening again", type(exc).__name__)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
            self._listener = None

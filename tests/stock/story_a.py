"""A patient story for the stock-journey tests: the shipped journey file on an engine with a virtual clock,
recording ``wechat`` and ``sms`` channels, and the maintenance jobs a server runs, day by day (no Prefect)."""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator
from zoneinfo import ZoneInfo

from carepath.definition.events import PatientIn
from carepath.definition.journey_files import load_journey_file
from carepath.runtime.horizon import extend_horizons
from carepath.runtime.idle import plan_idle
from carepath.runtime.segments import refresh_time_edges
from tests.engine import helpers as h

SHANGHAI = ZoneInfo("Asia/Shanghai")
STOCK = Path(__file__).resolve().parents[2] / "journeys"
DAY = timedelta(days=1)
#: the local times of a day the story runs the dispatcher (a server runs it continuously)
TICKS = (time(7, 31), time(8, 1), time(9, 1), time(10, 1), time(11, 1), time(15, 1), time(18, 31), time(20, 1))


def stock_journey(name: str) -> Any:
    """The shipped journey ``journeys/NAME.yaml``, loaded as carepath loads it."""
    return load_journey_file(STOCK / f"{name}.yaml")


def at_local(day: date, t: time) -> datetime:
    return datetime.combine(day, t, tzinfo=SHANGHAI).astimezone(timezone.utc)


class Story:
    """Drives an engine through patient-local days and reads back what came out."""

    def __init__(self, engine: Any, clock: Any) -> None:
        self.engine = engine
        self.clock = clock
        self.start = clock.now().astimezone(SHANGHAI).date()
        self.ids: dict[str, int] = {}

    def events(self, mrn: str) -> h.Events:
        return h.Events(self.clock, mrn=mrn)

    def grant_marketing(self, *mrns: str) -> None:
        """These patients consent to marketing messages (community invitations, recipes, greetings)."""
        for mrn in mrns:
            self.engine.ingest(self.events(mrn)("consent.changed", {"purpose": "marketing", "granted": True}))

    def at(self, day: int, t: time) -> None:
        """Move the clock to ``t`` on day ``day`` of the story (day 0 is the day it starts)."""
        self.clock.set(at_local(self.start + day * DAY, t))

    def maintain(self) -> None:
        """The maintenance jobs that plan ahead: horizons, segments, idle patients."""
        extend_horizons(self.engine)
        refresh_time_edges(self.engine)
        plan_idle(self.engine)

    def run_days(self, first: int, last: int, script: dict[tuple[int, time], Callable[[], Any]] | None = None,
                 ticks: tuple[time, ...] = TICKS) -> None:
        """Days ``first``..``last``: the maintenance jobs and the dispatcher at each tick; ``script`` holds
        what happens at a (day, local time) of the story (a reply, a reading), run just before that tick."""
        script = script or {}
        for day in range(first, last + 1):
            moments = [t for t in sorted(set(ticks) | {t for d, t in script if d == day})
                       if at_local(self.start + day * DAY, t) > self.clock.now()]  # never back in time
            for t in moments:
                self.at(day, t)
                self.maintain()
                if (day, t) in script:
                    script[(day, t)]()
                self.engine.dispatch_due()

    def day_of(self, when: datetime) -> int:
        return (when.astimezone(SHANGHAI).date() - self.start).days

    def sent(self, mrn: str | None = None) -> dict[int, list[tuple[str, str | None]]]:
        """Sent messages by story day: (step, recipient) in time order, for one patient or all."""
        pid = self.patient_id(mrn) if mrn else None
        out: dict[int, list[tuple[str, str | None]]] = defaultdict(list)
        rows = [r for r in h.touchpoints(self.engine) if r.action == "send" and r.sent_at is not None
                and (pid is None or r.patient_id == pid)]
        for r in sorted(rows, key=lambda r: (r.sent_at, r.id)):
            out[self.day_of(r.sent_at)].append((r.step, r.recipient))
        return dict(out)

    def steps_sent(self, mrn: str, step: str) -> list[int]:
        """The story days on which ``step`` sent a message to the patient (not to the family)."""
        return sorted(d for d, items in self.sent(mrn).items() for s, rcpt in items
                      if s == step and not (rcpt or "").startswith("rp:"))

    def tasks(self, mrn: str | None = None) -> list[Any]:
        pid = self.patient_id(mrn) if mrn else None
        return [t for t in h.staff_tasks(self.engine) if pid is None or t.patient_id == pid]

    def texts(self, channel: str = "sms") -> list[str]:
        return [m.body for m in getattr(self.engine, channel).messages]

    def patient(self, record: PatientIn) -> int:
        """Register a patient (as the HIS would); the story remembers their id by MRN."""
        self.ids[record.mrn] = self.engine.upsert_patient(record)
        return self.ids[record.mrn]

    def patient_id(self, mrn: str) -> int:
        return self.ids[mrn]


@contextmanager
def story(database_url: str, settings: Any, clock: Any, *names: str) -> Iterator[Story]:
    """The stock journeys ``names`` running on an engine with recording ``wechat`` (openid) and ``sms``
    channels (``engine.wechat``, ``engine.sms``)."""
    wechat = h.RecordingChannel("wechat", address_kind="openid")
    sms = h.RecordingChannel("sms")
    journeys = [stock_journey(n) for n in names]
    engine = h.make_engine(database_url, settings, clock, journeys, {"wechat": wechat, "sms": sms})
    engine.wechat, engine.sms = wechat, sms
    try:
        yield Story(engine, clock)
    finally:
        engine.close()

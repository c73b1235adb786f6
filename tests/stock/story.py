"""A patient story for the stock-journey tests: the shipped journey files on an engine with a virtual clock,
recording ``wechat`` (openid) and ``sms`` channels, and the maintenance jobs a server runs (no Prefect).

The clock moves in one of two ways: :meth:`Story.run_days` visits fixed local times of each day (the
maintenance jobs, then the dispatcher), :meth:`Story.run_until` goes from one due touchpoint to the next (the
rolling horizon planned each local midnight). What came out is read back by story day (day 0 is the day the
story starts): the steps sent per patient (:meth:`Story.sent`), the messages with their template, address and
local time (:meth:`Story.messages`, :meth:`Story.days`), and staff tasks (:meth:`Story.tasks` rows,
:meth:`Story.task_log` summaries).
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from carepath.definition.events import PatientIn
from carepath.definition.journey_files import load_journey_file
from carepath.runtime.family import missing_guardian_tasks
from carepath.runtime.horizon import extend_horizons
from carepath.runtime.idle import plan_idle
from carepath.runtime.segments import refresh_time_edges
from carepath.store.schema import Touchpoint
from tests.engine import helpers as h

SHANGHAI = ZoneInfo("Asia/Shanghai")
STOCK = Path(__file__).resolve().parents[2] / "journeys"
DAY = timedelta(days=1)
#: the local times of a day :meth:`Story.run_days` runs the dispatcher (a server runs it continuously)
TICKS = (time(7, 31), time(8, 1), time(9, 1), time(10, 1), time(11, 1), time(15, 1), time(18, 31), time(20, 1))


def stock_journey(name: str) -> Any:
    """The shipped journey ``journeys/NAME.yaml``, loaded as carepath loads it."""
    return load_journey_file(STOCK / f"{name}.yaml")


def at_local(day: date, t: time) -> datetime:
    return datetime.combine(day, t, tzinfo=SHANGHAI).astimezone(timezone.utc)


@dataclass(frozen=True)
class Sent:
    """One message that went out: the patient-local day and time, its template, to whom."""

    day: date
    at: str
    template: str
    address: str
    body: str


class StoryChannel(h.RecordingChannel):
    """A recording channel that also notes the patient-local time of each send."""

    def __init__(self, name: str, clock: Any, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.clock = clock
        self.sent_at: list[tuple[datetime, Any]] = []

    def send(self, message: Any) -> Any:
        result = super().send(message)
        if result.ok:
            self.sent_at.append((self.clock.now().astimezone(SHANGHAI), message))
        return result


class Story:
    """Drives an engine through patient-local days and reads back what came out; see the module docstring."""

    def __init__(self, engine: Any, clock: Any, channels: dict[str, StoryChannel]) -> None:
        self.engine = engine
        self.clock = clock
        self.channels = channels
        self.start = self.local(clock.now()).date()
        self.ids: dict[str, int] = {}

    # ------------------------------------------------------------ time

    @staticmethod
    def local(when: datetime) -> datetime:
        return when.astimezone(SHANGHAI)

    def when(self, day: int, hh: int, mm: int = 0) -> datetime:
        """The UTC instant of ``hh:mm`` Shanghai time on day ``day`` of the story."""
        return at_local(self.start + day * DAY, time(hh, mm))

    def at(self, day: int, t: time) -> None:
        """Move the clock to ``t`` on day ``day`` of the story."""
        self.clock.set(at_local(self.start + day * DAY, t))

    def day_of(self, when: datetime) -> int:
        return (self.local(when).date() - self.start).days

    # ------------------------------------------------------------ people and events

    def patient(self, mrn: str, **fields: Any) -> int:
        """Register a patient (as the HIS would); the story remembers their id by MRN."""
        self.ids[mrn] = self.engine.upsert_patient(PatientIn(mrn=mrn, **fields))
        return self.ids[mrn]

    def patient_id(self, mrn: str) -> int:
        return self.ids[mrn]

    def events(self, mrn: str) -> h.Events:
        """Events of the patient at the clock's time, to ingest as they are (nothing dispatched)."""
        return h.Events(self.clock, mrn=mrn)

    def event(self, mrn: str, type_: str, payload: dict | None = None) -> Any:
        """Ingest an event now (the clock's time) and send what it made due."""
        result = self.engine.ingest(self.events(mrn)(type_, payload))
        self._dispatch()
        return result

    def relative(self, mrn: str, ref: str, relationship: str, phone: str, name: str, *, guardian: bool = False) -> None:
        self.event(mrn, "patient.related_person_added", {"ref": ref, "relationship": relationship,
                                                           "guardian": guardian,
                                                           "contact": {"name": name, "phone": phone}})

    def grant_marketing(self, *mrns: str) -> None:
        """These patients consent to marketing messages (community invitations, recipes, greetings)."""
        for mrn in mrns:
            self.engine.ingest(self.events(mrn)("consent.changed", {"purpose": "marketing", "granted": True}))

    # ------------------------------------------------------------ running

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

    def run_until(self, until: datetime) -> None:
        """Move the clock to ``until``: the horizon planned each local midnight, each due touchpoint sent on time."""
        while self.clock.now() < until:
            now = self.clock.now()
            midnight = self.local(now).replace(hour=0, minute=0, second=0, microsecond=0) + DAY
            step = min(until, midnight.astimezone(timezone.utc))
            due = self._next_due()
            if due is not None:
                due = due if due.tzinfo else due.replace(tzinfo=timezone.utc)
                if now < due < step:
                    step = due
            self.clock.set(step)
            if step == midnight:
                extend_horizons(self.engine)
            self._dispatch()

    def _dispatch(self) -> None:
        self.engine.dispatch_due()
        for _ in range(5):  # the copies for further recipients (guardians, family) fall due at once
            if not self._due_now():
                break
            self.engine.dispatch_due()
        missing_guardian_tasks(self.engine)  # the maintenance job that asks staff for a missing guardian

    def _due_now(self) -> bool:
        with self.engine.db.connect() as conn:
            n = conn.execute(select(func.count()).select_from(Touchpoint).where(
                Touchpoint.status == "scheduled", Touchpoint.due_at <= self.clock.now())).scalar_one()
        return n > 0

    def _next_due(self) -> datetime | None:
        with self.engine.db.connect() as conn:
            return conn.execute(select(func.min(Touchpoint.due_at)).where(Touchpoint.status == "scheduled")).scalar()

    # ------------------------------------------------------------ reading back

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

    def messages(self) -> list[Sent]:
        """Every message the channels sent, by patient-local day and time."""
        out = [Sent(at.date(), at.strftime("%H:%M"), m.template, m.address, m.body)
               for channel in self.channels.values() for at, m in channel.sent_at]
        return sorted(out, key=lambda s: (s.day, s.at, s.template, s.address))

    def days(self) -> dict[int, list[tuple[str, str]]]:
        """Story day -> [(template, address)] of the messages sent that day."""
        out: dict[int, list[tuple[str, str]]] = {}
        for s in self.messages():
            out.setdefault((s.day - self.start).days, []).append((s.template, s.address))
        return out

    def texts(self, channel: str = "sms") -> list[str]:
        return [m.body for m in self.channels[channel].messages]

    def tasks(self, mrn: str | None = None) -> list[Any]:
        """Staff task rows, of one patient or all."""
        pid = self.patient_id(mrn) if mrn else None
        return [t for t in h.staff_tasks(self.engine) if pid is None or t.patient_id == pid]

    def task_log(self) -> list[dict[str, Any]]:
        """Staff tasks: story day opened, kind, team, priority, hours to the SLA, status, detail."""
        out = []
        for t in self.tasks():
            sla = (t.sla_due_at - t.created_at).total_seconds() / 3600 if t.sla_due_at else None
            out.append({"day": self.day_of(t.created_at), "kind": t.kind, "team": t.team,
                        "priority": t.priority, "sla_hours": sla, "status": t.status, "detail": t.detail})
        return out


@contextmanager
def story(database_url: str, settings: Any, clock: Any, *names: str, **kw: Any) -> Iterator[Story]:
    """The stock journeys ``journeys/<name>.yaml`` running on an engine (``kw`` goes to the engine) with the
    recording channels ``engine.wechat`` and ``engine.sms``."""
    channels = {"wechat": StoryChannel("wechat", clock, address_kind="openid"), "sms": StoryChannel("sms", clock)}
    engine = h.make_engine(database_url, settings, clock, [stock_journey(n) for n in names], channels, **kw)
    engine.wechat, engine.sms = channels["wechat"], channels["sms"]
    try:
        yield Story(engine, clock, channels)
    finally:
        engine.close()

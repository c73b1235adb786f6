"""A patient story for the stock journey tests (stockB's journeys): the engine with a virtual clock, no Prefect.

``Story`` runs one stock journey from ``journeys/`` with recording ``wechat`` and ``sms`` channels, ingests
events, and moves the clock forward the way ``carepath serve`` would: the maintenance job plans the rolling
horizon once a simulated day, the dispatcher sends whatever falls due. What came out is read back by
patient-local day: messages (template, recipient address) and staff tasks (kind, team, SLA).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from carepath.definition.events import PatientIn
from carepath.definition.journey_files import load_journey_file
from carepath.runtime.family import missing_guardian_tasks
from carepath.runtime.horizon import extend_horizons
from carepath.store.schema import Touchpoint
from tests.engine import helpers as h

SHANGHAI = ZoneInfo("Asia/Shanghai")
JOURNEYS = Path(__file__).resolve().parents[2] / "journeys"


@dataclass(frozen=True)
class Sent:
    """One message that went out: the patient-local day and time, its template, to whom."""

    day: date
    at: str
    template: str
    address: str
    body: str


class Story:
    """One stock journey's engine, a patient and the clock; see the module docstring."""

    def __init__(self, engine: Any, clock: Any, channels: dict[str, StoryChannel]) -> None:
        self.engine = engine
        self.clock = clock
        self.channels = channels
        self.start = self.local(clock.now()).date()

    @staticmethod
    def local(when: datetime) -> datetime:
        return when.astimezone(SHANGHAI)

    def when(self, day: int, hh: int, mm: int = 0) -> datetime:
        """The UTC instant of ``hh:mm`` Shanghai time on day ``day`` of the story (day 0 is the first)."""
        d = self.start + timedelta(days=day)
        return datetime(d.year, d.month, d.day, hh, mm, tzinfo=SHANGHAI).astimezone(timezone.utc)

    def patient(self, mrn: str, **fields: Any) -> None:
        self.engine.upsert_patient(PatientIn(mrn=mrn, **fields))

    def relative(self, mrn: str, ref: str, relationship: str, phone: str, name: str, *, guardian: bool = False) -> None:
        self.event(mrn, "patient.related_person_added", {"ref": ref, "relationship": relationship,
                                                           "guardian": guardian,
                                                           "contact": {"name": name, "phone": phone}})

    def event(self, mrn: str, type_: str, payload: dict | None = None) -> Any:
        """Ingest an event now (the clock's time) and send what it made due."""
        result = self.engine.ingest(h.Events(self.clock, mrn=mrn)(type_, payload))
        self._dispatch()
        return result

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

    def run_until(self, until: datetime) -> None:
        """Move the clock to ``until``: the horizon planned each local midnight, each due touchpoint sent on time."""
        while self.clock.now() < until:
            now = self.clock.now()
            midnight = self.local(now).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
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

    def sent(self) -> list[Sent]:
        """Every message sent, by patient-local day and time."""
        out = [Sent(at.date(), at.strftime("%H:%M"), m.template, m.address, m.body)
               for channel in self.channels.values() for at, m in channel.sent_at]
        return sorted(out, key=lambda s: (s.day, s.at, s.template, s.address))

    def days(self) -> dict[int, list[tuple[str, str]]]:
        """Story day -> [(template, address)] of the messages sent that day."""
        out: dict[int, list[tuple[str, str]]] = {}
        for s in self.sent():
            out.setdefault((s.day - self.start).days, []).append((s.template, s.address))
        return out

    def tasks(self) -> list[dict[str, Any]]:
        """Staff tasks: story day opened, kind, team, priority, hours to the SLA, status."""
        out = []
        for t in h.staff_tasks(self.engine):
            created = self.local(t.created_at)
            sla = (t.sla_due_at - t.created_at).total_seconds() / 3600 if t.sla_due_at else None
            out.append({"day": (created.date() - self.start).days, "kind": t.kind, "team": t.team,
                        "priority": t.priority, "sla_hours": sla, "status": t.status, "detail": t.detail})
        return out


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


@contextmanager
def story(database_url: str, settings: Any, clock: Any, name: str, **kw: Any) -> Iterator[Story]:
    """A :class:`Story` running the stock journey ``journeys/<name>.yaml``."""
    journey = load_journey_file(JOURNEYS / f"{name}.yaml")
    channels = {"wechat": StoryChannel("wechat", clock, address_kind="openid"), "sms": StoryChannel("sms", clock)}
    engine = h.make_engine(database_url, settings, clock, [journey], channels, **kw)
    try:
        yield Story(engine, clock, channels)
    finally:
        engine.close()

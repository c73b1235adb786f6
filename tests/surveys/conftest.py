"""A patient who was seen, discharged and sent the day-7 survey link of the stock outpatient journey."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from carepath.config import CarepathConfig
from carepath.definition.events import EventIn
from carepath.definition.journey_files import load_journey_file
from carepath.journeys import journey_files
from carepath.teams import StaffMember, SurveySettings, TeamConfig
from tests.engine import helpers as h
from tests.live_app import LiveApp, plugin_app

SH = timezone(timedelta(hours=8))
STAFF_TOKEN = "wang-li-login-token-for-tests"


def config() -> CarepathConfig:
    return CarepathConfig(
        teams={"patient_service": TeamConfig(escalation=["service_desk", "service_manager", "vice_president"],
                                             first_response=timedelta(hours=2)),
               "nursing": TeamConfig(escalation=["nurse", "head_nurse"])},
        staff={"wang-li": StaffMember(team="patient_service", role="nurse", token=STAFF_TOKEN)},
        surveys=SurveySettings(base_url="http://survey.example"))


@dataclass
class Visit:
    engine: Any
    channel: h.RecordingChannel
    clock: Any

    def invite(self, mrn: str = "MRN-S1", appointment: str = "A1") -> str:
        """Book, discharge and run to the survey 24 hours after the visit; returns the link's token."""
        start = datetime(2026, 5, 2, 9, 0, tzinfo=SH)
        self.clock.set(start - timedelta(days=1))  # each patient's story from its booking (several per test)
        events = h.Events(self.clock, mrn)
        patient = {"name": "李四", "phone": "13912345678", "birth_date": "1960-03-04"}
        self.engine.ingest(events("appointment.booked", {"appointment_id": appointment, "start": start.isoformat(),
                                                         "department": "心内科", "patient": patient},
                                  occurred_at=start - timedelta(days=1)))
        self.engine.ingest(events("encounter.discharged", {"appointment_id": appointment},
                                  occurred_at=start + timedelta(hours=1)))
        for day in (datetime(2026, 5, 2, 8, 5, tzinfo=SH), datetime(2026, 5, 3, 10, 5, tzinfo=SH),
                    datetime(2026, 5, 5, 10, 5, tzinfo=SH)):  # the visit, the survey a day later, the day-3 follow-up
            self.clock.set(day)
            self.engine.dispatch_due()
        links = [m.body for m in self.channel.messages if "/s/" in m.body]
        assert links, [(t.step, t.status, t.reason, t.due_at) for t in h.touchpoints(self.engine)]
        return re.search(r"http://survey\.example/s/(\S+)", links[-1]).group(1)


@pytest.fixture
def visit(database_url, settings, clock) -> Visit:
    stock = [load_journey_file(path) for path in journey_files()]
    wechat = h.RecordingChannel("wechat", address_kind="none")
    engine = h.make_engine(database_url, settings, clock, stock, {"wechat": wechat}, config=config(),
                           connectors={})
    return Visit(engine, wechat, clock)


@pytest.fixture
def live(visit):
    with LiveApp(plugin_app(visit.engine)) as running:
        yield running


def ingest(engine: Any, kind: str, mrn: str, at: datetime, **payload: Any) -> Any:
    return engine.ingest(EventIn(type=kind, source="test", source_id=f"{kind}:{at.isoformat()}", patient_mrn=mrn,
                                 occurred_at=at, payload=payload))

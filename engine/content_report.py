"""``carepath report content``: which content works, per template and per segment.

For messages sent in a date range: how many were sent, delivered (a provider receipt),
clicked (a tracked link opened, :mod:`carepath.runtime.clicks`) and replied to (a reply
from the patient within :data:`REPLY_WINDOW` of the message, counted for the latest
message before it). Every rate is of the messages sent and comes with its numerator and
denominator. A patient counts in a segment for the messages sent while they were in it.
Lines of sensitive segments with fewer patients than the minimum group size are withheld.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import Connection, select

from carepath.definition.model import Journey, Send
from carepath.definition.segments import SegmentSet
from carepath.store.schema import Enrollment, Event, JourneyVersion, SegmentMember, Touchpoint

REPLY_WINDOW = timedelta(hours=72)
ALL = ""  # the segment of the line over every patient


@dataclass
class ContentLine:
    template: str
    title: str
    segment: str = ALL
    sent: int = 0
    delivered: int = 0
    clicked: int = 0
    replied: int = 0
    patients: set[int] = field(default_factory=set, repr=False)
    suppressed: bool = False

    def rate(self, n: int) -> float | None:
        return round(100 * n / self.sent, 1) if self.sent else None

    def as_dict(self) -> dict[str, Any]:
        if self.suppressed:
            return {"template": self.template, "title": self.title, "segment": self.segment, "suppressed": True}
        return {"template": self.template, "title": self.title, "segment": self.segment, "sent": self.sent,
                "delivered": self.delivered, "delivery_rate": self.rate(self.delivered), "clicked": self.clicked,
                "click_rate": self.rate(self.clicked), "replied": self.replied,
                "reply_rate": self.rate(self.replied), "patients": len(self.patients), "suppressed": False}


@dataclass
class ContentReport:
    start: datetime
    end: datetime
    lines: list[ContentLine]

    def overall(self) -> list[ContentLine]:
        return [line for line in self.lines if line.segment == ALL]

    def as_dict(self) -> dict[str, Any]:
        return {"since": self.start.isoformat(), "until": self.end.isoformat(),
                "reply_window_hours": REPLY_WINDOW.total_seconds() / 3600,
                "lines": [line.as_dict() for line in self.lines]}


def _templates(conn: Connection, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str, str], tuple[str, str]]:
    """``(journey, version, step) -> (template, title)`` from the stored journey versions."""
    out: dict[tuple[str, str, str], tuple[str, str]] = {}
    for name, version in set(pairs):
        definition = conn.execute(select(JourneyVersion.definition).where(
            JourneyVersion.journey == name, JourneyVersion.version == version)).scalar()
        if definition is None:
            continue
        try:
            journey = Journey.model_validate(definition)
        except ValueError:
            continue
        for step in journey.steps:
            if isinstance(step.action, Send):
                template = journey.templates.get(step.action.template)
                out[(name, version, step.id)] = (step.action.template,
                                                 (template.title if template and template.title else "") or
                                                 step.action.template)
    return out


def _reply_credit(conn: Connection, sent: list[Any], end: datetime) -> set[int]:
    """Touchpoints replied to: each reply counts for the latest message sent to its patient before it."""
    by_patient: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    for tp in sent:
        by_patient[tp.patient_id].append((tp.sent_at, tp.id))
    for times in by_patient.values():
        times.sort()
    replied: set[int] = set()
    ids = list(by_patient)
    first = min(tp.sent_at for tp in sent)
    for start in range(0, len(ids), 5000):
        for pid, at in conn.execute(select(Event.patient_id, Event.occurred_at).where(
                Event.type == "message.replied", Event.patient_id.in_(ids[start:start + 5000]),
                Event.occurred_at >= first, Event.occurred_at <= end + REPLY_WINDOW)):
            times = by_patient[pid]
            i = bisect.bisect_right(times, (at, float("inf"))) - 1
            if i >= 0 and at - times[i][0] <= REPLY_WINDOW:
                replied.add(times[i][1])
    return replied


def _clicked(conn: Connection, ids: set[int], start: datetime) -> set[int]:
    found = set()
    for (payload,) in conn.execute(select(Event.payload).where(Event.type == "message.clicked",
                                                               Event.occurred_at >= start)):
        tp = (payload or {}).get("touchpoint_id")
        if tp in ids:
            found.add(tp)
    return found


def _stays(conn: Connection, patients: list[int]) -> dict[int, list[tuple[str, datetime, datetime | None]]]:
    out: dict[int, list] = defaultdict(list)
    for start in range(0, len(patients), 5000):
        for r in conn.execute(select(SegmentMember.patient_id, SegmentMember.segment, SegmentMember.entered_at,
                                     SegmentMember.left_at).where(
                SegmentMember.patient_id.in_(patients[start:start + 5000]))):
            out[r.patient_id].append((r.segment, r.entered_at, r.left_at))
    return out


def content_report(conn: Connection, start: datetime, end: datetime, segments: SegmentSet,
                   by_segment: bool = True) -> ContentReport:
    """Figures per template (and per template and segment) for messages sent in ``[start, end)``."""
    sent = conn.execute(select(Touchpoint.id, Touchpoint.patient_id, Touchpoint.journey, Touchpoint.step,
                               Touchpoint.status, Touchpoint.sent_at, Enrollment.version)
                        .join(Enrollment, Enrollment.id == Touchpoint.enrollment_id)
                        .where(Touchpoint.action == "send", Touchpoint.sent_at >= start, Touchpoint.sent_at < end,
                               Touchpoint.channel.is_not(None))).all()
    if not sent:
        return ContentReport(start, end, [])
    names = _templates(conn, [(tp.journey, tp.version) for tp in sent])
    clicked = _clicked(conn, {tp.id for tp in sent}, start)
    replied = _reply_credit(conn, sent, end)
    stays = _stays(conn, sorted({tp.patient_id for tp in sent})) if by_segment else {}
    lines: dict[tuple[str, str], ContentLine] = {}
    for tp in sent:
        template, title = names.get((tp.journey, tp.version, tp.step), (f"{tp.journey}/{tp.step}", tp.step))
        groups = [ALL] + [seg for seg, entered, left in stays.get(tp.patient_id, ())
                          if entered <= tp.sent_at and (left is None or tp.sent_at < left)]
        for group in groups:
            line = lines.setdefault((template, group), ContentLine(template, title, group))
            line.sent += 1
            line.delivered += tp.status == "delivered"
            line.clicked += tp.id in clicked
            line.replied += tp.id in replied
            line.patients.add(tp.patient_id)
    for line in lines.values():
        seg = segments.segments.get(line.segment)
        line.suppressed = bool(seg and seg.sensitive and len(line.patients) < segments.min_group_size)
    ordered = sorted(lines.values(), key=lambda ln: (ln.template, ln.segment != ALL, ln.segment))
    return ContentReport(start, end, ordered)

"""``carepath report surveys``: response rate, satisfaction and NPS per journey and step; task SLA compliance."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Iterable

from sqlalchemy import Connection, func, select

from carepath.definition.model import Journey, Survey
from carepath.store.schema import StaffTask, SurveyResponse, Touchpoint


@dataclass
class SurveyLine:
    """One journey step's survey figures (or the total, with ``step`` empty)."""

    journey: str
    step: str
    invited: int = 0
    responses: int = 0
    promoters: int = 0
    passives: int = 0
    detractors: int = 0
    satisfaction_sum: float = 0.0
    satisfaction_n: int = 0

    @property
    def response_rate(self) -> float | None:
        return round(100 * self.responses / self.invited, 1) if self.invited else None

    @property
    def rated(self) -> int:
        return self.promoters + self.passives + self.detractors

    def share(self, n: int) -> float | None:
        return round(100 * n / self.rated, 1) if self.rated else None

    @property
    def nps(self) -> float | None:
        """% promoters − % detractors, −100..100."""
        return round(100 * (self.promoters - self.detractors) / self.rated, 1) if self.rated else None

    @property
    def satisfaction(self) -> float | None:
        return round(self.satisfaction_sum / self.satisfaction_n, 2) if self.satisfaction_n else None

    def as_dict(self) -> dict:
        return {"journey": self.journey, "step": self.step, "invited": self.invited, "responses": self.responses,
                "response_rate": self.response_rate, "satisfaction": self.satisfaction, "nps": self.nps,
                "promoters": self.share(self.promoters), "passives": self.share(self.passives),
                "detractors": self.share(self.detractors), "rated": self.rated}


@dataclass
class TaskLine:
    team: str
    kind: str
    total: int = 0
    closed: int = 0
    within_sla: int = 0
    breached: int = 0

    @property
    def compliance(self) -> float | None:
        decided = self.within_sla + self.breached
        return round(100 * self.within_sla / decided, 1) if decided else None


@dataclass
class SurveyReport:
    since: datetime
    until: datetime
    lines: list[SurveyLine] = field(default_factory=list)
    total: SurveyLine = field(default_factory=lambda: SurveyLine("all", ""))
    tasks: list[TaskLine] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"since": self.since.isoformat(), "until": self.until.isoformat(),
                "surveys": [line.as_dict() for line in self.lines], "total": self.total.as_dict(),
                "tasks": [dict(asdict(t), compliance=t.compliance) for t in self.tasks]}


def survey_steps(journeys: Iterable[Journey]) -> set[tuple[str, str]]:
    """(journey, step) of every survey step."""
    return {(j.name, s.id) for j in journeys for s in j.steps if isinstance(s.action, Survey)}


def survey_report(conn: Connection, journeys: Iterable[Journey], since: datetime, until: datetime) -> SurveyReport:
    """Invitations sent and responses received in ``[since, until)``, by journey and step."""
    report = SurveyReport(since, until)
    lines: dict[tuple[str, str], SurveyLine] = {}
    steps = survey_steps(journeys)

    def line(journey: str | None, step: str | None) -> SurveyLine:
        key = (journey or "(no journey)", step or "(no step)")
        return lines.setdefault(key, SurveyLine(*key))

    sent = conn.execute(select(Touchpoint.journey, Touchpoint.step, func.count()).where(
        Touchpoint.sent_at >= since, Touchpoint.sent_at < until,
        Touchpoint.status.in_(("sent", "delivered"))).group_by(Touchpoint.journey, Touchpoint.step)).all()
    for journey, step, n in sent:
        if (journey, step) in steps:
            line(journey, step).invited += n
    for r in conn.execute(select(SurveyResponse.journey, SurveyResponse.step, SurveyResponse.nps,
                                 SurveyResponse.satisfaction).where(SurveyResponse.received_at >= since,
                                                                    SurveyResponse.received_at < until)):
        target = line(r.journey, r.step)
        target.responses += 1
        if r.nps is not None:
            if r.nps >= 9:
                target.promoters += 1
            elif r.nps >= 7:
                target.passives += 1
            else:
                target.detractors += 1
        if r.satisfaction is not None:
            target.satisfaction_sum += r.satisfaction
            target.satisfaction_n += 1
    report.lines = sorted(lines.values(), key=lambda x: (x.journey, x.step))
    for x in report.lines:
        for name in ("invited", "responses", "promoters", "passives", "detractors", "satisfaction_sum",
                     "satisfaction_n"):
            setattr(report.total, name, getattr(report.total, name) + getattr(x, name))
    report.tasks = _task_lines(conn, since, until)
    return report


def _task_lines(conn: Connection, since: datetime, until: datetime) -> list[TaskLine]:
    """Tasks opened in the range: closed within their SLA, or breached (escalated, or still open past due)."""
    now_rows = conn.execute(select(StaffTask.team, StaffTask.kind, StaffTask.status, StaffTask.escalation_level,
                                   StaffTask.escalated_at, StaffTask.closed_at, StaffTask.sla_due_at).where(
        StaffTask.created_at >= since, StaffTask.created_at < until)).all()
    lines: dict[tuple[str, str], TaskLine] = {}
    for r in now_rows:
        t = lines.setdefault((r.team, r.kind), TaskLine(r.team, r.kind))
        t.total += 1
        if r.status == "cancelled":
            continue
        breached = r.escalated_at is not None
        if r.closed_at is not None:
            t.closed += 1
            if breached or (r.sla_due_at is not None and r.closed_at > r.sla_due_at):
                t.breached += 1
            else:
                t.within_sla += 1
        elif breached:
            t.breached += 1
    return sorted(lines.values(), key=lambda x: (x.team, x.kind))

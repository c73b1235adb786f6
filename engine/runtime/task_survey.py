"""What the patient said and scored, for a task a survey answer opened (a complaint after a low score).

A journey opens such a task on ``survey.completed`` (``when: event.nps_category == 'detractor'``), or the
answer opened a complaint case (``detractor: complaint_case``) whose source names the event: the task's
touchpoint (or its case) names that event, the event names the stored response, and the response holds every
answer as a FHIR QuestionnaireResponse. The staff page and ``carepath tasks show`` put them beside the
task, so whoever calls the patient back knows what was said.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from carepath.store.personal_data import reveal_payload
from carepath.store.schema import Event, StaffTask, SurveyResponse, Touchpoint

if TYPE_CHECKING:
    from carepath.engine import Engine


@dataclass(frozen=True)
class SurveyAnswers:
    """One answered survey: its scores and each question with the answer given (as text)."""

    survey: str
    received_at: datetime
    nps: int | None
    satisfaction: float | None
    red_flags: list[str] = field(default_factory=list)
    answers: list[tuple[str, str]] = field(default_factory=list)  # (question, answer)

    def to_json(self) -> dict[str, Any]:
        return {"survey": self.survey, "received_at": self.received_at.isoformat(), "nps": self.nps,
                "satisfaction": self.satisfaction, "red_flags": self.red_flags,
                "answers": [{"question": q, "answer": a} for q, a in self.answers]}


def answer_text(answer: dict[str, Any]) -> str:
    """One FHIR answer as people read it: the number, yes or no, the option's label, the text."""
    if "valueBoolean" in answer:
        return "yes" if answer["valueBoolean"] else "no"
    if "valueCoding" in answer:
        coding = answer["valueCoding"]
        return str(coding.get("display") or coding.get("code", ""))
    for key in ("valueInteger", "valueDecimal", "valueString", "valueDate", "valueDateTime"):
        if key in answer:
            return str(answer[key])
    return ""


def survey_behind_task(engine: "Engine", task_id: int) -> SurveyAnswers | None:
    """The survey answer whose ``survey.completed`` event opened task ``task_id``, or None (the task came
    from something else)."""
    with engine.db.connect() as conn:
        row = conn.execute(select(Event.type, Event.payload).select_from(StaffTask)
                           .join(Touchpoint, Touchpoint.id == StaffTask.touchpoint_id)
                           .join(Event, Event.id == Touchpoint.event_id)
                           .where(StaffTask.id == task_id)).first()
        if row is None:  # a complaint case a detractor's answer opened: its source names the event
            from carepath.store.conversation_schema import ComplaintCase

            ref = conn.execute(select(ComplaintCase.source_ref).where(ComplaintCase.task_id == task_id,
                                                                      ComplaintCase.source == "survey")).scalar()
            if ref and ref.startswith("event:") and ref[6:].isdigit():
                row = conn.execute(select(Event.type, Event.payload).where(Event.id == int(ref[6:]))).first()
        if row is None or row.type != "survey.completed" or not str((row.payload or {}).get("response_id", "")
                                                                     ).isdigit():
            return None
        response = conn.execute(select(SurveyResponse.__table__).where(
            SurveyResponse.id == int(row.payload["response_id"]))).first()
    if response is None:
        return None
    answers = [(str(item.get("text") or item.get("linkId", "")), "; ".join(answer_text(a) for a in item["answer"]))
               for item in reveal_payload(response.response or {}, engine.cipher).get("item", []) if item.get("answer")]
    return SurveyAnswers(response.survey, response.received_at, response.nps, response.satisfaction,
                         list(response.red_flags or []), answers)

"""Storing an answered survey once, then telling the journeys (``survey.completed`` with scores)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from carepath.connectors.surveys.questionnaires import Questionnaire, response_resource, scores
from carepath.definition.events import EventIn
from carepath.store.personal_data import seal_answers
from carepath.store.schema import Enrollment, Event, Patient, SurveyResponse, Touchpoint

if TYPE_CHECKING:
    from carepath.engine import Engine


@dataclass(frozen=True)
class Recorded:
    """``stored`` (new), or ``duplicate`` (this link or provider answer was already recorded: nothing stored)."""

    status: str
    response_id: int | None = None
    scores: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class SurveyTarget:
    """Whom a response belongs to: the touchpoint its link came from, or a patient alone."""

    patient_id: int
    touchpoint_id: int | None = None
    journey: str | None = None
    step: str | None = None


def target_of_touchpoint(engine: "Engine", touchpoint_id: int) -> SurveyTarget | None:
    with engine.db.connect() as conn:
        tp = conn.execute(select(Touchpoint.patient_id, Touchpoint.journey, Touchpoint.step).where(
            Touchpoint.id == touchpoint_id)).first()
    return None if tp is None else SurveyTarget(tp.patient_id, touchpoint_id, tp.journey, tp.step)


def record_response(engine: "Engine", questionnaire: Questionnaire, answers: Mapping[str, Any], target: SurveyTarget,
                    *, provider: str, external_id: str) -> Recorded:
    """Store the QuestionnaireResponse (once per link and per provider answer id), then ingest ``survey.completed``.

    The response row is the claim: a second answer through the same link, or a
    provider's resend, hits its unique keys and stores nothing. The event's
    source id is derived from the row, so a crash between the two is repaired by
    the next attempt (the event is ingested for a row that has none).
    """
    now = engine.clock.now()
    score = scores(questionnaire, answers)
    try:
        with engine.db.begin() as conn:
            response_id = conn.execute(insert(SurveyResponse).values(
                touchpoint_id=target.touchpoint_id, patient_id=target.patient_id, journey=target.journey,
                step=target.step, survey=questionnaire.name, provider=provider, external_id=external_id,
                response={}, nps=score["nps"], satisfaction=score["satisfaction"], red_flags=score["red_flags"],
                received_at=now).returning(SurveyResponse.id)).scalar_one()
            resource = response_resource(questionnaire, answers, patient_id=target.patient_id, authored=now,
                                         response_id=str(response_id))
            conn.execute(SurveyResponse.__table__.update().where(SurveyResponse.id == response_id)
                         .values(response=seal_answers(resource, engine.cipher)))
    except IntegrityError:
        existing = _existing(engine, target, provider, external_id)
        if existing is not None and not _has_event(engine, existing):
            _ingest(engine, questionnaire, existing, target, score)  # finish what a crash left half done
        return Recorded("duplicate", existing)
    _ingest(engine, questionnaire, response_id, target, score)
    return Recorded("stored", response_id, score)


def _existing(engine: "Engine", target: SurveyTarget, provider: str, external_id: str) -> int | None:
    with engine.db.connect() as conn:
        q = select(SurveyResponse.id).where((SurveyResponse.provider == provider)
                                            & (SurveyResponse.external_id == external_id))
        found = conn.execute(q).scalar()
        if found is None and target.touchpoint_id is not None:
            found = conn.execute(select(SurveyResponse.id).where(
                SurveyResponse.touchpoint_id == target.touchpoint_id)).scalar()
    return found


def _source_id(response_id: int) -> str:
    return f"survey-response:{response_id}"


def _has_event(engine: "Engine", response_id: int) -> bool:
    with engine.db.connect() as conn:
        return conn.execute(select(Event.id).where(Event.source == "carepath-surveys",
                                                   Event.source_id == _source_id(response_id))).first() is not None


def _ingest(engine: "Engine", questionnaire: Questionnaire, response_id: int, target: SurveyTarget,
            score: Mapping[str, Any]) -> None:
    with engine.db.connect() as conn:
        mrn_enc = conn.execute(select(Patient.mrn_enc).where(Patient.id == target.patient_id)).scalar_one()
        key = None
        if target.touchpoint_id is not None:
            key = conn.execute(select(Enrollment.key).join(Touchpoint, Touchpoint.enrollment_id == Enrollment.id)
                               .where(Touchpoint.id == target.touchpoint_id)).scalar()
    payload = {"survey": questionnaire.name, "response_id": response_id, "touchpoint_id": target.touchpoint_id,
               "journey": target.journey, "step": target.step, **score}
    if key is not None:  # answers belong to the episode the invitation was sent for
        payload["episode_key"] = key
    engine.ingest(EventIn(type="survey.completed", source="carepath-surveys", source_id=_source_id(response_id),
                          patient_mrn=engine.cipher.decrypt(mrn_enc), occurred_at=engine.clock.now(),
                          payload=payload))

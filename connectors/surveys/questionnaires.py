"""Questionnaires as FHIR Questionnaire JSON: questions, answer checking, scores, QuestionnaireResponse.

Items are marked for scoring with ``code: [{system: "urn:carepath:score", code: ...}]``:
``nps`` (0–10 likelihood to recommend), ``satisfaction`` (averaged) and
``red-flag`` (a ``true`` answer is a red-flag symptom).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

SCORE_SYSTEM = "urn:carepath:score"
_MIN = "http://hl7.org/fhir/StructureDefinition/minValue"
_MAX = "http://hl7.org/fhir/StructureDefinition/maxValue"


@dataclass(frozen=True)
class Question:
    link_id: str
    text: str
    type: str  # integer | boolean | choice | string | text
    required: bool
    role: str | None  # nps | satisfaction | red-flag
    minimum: int | None = None
    maximum: int | None = None
    options: tuple[tuple[str, str], ...] = ()  # (code, display)
    max_length: int = 500


@dataclass(frozen=True)
class Questionnaire:
    name: str
    title: str
    questions: tuple[Question, ...]
    resource: Mapping[str, Any]

    def question(self, link_id: str) -> Question | None:
        return next((q for q in self.questions if q.link_id == link_id), None)


def parse_questionnaire(resource: Mapping[str, Any]) -> Questionnaire:
    """Read a Questionnaire resource (validated with the ``fhir.resources`` R4B model)."""
    from fhir.resources.R4B.questionnaire import Questionnaire as FhirQuestionnaire

    FhirQuestionnaire.model_validate(resource)
    questions = []
    for item in resource.get("item", []):
        ext = {e["url"]: e.get("valueInteger") for e in item.get("extension", [])}
        role = next((c["code"] for c in item.get("code", []) if c.get("system") == SCORE_SYSTEM), None)
        options = tuple((o["valueCoding"]["code"], o["valueCoding"].get("display", o["valueCoding"]["code"]))
                        for o in item.get("answerOption", []) if "valueCoding" in o)
        questions.append(Question(item["linkId"], item.get("text", item["linkId"]), item["type"],
                                  bool(item.get("required")), role, ext.get(_MIN), ext.get(_MAX), options,
                                  int(item.get("maxLength", 500))))
    name = resource.get("name") or resource["id"]
    return Questionnaire(name, resource.get("title", name), tuple(questions), resource)


def load_questionnaires(folder: Path | None = None) -> dict[str, Questionnaire]:
    """Every questionnaire shipped with the journeys (``carepath.journeys/questionnaires``), by name."""
    if folder is None:
        from carepath.journeys import HERE

        folder = HERE / "questionnaires"
    found = {}
    for path in sorted(folder.glob("*.json")):
        questionnaire = parse_questionnaire(json.loads(path.read_text(encoding="utf-8")))
        found[questionnaire.name] = questionnaire
    return found


def check_answers(questionnaire: Questionnaire, form: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Typed answers from form values, and a problem per question that needs one (``linkId -> text``)."""
    answers: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for q in questionnaire.questions:
        raw = str(form.get(q.link_id, "")).strip()
        if not raw:
            if q.required:
                problems[q.link_id] = "请回答此题 (an answer is required)"
            continue
        if q.type == "integer":
            if not raw.lstrip("-").isdigit():
                problems[q.link_id] = "请选择一个数字 (a whole number)"
                continue
            value = int(raw)
            if (q.minimum is not None and value < q.minimum) or (q.maximum is not None and value > q.maximum):
                problems[q.link_id] = f"请选择 {q.minimum}–{q.maximum} (between {q.minimum} and {q.maximum})"
                continue
            answers[q.link_id] = value
        elif q.type == "boolean":
            if raw not in ("true", "false"):
                problems[q.link_id] = "请选择“是”或“否” (yes or no)"
                continue
            answers[q.link_id] = raw == "true"
        elif q.type == "choice":
            if raw not in {code for code, _ in q.options}:
                problems[q.link_id] = "请选择一个选项 (one of the options)"
                continue
            answers[q.link_id] = raw
        else:
            answers[q.link_id] = raw[:q.max_length]
    return answers, problems


def nps_category(score: int | None) -> str | None:
    """9–10 promoter, 7–8 passive, 0–6 detractor."""
    if score is None:
        return None
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


def scores(questionnaire: Questionnaire, answers: Mapping[str, Any]) -> dict[str, Any]:
    """NPS and its category, mean satisfaction, and the red-flag questions answered yes."""
    by_role: dict[str, list[Question]] = {}
    for q in questionnaire.questions:
        if q.role:
            by_role.setdefault(q.role, []).append(q)
    nps = next((answers[q.link_id] for q in by_role.get("nps", []) if q.link_id in answers), None)
    rated = [answers[q.link_id] for q in by_role.get("satisfaction", []) if q.link_id in answers]
    return {"nps": nps, "nps_category": nps_category(nps),
            "satisfaction": round(sum(rated) / len(rated), 2) if rated else None,
            "red_flags": [q.link_id for q in by_role.get("red-flag", []) if answers.get(q.link_id) is True]}


def response_resource(questionnaire: Questionnaire, answers: Mapping[str, Any], *, patient_id: int,
                      authored: datetime, response_id: str) -> dict[str, Any]:
    """The answers as a FHIR QuestionnaireResponse (validated)."""
    from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

    items = []
    for q in questionnaire.questions:
        if q.link_id not in answers:
            continue
        value = answers[q.link_id]
        if q.type == "integer":
            answer = {"valueInteger": value}
        elif q.type == "boolean":
            answer = {"valueBoolean": value}
        elif q.type == "choice":
            display = dict(q.options).get(value, value)
            answer = {"valueCoding": {"code": value, "display": display}}
        else:
            answer = {"valueString": value}
        items.append({"linkId": q.link_id, "text": q.text, "answer": [answer]})
    resource = {"resourceType": "QuestionnaireResponse", "id": response_id,
                "questionnaire": f"Questionnaire/{questionnaire.name}", "status": "completed",
                "subject": {"reference": f"Patient/{patient_id}"}, "authored": authored.isoformat(), "item": items}
    QuestionnaireResponse.model_validate(resource)
    return resource

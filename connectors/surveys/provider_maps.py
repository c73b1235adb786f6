"""What third-party survey connectors share: their survey maps and turning a push into a stored response."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar, Mapping
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field

from carepath.connectors.surveys.questionnaires import Questionnaire, check_answers, load_questionnaires
from carepath.connectors.surveys.responses import Recorded, record_response, target_of_touchpoint
from carepath.plugins.contracts import CallbackRejected, Capabilities, SurveyProvider
from carepath.runtime.survey_links import read_token, survey_token

if TYPE_CHECKING:
    from carepath.engine import Engine

log = logging.getLogger(__name__)


class SurveyMap(BaseModel):
    """One provider survey: its id there, the patient link, and which provider question is which item."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, description="the survey's id at the provider (wjx activity, Tencent survey_id)")
    url: str = Field(pattern=r"^https?://", description="the survey's public URL")
    questions: dict[str, str] = Field(description="provider question id -> questionnaire linkId")


class MappedSurveys(SurveyProvider):
    """A provider whose ``Config`` has ``surveys`` (name -> :class:`SurveyMap`) and a link ``param``."""

    capabilities: ClassVar[Capabilities] = Capabilities(callbacks=True)

    def __init__(self, name: str, config: Any = None) -> None:
        super().__init__(name, config)
        self.engine: Any = None

    def bind(self, engine: Any) -> None:
        self.engine = engine

    def make_link(self, survey: str, patient_id: int, *, touchpoint_id: int | None = None) -> str:
        if survey not in self.config.surveys:
            raise ValueError(f"{self.type_name} connector {self.name!r} maps no survey {survey!r}")
        return patient_link(self.config.surveys[survey].url, self.config.param, engine_of(self), touchpoint_id)


def patient_link(url: str, param: str, engine: "Engine", touchpoint_id: int | None) -> str:
    """The survey URL carrying the touchpoint's signed token in the provider's custom parameter."""
    if touchpoint_id is None:
        raise ValueError("a provider survey link needs the touchpoint it is sent for")
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}{urlencode({param: survey_token(engine.cipher, touchpoint_id)})}"


def by_provider_id(surveys: Mapping[str, SurveyMap], provider_id: str) -> tuple[str, SurveyMap] | None:
    return next(((name, m) for name, m in surveys.items() if m.id == provider_id), None)


def record_push(engine: "Engine", *, provider: str, name: str, survey_map: SurveyMap, values: Mapping[str, str],
                token: str, external_id: str) -> Recorded | None:
    """Store one authentic push; ``None`` when it cannot be linked to a touchpoint (logged, nothing stored)."""
    questionnaire: Questionnaire | None = load_questionnaires().get(name)
    if questionnaire is None:
        raise CallbackRejected(f"survey {name!r} has no questionnaire")
    touchpoint_id = read_token(engine.cipher, token) if token else None
    target = target_of_touchpoint(engine, touchpoint_id) if touchpoint_id is not None else None
    if target is None:
        log.warning("%s push %s carries no valid carepath link token: not linked, not stored", provider, external_id)
        return None
    form = {survey_map.questions[q]: v for q, v in values.items() if q in survey_map.questions}
    answers, problems = check_answers(questionnaire, form)
    if problems:
        log.warning("%s push %s: %s", provider, external_id, "; ".join(f"{k}: {v}" for k, v in problems.items()))
    return record_response(engine, questionnaire, answers, target, provider=provider, external_id=external_id)


def choice_value(questionnaire_name: str, link_id: str, raw: str) -> str:
    """A provider's 1-based option index (``"2"``, or ``"2,3"`` for multi-choice: the first) as the option code."""
    questionnaire = load_questionnaires().get(questionnaire_name)
    question = questionnaire.question(link_id) if questionnaire else None
    if question is None or question.type != "choice":
        return raw
    first = raw.split(",")[0].strip()
    if first.isdigit() and 1 <= int(first) <= len(question.options):
        return question.options[int(first) - 1][0]
    return raw


def mapped_values(name: str, survey_map: SurveyMap, raw: Mapping[str, Any]) -> dict[str, str]:
    """Provider answers keyed by provider question id, with choices as option codes."""
    return {q: choice_value(name, survey_map.questions[q], str(v)) for q, v in raw.items() if q in survey_map.questions}


def engine_of(connector: Any) -> "Engine":
    if connector.engine is None:
        raise CallbackRejected(f"{connector.type_name} {connector.name!r} is not bound to an engine")
    return connector.engine

"""``tencent-wenjuan`` (腾讯问卷): webhook pushes, authenticated by a secret token in the path.

Tencent Wenjuan does not sign its webhook, so the endpoint is
``/hooks/tencent-wenjuan/<connector>/<path_token>``; anything else is refused
with nothing stored. A push is ``{id, object: "Answer", action, created_at,
payload {survey_id, answer_id, third_party_user {respondent_id}, answer}}``;
``answer.create`` is recorded once per answer id, ``answer.update`` and
``answer.delete`` are acknowledged and logged (a response, once given, is
what the journeys acted on). Answers are read from ``payload.answer``: a list
of ``{question_id, value}`` (a scale or text) or ``{question_id, options:
[{index, checked}]}`` (a choice). A push of another shape (not an object, an
unknown action, no payload, no answer list, an unmapped survey) is refused
with a ``ValueError`` naming what is wrong: the route answers 400 and keeps
the body (masked) for operators; nothing is silently dropped.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from carepath.connectors.surveys.provider_maps import MappedSurveys, SurveyMap, by_provider_id, engine_of, mapped_values, \
    record_push
from carepath.plugins.contracts import CallbackRequest, ConnectorConfig

log = logging.getLogger(__name__)


class TencentWenjuanConfig(ConnectorConfig):
    path_token: SecretStr = Field(min_length=16, description="secret in the webhook path ({env = ...}, at least 16 characters)")
    param: str = Field("respondent_id", description="the link parameter Tencent returns as third_party_user.respondent_id")
    surveys: dict[str, SurveyMap] = Field(default_factory=dict, description="carepath survey name -> Tencent survey")



ACTIONS = ("answer.create", "answer.update", "answer.delete")


def _answer_values(answers: Any) -> dict[str, str]:
    """``payload.answer`` as provider question id -> value; ``ValueError`` naming the item of another shape."""
    if not isinstance(answers, list):
        raise ValueError("payload.answer must be a list of answers")
    values: dict[str, str] = {}
    for i, item in enumerate(answers):
        if not isinstance(item, dict) or not isinstance(item.get("question_id"), (str, int)):
            raise ValueError(f"payload.answer[{i}] is not an answer with a question_id")
        qid = str(item["question_id"])
        if "options" in item:
            if not isinstance(item["options"], list):
                raise ValueError(f"payload.answer[{i}].options must be a list")
            checked = [str(o.get("index")) for o in item["options"] if isinstance(o, dict) and o.get("checked")]
            values[qid] = ",".join(checked)
        elif "value" in item:
            values[qid] = str(item["value"])
    return values


class TencentWenjuan(MappedSurveys):
    type_name: ClassVar[str] = "tencent-wenjuan"
    Config = TencentWenjuanConfig
    emulator: ClassVar[str | None] = "carepath.connectors.surveys.emulators:serve_tencent"

    def verify_callback(self, request: CallbackRequest) -> bool:
        given = request.path.rstrip("/").rsplit("/", 1)[-1] if request.path else ""
        return bool(given) and hmac.compare_digest(given.encode(), self.config.path_token.get_secret_value().encode())

    def parse_callback(self, request: CallbackRequest) -> list[Any]:
        try:
            data = json.loads(request.body)
        except (ValueError, RecursionError):
            raise ValueError("push body is not JSON") from None
        if not isinstance(data, dict):
            raise ValueError("push body is not a JSON object")
        action, payload = data.get("action"), data.get("payload")
        if action not in ACTIONS:
            raise ValueError(f"unknown action {str(action)[:40]!r} (expected {', '.join(ACTIONS)})")
        if not isinstance(payload, dict):
            raise ValueError("push has no payload object")
        if action != "answer.create":
            log.info("tencent-wenjuan %s: %s for answer %s acknowledged, not applied", self.name, action,
                     str(payload.get("answer_id"))[:40])
            return []
        if not payload.get("answer_id") or not payload.get("survey_id"):
            raise ValueError("payload needs survey_id and answer_id")
        values = _answer_values(payload.get("answer"))
        found = by_provider_id(self.config.surveys, str(payload["survey_id"]))
        if found is None:
            raise ValueError(f"Tencent survey {str(payload['survey_id'])[:40]!r} is not mapped to a carepath survey "
                             f"(add it under [connectors.{self.name}.surveys])")
        name, survey_map = found
        user = payload.get("third_party_user")
        token = str(user.get("respondent_id", "")) if isinstance(user, dict) else ""
        record_push(engine_of(self), provider=f"tencent-wenjuan:{self.name}", name=name, survey_map=survey_map,
                    values=mapped_values(name, survey_map, values), token=token,
                    external_id=str(payload["answer_id"])[:128])
        return []

    def callback_reply(self, request: CallbackRequest) -> tuple[int, str]:
        return 200, json.dumps({"code": "OK"})


"""``tencent-wenjuan`` (腾讯问卷): webhook pushes, authenticated by a secret token in the path.

Tencent Wenjuan does not sign its webhook, so the endpoint is
``/hooks/tencent-wenjuan/<connector>/<path_token>``; anything else is refused
with nothing stored. A push is ``{id, object: "Answer", action, created_at,
payload {survey_id, answer_id, third_party_user {respondent_id}, answer}}``;
``answer.create`` is recorded once per answer id, ``answer.update`` and
``answer.delete`` are acknowledged and logged (a response, once given, is
what the journeys acted on). Answers are read from ``payload.answer``: a list
of ``{question_id, value}`` (a scale or text) or ``{question_id, options:
[{index, checked}]}`` (a choice).
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from carepath.connectors.surveys.provider_maps import MappedSurveys, SurveyMap, by_provider_id, engine_of, mapped_values, \
    record_push
from carepath.plugins.contracts import CallbackRejected, CallbackRequest, ConnectorConfig

log = logging.getLogger(__name__)


class TencentWenjuanConfig(ConnectorConfig):
    path_token: SecretStr = Field(min_length=16, description="secret in the webhook path ({env = ...}, at least 16 characters)")
    param: str = Field("respondent_id", description="the link parameter Tencent returns as third_party_user.respondent_id")
    surveys: dict[str, SurveyMap] = Field(default_factory=dict, description="carepath survey name -> Tencent survey")



def _answer_values(answers: Any) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in answers if isinstance(answers, list) else []:
        if not isinstance(item, dict) or "question_id" not in item:
            continue
        qid = str(item["question_id"])
        if "options" in item:
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
        except ValueError:
            raise CallbackRejected("push body is not JSON") from None
        payload = data.get("payload") or {}
        if data.get("action") != "answer.create":
            log.info("tencent-wenjuan %s: %s for answer %s acknowledged, not applied", self.name,
                     data.get("action"), payload.get("answer_id"))
            return []
        found = by_provider_id(self.config.surveys, str(payload.get("survey_id", "")))
        if found is None:
            raise CallbackRejected(f"Tencent survey {payload.get('survey_id')!r} is not mapped to a carepath survey")
        name, survey_map = found
        token = str((payload.get("third_party_user") or {}).get("respondent_id", ""))
        record_push(engine_of(self), provider=f"tencent-wenjuan:{self.name}", name=name, survey_map=survey_map,
                    values=mapped_values(name, survey_map, _answer_values(payload.get("answer"))), token=token,
                    external_id=str(payload.get("answer_id") or data.get("id")))
        return []

    def callback_reply(self, request: CallbackRequest) -> tuple[int, str]:
        return 200, json.dumps({"code": "OK"})


"""``wjx`` (问卷星): patient links with the touchpoint token in ``sojumpparm``; signed data pushes.

A push is JSON ``{activity, name, timetaken, submittime, q1..qn, joinid, index,
totalvalue, sign, sojumpparm}`` with ``sign = sha1(activity + index + push_secret)``
(``joinid`` stands in for ``index`` when a push has none). A bad sign is
refused (401) with nothing stored. An authentic push whose link token is
missing or forged is acknowledged but stored nowhere, so that wjx does not
pause the push after repeated failures; it is logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from carepath.connectors.surveys.provider_maps import MappedSurveys, SurveyMap, by_provider_id, engine_of, mapped_values, \
    record_push
from carepath.plugins.contracts import CallbackRejected, CallbackRequest, ConnectorConfig


class WjxConfig(ConnectorConfig):
    push_secret: SecretStr = Field(description="the data-push secret set in wjx ({env = ...})")
    param: str = Field("sojumpparm", description="the link's custom parameter carrying carepath's token")
    surveys: dict[str, SurveyMap] = Field(default_factory=dict, description="carepath survey name -> wjx survey")


def wjx_sign(activity: str, index: str, secret: str) -> str:
    return hashlib.sha1(f"{activity}{index}{secret}".encode()).hexdigest()


class WjxSurveys(MappedSurveys):
    type_name: ClassVar[str] = "wjx"
    Config = WjxConfig
    emulator: ClassVar[str | None] = "carepath.connectors.surveys.emulators:serve_wjx"

    def verify_callback(self, request: CallbackRequest) -> bool:
        try:  # the sign is inside the body: reading it is part of checking it (bounded by the route's limit)
            data = json.loads(request.body)
        except (ValueError, RecursionError):
            return False
        if not isinstance(data, dict) or not isinstance(data.get("sign"), str):
            return False
        index = str(data.get("index", data.get("joinid", "")))
        expected = wjx_sign(str(data.get("activity", "")), index, self.config.push_secret.get_secret_value())
        return hmac.compare_digest(data["sign"].lower(), expected)

    def parse_callback(self, request: CallbackRequest) -> list[Any]:
        data = json.loads(request.body)
        found = by_provider_id(self.config.surveys, str(data.get("activity", "")))
        if found is None:
            raise CallbackRejected(f"wjx activity {data.get('activity')!r} is not mapped to a carepath survey")
        name, survey_map = found
        record_push(engine_of(self), provider=f"wjx:{self.name}", name=name, survey_map=survey_map,
                    values=mapped_values(name, survey_map, data), token=str(data.get(self.config.param, "")),
                    external_id=f"{data.get('activity')}:{data.get('joinid') or data.get('index')}")
        return []  # the response and its survey.completed event are already stored

    def callback_reply(self, request: CallbackRequest) -> tuple[int, str]:
        return 200, json.dumps({"code": 0, "msg": "ok"})

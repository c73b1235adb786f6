"""The callback route: authenticated callbacks are ingested, others answered 401 with nothing changed."""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from carepath.definition.events import EventIn
from carepath.plugins import CallbackRequest, Capabilities, Channel, ConnectorConfig, SendResult
from carepath.plugins.testing import ChannelConformance
from carepath.plugins.web import callback_router

TOKEN = "shared-token-for-tests"


class TokenConfig(ConnectorConfig):
    token: SecretStr


class TokenChannel(Channel):
    """Authenticates callbacks by a shared token header."""

    type_name: ClassVar[str] = "token"
    Config = TokenConfig
    capabilities: ClassVar[Capabilities] = Capabilities(callbacks=True)

    def send(self, message):
        return SendResult.sent(message.idempotency_key)

    def verify_callback(self, request: CallbackRequest) -> bool:
        given = request.header("X-Token")
        return bool(given) and hmac.compare_digest(given, self.config.token.get_secret_value())

    def parse_callback(self, request: CallbackRequest) -> list[Any]:
        data = json.loads(request.body)
        return [EventIn(type="message.replied", source=f"token:{self.name}", source_id=data["id"],
                        patient_mrn=data["mrn"], occurred_at="2026-05-01T10:00:00+08:00",
                        payload={"text": data["text"]})]


@dataclass
class Context:
    connectors: dict[str, Any]
    ingested: list[Any] = field(default_factory=list)

    def ingest(self, event: Any) -> None:
        self.ingested.append(event)


@pytest.fixture
def context() -> Context:
    return Context({"replies": TokenChannel("replies", TokenConfig(token=TOKEN))})


@pytest.fixture
def client(context: Context) -> TestClient:
    app = FastAPI()
    app.state.carepath = context
    app.include_router(callback_router("token"))
    return TestClient(app)


BODY = json.dumps({"id": "r-1", "mrn": "M001", "text": "好的"})


def test_authentic_callback_is_ingested(client: TestClient, context: Context) -> None:
    answer = client.post("/hooks/token/replies", content=BODY, headers={"X-Token": TOKEN})
    assert answer.status_code == 200
    assert [(e.type, e.source_id, e.payload["text"]) for e in context.ingested] == [("message.replied", "r-1", "好的")]


@pytest.mark.parametrize("headers", [{}, {"X-Token": "wrong"}, {"X-Token": ""}])
def test_unauthentic_callback_is_rejected_with_nothing_changed(client: TestClient, context: Context,
                                                               headers: dict[str, str]) -> None:
    answer = client.post("/hooks/token/replies", content=BODY, headers=headers)
    assert answer.status_code == 401
    assert context.ingested == []


def test_unknown_connector_is_404(client: TestClient, context: Context) -> None:
    assert client.post("/hooks/token/nobody", content=BODY, headers={"X-Token": TOKEN}).status_code == 404
    assert context.ingested == []


class TestTokenChannelConformance(ChannelConformance):
    """The suite's callback checks on a callback channel without a network (send checks still run)."""

    channel_class = TokenChannel
    valid_config = {"token": TOKEN}
    callback_signs_body = False  # a shared token authenticates the sender, not the body
    invalid_configs = [{}, {"token": 42}]

    def good_callback(self, connector):
        return CallbackRequest(body=BODY.encode(), headers={"X-Token": TOKEN})

    def bad_callbacks(self, connector):
        return [*super().bad_callbacks(connector), CallbackRequest(body=BODY.encode(), headers={"X-Token": "x"})]

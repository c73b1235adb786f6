"""The carepath conformance suite, run against the webhook channel and its emulator."""

from __future__ import annotations

from typing import Any

import pytest

from carepath.plugins.contracts import CallbackRequest, Channel, Connector
from carepath.plugins.testing import ChannelConformance

from carepath_plugin_example import SIGNATURE_HEADER, WebhookChannel, WebhookEmulator, sign

SECRET = "test-secret-0123456789abcdef"


class TestWebhookChannelConformance(ChannelConformance):
    channel_class = WebhookChannel
    valid_config = {"url": "https://receiver.example.org/messages", "secret": SECRET, "timeout": 3}
    invalid_configs = [
        {"url": "not a url", "secret": SECRET},
        {"url": "https://receiver.example.org/messages"},  # no secret
        {"url": "https://receiver.example.org/messages", "secret": "short"},
        {"url": "https://receiver.example.org/messages", "secret": SECRET, "timeout": 0},
        {"url": "https://receiver.example.org/messages", "secret": SECRET, "address": "fax"},
    ]

    def make_network_channel(self, url: str, timeout: float) -> Channel:
        return WebhookChannel("conformance", WebhookChannel.Config(url=url, secret=SECRET, timeout=timeout))

    @pytest.fixture
    def emulator(self):
        with WebhookEmulator(SECRET) as hook:
            yield hook

    @pytest.fixture
    def channel(self, emulator: WebhookEmulator) -> Channel:
        return self.make_network_channel(emulator.url, 3)

    def good_callback(self, connector: Connector) -> CallbackRequest:
        body = b'{"events": [{"id": "r1", "type": "message.delivered", "provider_id": "wh-1", "patient_mrn": "M1"}]}'
        return CallbackRequest(body=body, headers={SIGNATURE_HEADER: sign(SECRET, body)})

    def bad_callbacks(self, connector: Connector) -> list[CallbackRequest]:
        good = self.good_callback(connector)
        forged = sign("another-secret-0123456789", good.body)
        wrong_key = CallbackRequest(body=good.body, headers={SIGNATURE_HEADER: forged})
        unsigned = CallbackRequest(body=good.body)
        return [*super().bad_callbacks(connector), wrong_key, unsigned]


def test_emulator_rejects_bad_signature_and_records_nothing() -> None:
    import requests

    with WebhookEmulator(SECRET) as hook:
        answer = requests.post(hook.url, data=b'{"id": "x"}', headers={SIGNATURE_HEADER: "sha256=00"}, timeout=3)
        assert answer.status_code == 401
        assert hook.messages == [] and hook.rejected == 1


def test_send_records_signed_message_once_per_key() -> None:
    from carepath.plugins.contracts import Message

    with WebhookEmulator(SECRET) as hook:
        channel = WebhookChannel("hook", WebhookChannel.Config(url=hook.url, secret=SECRET, timeout=3))
        message = Message(idempotency_key="tp-1:hook", channel="hook", patient_id=7, address="13912345678",
                          title="t", body="b", template="x", category="clinical")
        first, again = channel.send(message), channel.send(message)
        hook.fail_next(503)
        busy = channel.send(Message(**{**_fields(message), "idempotency_key": "tp-2:hook"}))
    assert first.ok and again.provider_id == first.provider_id == "wh-1"
    assert [m["id"] for m in hook.messages] == ["tp-1:hook"]
    assert busy.error_kind is not None and busy.error_kind.value == "retryable"


def _fields(message: Any) -> dict[str, Any]:
    return {name: getattr(message, name) for name in message.__slots__}

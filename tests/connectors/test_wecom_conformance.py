"""The carepath conformance suite, run against the wecom channel and its emulator."""

from __future__ import annotations

import time

import pytest

from carepath.connectors.wecom import WecomChannel
from carepath.connectors.wecom.emulator import WecomEmulator
from carepath.connectors.wecom.pushes import contact_removed, signed_callback
from carepath.engine import Engine
from carepath.plugins.contracts import CallbackRequest, Channel, Connector
from carepath.plugins.testing import ChannelConformance

from tests.connectors.wecom_support import AES_KEY, COMMUNITY_CHAT, CORPID, SECRET, STAFF, TOKEN

OTHER_AES_KEY = "B" * 43


def _options(api_base: str, timeout: float = 3) -> dict:
    # the sample message's template is posted to a community: no patient binding is needed to reach the network
    return {"corpid": CORPID, "secret": SECRET, "token": TOKEN, "encoding_aes_key": AES_KEY, "api_base": api_base,
            "timeout": timeout, "communities": {"diabetes": {"chat_id": COMMUNITY_CHAT, "owner": STAFF}},
            "posts": {"conformance": "diabetes"}}


class TestWecomConformance(ChannelConformance):
    channel_class = WecomChannel
    valid_config = _options("https://qyapi.weixin.qq.com")
    # the signature covers the Encrypt value, not the raw body bytes around it
    callback_signs_body = False
    timeout = 1.5
    invalid_configs = [
        {**_options("https://qyapi.weixin.qq.com"), "corpid": "not-a-corpid"},
        {k: v for k, v in _options("https://qyapi.weixin.qq.com").items() if k != "secret"},
        {k: v for k, v in _options("https://qyapi.weixin.qq.com").items() if k != "encoding_aes_key"},
        {**_options("https://qyapi.weixin.qq.com"), "encoding_aes_key": "short"},
        {**_options("https://qyapi.weixin.qq.com"), "posts": {"conformance": "no-such-community"}},
        {**_options("https://qyapi.weixin.qq.com"), "communities": {"Bad Name": {"chat_id": "wr1", "owner": "a"}}},
        {**_options("https://qyapi.weixin.qq.com"), "confirm_within": 0},
    ]

    def make_network_channel(self, url: str, timeout: float) -> Channel:
        return WecomChannel.from_options("conformance", _options(url, timeout))  # type: ignore[return-value]

    @pytest.fixture
    def emulator(self):
        with WecomEmulator(corpid=CORPID, secret=SECRET, token=TOKEN, encoding_aes_key=AES_KEY) as wc:
            wc.add_group(COMMUNITY_CHAT, STAFF)
            yield wc

    @pytest.fixture
    def channel(self, emulator: WecomEmulator, database_url, settings, clock) -> Channel:
        channel = self.make_network_channel(emulator.url, 3)
        engine = Engine(database_url, journeys=[], channels={"conformance": channel}, templates={}, clock=clock,
                        settings=settings)
        yield channel
        engine.close()

    def good_callback(self, connector: Connector) -> CallbackRequest:
        return _signed(contact_removed(CORPID, STAFF, "wmConformance01"))

    def bad_callbacks(self, connector: Connector) -> list[CallbackRequest]:
        fields = contact_removed(CORPID, STAFF, "wmConformance01")
        good = _signed(fields)
        return [*super().bad_callbacks(connector),
                _signed(fields, token="anothertoken"),  # signed without knowing the Token
                _signed(fields, corpid="wwanothercorp0001"),  # encrypted for another enterprise
                _signed(fields, encoding_aes_key=OTHER_AES_KEY),  # encrypted with another key
                _signed(fields, timestamp=int(time.time()) - 3600),  # a replay an hour later
                CallbackRequest(body=good.body, query={**good.query, "msg_signature": "0" * 40}),
                CallbackRequest(body=good.body, query={k: v for k, v in good.query.items() if k != "timestamp"}),
                CallbackRequest(body=good.body, method="GET", query=good.query)]  # no echostr


def _signed(fields: dict, **overrides) -> CallbackRequest:
    options = {"token": TOKEN, "corpid": CORPID, "encoding_aes_key": AES_KEY, **overrides}
    query, body = signed_callback(fields, **options)
    return CallbackRequest(body=body, query=query, headers={"content-type": "text/xml"})

"""The carepath conformance suite, run against the wechat channel and its emulator."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from carepath.connectors.wechat import WechatChannel
from carepath.connectors.wechat.emulator import WechatEmulator
from carepath.connectors.wechat.pushes import delivery_report, signed_callback
from carepath.plugins.contracts import CallbackRequest, Channel, Connector
from carepath.plugins.testing import ChannelConformance

from tests.connectors.wechat_support import AES_KEY, APPID, SECRET, TOKEN

CONFORMANCE_MAP = {"template_id": "TPL-conformance", "data": {"thing1": "随访提醒", "thing2": "{{ title | default('随访') }}"}}


def _options(api_base: str, timeout: float = 3) -> dict:
    return {"appid": APPID, "secret": SECRET, "token": TOKEN, "encoding_aes_key": AES_KEY, "api_base": api_base,
            "timeout": timeout, "templates": {"conformance": CONFORMANCE_MAP}}


class TestWechatConformance(ChannelConformance):
    channel_class = WechatChannel
    valid_config = _options("https://api.weixin.qq.com")
    # the signature covers the Encrypt value, not the raw body bytes around it
    callback_signs_body = False
    # headroom for a loaded CI machine: a slow loopback answer must not pass for a timeout
    timeout = 1.5
    invalid_configs = [
        {**_options("https://api.weixin.qq.com"), "appid": "not-an-appid"},
        {k: v for k, v in _options("https://api.weixin.qq.com").items() if k != "secret"},
        {**_options("https://api.weixin.qq.com"), "encoding_aes_key": "short"},
        {**_options("https://api.weixin.qq.com"), "kind": "fax"},
        {**_options("https://api.weixin.qq.com"), "templates": {"x": {"template_id": "T", "data": {"thing1": "{{"}}}},
        {**_options("https://api.weixin.qq.com"), "templates": {"x": {"template_id": "T", "page": "pages/a",
                                                                      "data": {"thing1": "a"}}}},
    ]

    def make_network_channel(self, url: str, timeout: float) -> Channel:
        return WechatChannel.from_options("conformance", _options(url, timeout))  # type: ignore[return-value]

    @pytest.fixture
    def emulator(self):
        with WechatEmulator(appid=APPID, secret=SECRET, token=TOKEN, encoding_aes_key=AES_KEY) as wx:
            yield wx

    @pytest.fixture
    def channel(self, emulator: WechatEmulator) -> Channel:
        return self.make_network_channel(emulator.url, 3)

    def sample_message(self, key: str = "conformance-1"):
        return replace(super().sample_message(key), address=OPENID)

    def good_callback(self, connector: Connector) -> CallbackRequest:
        return _signed(delivery_report(OPENID, 1001))

    def bad_callbacks(self, connector: Connector) -> list[CallbackRequest]:
        fields = delivery_report(OPENID, 1001)
        good = _signed(fields)
        forged_signature = CallbackRequest(body=good.body, query={**good.query, "msg_signature": "0" * 40})
        return [*super().bad_callbacks(connector),
                _signed(fields, token="anothertoken"),  # signed without knowing the Token
                _signed(fields, appid="wxotherapp0000001"),  # encrypted for another app
                _signed(fields, encoding_aes_key=OTHER_AES_KEY),  # encrypted with another key
                _signed(fields, timestamp=int(time.time()) - 3600),  # a replay an hour later
                _signed(fields, safe=False),  # plaintext to a safe-mode connector
                forged_signature,
                CallbackRequest(body=good.body, method="GET", query=good.query)]  # no echostr


OPENID = "oConformanceOpenid01"
OTHER_AES_KEY = "B" * 43


def _signed(fields: dict, **overrides) -> CallbackRequest:
    options = {"token": TOKEN, "appid": APPID, "encoding_aes_key": AES_KEY, **overrides}
    query, body = signed_callback(fields, **options)
    return CallbackRequest(body=body, query=query, headers={"content-type": "text/xml"})

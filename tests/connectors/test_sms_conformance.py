"""Both SMS channels pass the connector conformance suite, against their emulators."""

from __future__ import annotations

from typing import Any

import pytest

from carepath.plugins.contracts import CallbackRequest, Channel, Connector, Message
from carepath.plugins.testing import ChannelConformance

from tests.connectors.sms_helpers import ALIYUN, TENCENT, TOKEN, Provider, sms_options


class _SmsConformance(ChannelConformance):
    provider: Provider
    callback_signs_body = False  # a secret path token authenticates the sender, not the body

    def mapped(self, options: dict[str, Any]) -> dict[str, Any]:
        return {**options, "templates": {"conformance": {"code": self.provider.template_code,
                                                         "params": {"visit": "{{ visit }}"}}}}

    def sample_message(self, key: str = "conformance-1") -> Message:
        message = super().sample_message(key)
        return Message(**{**{f: getattr(message, f) for f in message.__dataclass_fields__},
                          "context": {"visit": "心内科"}})

    @pytest.fixture
    def channel(self) -> Channel:
        with self.provider.make_emulator(None) as emulator:
            yield self.provider.channel_class.from_options("conformance", self.mapped(sms_options(self.provider,
                                                                                                  emulator)))

    def make_network_channel(self, url: str, timeout: float) -> Channel:
        options = dict(self.valid_config, endpoint=url, timeout=timeout)
        return self.provider.channel_class.from_options("conformance", options)

    def good_callback(self, connector: Connector) -> CallbackRequest | None:
        return CallbackRequest(body=self.good_body, method="POST",
                               path=f"/hooks/{self.provider.type_name}/conformance/{TOKEN}/receipts")

    def bad_callbacks(self, connector: Connector) -> list[CallbackRequest]:
        base = f"/hooks/{self.provider.type_name}/conformance"
        return [*super().bad_callbacks(connector),
                CallbackRequest(body=self.good_body, path=f"{base}/{TOKEN[:-1]}x/receipts"),
                CallbackRequest(body=self.good_body, path=f"{base}/{TOKEN}/other"),
                CallbackRequest(body=self.good_body, path=f"/hooks/{self.provider.type_name}/another/{TOKEN}/receipts"),
                CallbackRequest(body=self.good_body, method="GET", path=f"{base}/{TOKEN}/receipts")]


class TestAliyunSmsConformance(_SmsConformance):
    provider = ALIYUN
    channel_class = ALIYUN.channel_class
    valid_config = {"access_key_id": "LTAI-test-key", "access_key_secret": "aliyun-secret-0001",
                    "sign_name": "仁济医院", "callback_token": TOKEN, "endpoint": "http://127.0.0.1:9",
                    "templates": {"conformance": {"code": "SMS_1", "params": {"visit": "{{ visit }}"}}}}
    invalid_configs = [{**valid_config, "endpoint": "ftp://x"}, {**valid_config, "sign_name": ""},
                       {**valid_config, "templates": {"t": {"code": "SMS_1", "params": {"a": "{{ oops"}}}},
                       {**valid_config, "callback_token": "short"}]
    good_body = (b'[{"phone_number":"13912345678","send_time":"2026-05-01 10:00:00","report_time":'
                 b'"2026-05-01 10:00:05","success":true,"err_code":"DELIVERED","err_msg":"ok","sms_size":"1",'
                 b'"biz_id":"1^0","out_id":"k"}]')


class TestTencentSmsConformance(_SmsConformance):
    provider = TENCENT
    channel_class = TENCENT.channel_class
    valid_config = {"secret_id": "AKID-test", "secret_key": "tencent-secret-0001", "sms_sdk_app_id": "1400000001",
                    "sign_name": "仁济医院", "callback_token": TOKEN, "endpoint": "http://127.0.0.1:9",
                    "templates": {"conformance": {"code": "1000001", "params": {"visit": "{{ visit }}"}}}}
    invalid_configs = [{**valid_config, "sms_sdk_app_id": "app"}, {**valid_config, "param_max_length": 0},
                       {**valid_config, "secret_key": "short"}]
    good_body = (b'[{"user_receive_time":"2026-05-01 10:00:05","nationcode":"86","mobile":"13912345678",'
                 b'"report_status":"SUCCESS","errmsg":"DELIVRD","description":"ok","sid":"2645:1"}]')

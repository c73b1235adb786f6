"""The loopback emulators as the providers' own SDKs see them: the right secret is accepted, a wrong one is an
error the SDK reports as such (not a success, not a crash inside the SDK); our connectors sign the same way."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest
import requests

from carepath.connectors.aliyun_sms.channel import AliyunSmsChannel
from carepath.connectors.aliyun_sms.emulator import AliyunSmsEmulator
from carepath.connectors.his.fhir_emulator import FhirEmulator
from carepath.connectors.tencent_sms.emulator import TencentSmsEmulator
from carepath.connectors.wechat.emulator import WechatEmulator
from carepath.connectors.wechat.pushes import text_message
from carepath.plugins.contracts import Message
from carepath.store.schema import Event

from tests.connectors.wechat_support import AES_KEY, APPID, OPENID, PATIENT, SECRET, TOKEN, serve_hooks
from tests.connectors.wechat_support import emulator, wechat_engine  # noqa: F401 - fixtures

KEY_ID, ALIYUN_SECRET = "LTAI-sdk-test", "aliyun-secret-for-sdk-0001"


def _send_sms_v3(host: str, secret: str):
    from alibabacloud_dysmsapi20170525 import models
    from alibabacloud_dysmsapi20170525.client import Client
    from alibabacloud_tea_openapi import models as open_api

    client = Client(open_api.Config(access_key_id=KEY_ID, access_key_secret=secret, endpoint=host, protocol="http"))
    return client.send_sms(models.SendSmsRequest(phone_numbers="13912345678", sign_name="仁济医院",
                                                 template_code="SMS_1", template_param='{"name": "张 *~"}',
                                                 out_id="sdk-1"))


def test_aliyun_emulator_takes_the_official_v3_sdk_and_it_reads_a_wrong_secret_as_an_error():
    with AliyunSmsEmulator(KEY_ID, ALIYUN_SECRET) as emu:
        host = emu.url.removeprefix("http://")
        answer = _send_sms_v3(host, ALIYUN_SECRET)
        assert (answer.body.code, answer.body.biz_id) == ("OK", emu.messages[0].provider_id)
        with pytest.raises(Exception) as refused:
            _send_sms_v3(host, "not-the-secret-0001")
        assert "SignatureDoesNotMatch" in str(refused.value) and "server string to sign is:" in str(refused.value)
        assert emu.signatures == {"v3": 1} and len(emu.messages) == 1


def test_aliyun_emulator_takes_the_official_v1_core_sdk_which_recognises_its_string_to_sign():
    from aliyunsdkcore.acs_exception.exceptions import ServerException
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkcore.request import RpcRequest

    def send(secret: str) -> bytes:
        request = RpcRequest("Dysmsapi", "2017-05-25", "SendSms")
        request.set_endpoint(emu.url.removeprefix("http://"))
        request.set_protocol_type("http")
        request.set_method("POST")
        for name, value in {"PhoneNumbers": "13912345678", "SignName": "仁济医院", "TemplateCode": "SMS_1",
                            "TemplateParam": '{"name": "张 *~"}'}.items():
            request.add_query_param(name, value)
        return AcsClient(KEY_ID, secret, "cn-hangzhou").do_action_with_exception(request)

    with AliyunSmsEmulator(KEY_ID, ALIYUN_SECRET) as emu:
        assert json.loads(send(ALIYUN_SECRET))["Code"] == "OK"
        with pytest.raises(ServerException) as refused:
            send("not-the-secret-0001")
        # the SDK compares the emulator's "server string to sign" with its own: equal, so it names the secret
        assert refused.value.get_error_code() == "InvalidAccessKeySecret"
        assert emu.signatures == {"v1": 1}


@pytest.mark.parametrize("version", ["v3", "v1"])
def test_the_aliyun_connector_signs_either_version(version):
    with AliyunSmsEmulator(KEY_ID, ALIYUN_SECRET) as emu:
        channel = AliyunSmsChannel.from_options("sms", {
            "endpoint": emu.url, "sign_name": "仁济医院", "access_key_id": KEY_ID, "access_key_secret": ALIYUN_SECRET,
            "signature_version": version, "templates": {"t": {"code": "SMS_1", "params": {"name": "张三"}}}})
        message = Message(idempotency_key="k-1", channel="sms", patient_id=1, address="13912345678", title="",
                          body="您好", template="t", category="clinical")
        result = channel.send(message)
        assert result.ok, result
        assert emu.signatures == {version: 1}
        assert channel.lookup(message, datetime.now(timezone.utc)).status.value == "accepted"


def test_tencent_emulator_answers_as_tencent_cloud_so_the_sdk_tells_success_from_error():
    from tencentcloud.common import credential
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile
    from tencentcloud.sms.v20210111 import models, sms_client

    def send(secret: str):
        profile = ClientProfile(httpProfile=HttpProfile(endpoint=emu.url.removeprefix("http://"), protocol="http"))
        client = sms_client.SmsClient(credential.Credential("AKID-sdk", secret), "ap-guangzhou", profile)
        request = models.SendSmsRequest()
        request.PhoneNumberSet, request.SmsSdkAppId, request.SignName = ["+8613912345678"], "1400000001", "仁济医院"
        request.TemplateId, request.TemplateParamSet = "1000001", ["张"]
        return client.SendSms(request)

    with TencentSmsEmulator("AKID-sdk", "tencent-secret-sdk-0001", "1400000001") as emu:
        sent = send("tencent-secret-sdk-0001")
        assert [s.Code for s in sent.SendStatusSet] == ["Ok"]
        with pytest.raises(TencentCloudSDKException) as refused:  # was taken for a success before
            send("not-the-secret-0001")
        assert refused.value.code == "AuthFailure.SignatureFailure"
        assert len(emu.messages) == 1


def test_wechat_emulator_with_wechatpy_and_callbacks_wechatpy_encrypts(wechat_engine, emulator):  # noqa: F811
    from wechatpy import WeChatClient
    from wechatpy.crypto import WeChatCrypto
    from wechatpy.exceptions import InvalidSignatureException, WeChatClientException

    class EmulatedClient(WeChatClient):  # the SDK hard-codes the token URL's host
        def fetch_access_token(self):  # noqa: ANN202
            return self._fetch_access_token(url=self.API_BASE_URL + "token", params={
                "grant_type": "client_credential", "appid": self.appid, "secret": self.secret})

    def client(secret: str) -> WeChatClient:
        made = EmulatedClient(APPID, secret)
        made.API_BASE_URL = emulator.url + "/cgi-bin/"
        return made

    assert client(SECRET).message.send_template(OPENID, "TPL-1", {"thing1": {"value": "x"}})["errcode"] == 0
    with pytest.raises(WeChatClientException) as refused:
        client("not-the-app-secret").message.send_template(OPENID, "TPL-1", {"thing1": {"value": "x"}})
    assert refused.value.errcode == 40125

    # a push wechatpy encrypts for the account is taken by carepath; one encrypted with another token is not
    engine = wechat_engine()
    engine.upsert_patient(PATIENT)
    from carepath.connectors.wechat.crypto import to_xml

    with serve_hooks(engine) as base:
        for token, status in ((TOKEN, 200), ("not-the-token", 401)):
            stamp, nonce = str(int(time.time())), "sdknonce"
            envelope = WeChatCrypto(token, AES_KEY, APPID).encrypt_message(
                to_xml(text_message(OPENID, "好的", msg_id=9001 if status == 200 else 9002)), nonce, stamp)
            signature = envelope.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
            answer = requests.post(f"{base}/hooks/wechat/wechat", data=envelope.encode(), timeout=10, params={
                "timestamp": stamp, "nonce": nonce, "encrypt_type": "aes", "msg_signature": signature,
                "signature": "unused"})
            assert answer.status_code == status, (token, answer.text)
    with engine.db.connect() as conn:
        from sqlalchemy import select

        assert conn.execute(select(Event.source_id).where(Event.type == "message.replied")).scalars().all() == \
            ["msg:9001"]
    # and the emulator's own pushes decrypt with wechatpy, with the right token only
    query, body = emulator.signed_request(text_message(OPENID, "你好"))
    plain = WeChatCrypto(TOKEN, AES_KEY, APPID).decrypt_message(body.decode(), query["msg_signature"],
                                                                query["timestamp"], query["nonce"])
    assert "<Content><![CDATA[你好]]></Content>" in plain
    with pytest.raises(InvalidSignatureException):
        WeChatCrypto("not-the-token", AES_KEY, APPID).decrypt_message(body.decode(), query["msg_signature"],
                                                                      query["timestamp"], query["nonce"])


def test_fhir_emulator_metadata_is_a_capability_statement():
    from fhir.resources.capabilitystatement import CapabilityStatement

    with FhirEmulator() as emu:
        answer = requests.get(f"{emu.base_url}/metadata", timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("application/fhir+json")
    statement = CapabilityStatement.model_validate(answer.json())
    assert statement.fhirVersion == "4.0.1" and statement.kind == "instance"
    assert {r.type for r in statement.rest[0].resource} >= {"Patient", "Appointment", "Encounter"}

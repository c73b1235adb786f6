"""Request signatures, checked against values computed by the providers' own SDKs.

The expected values were produced with ``aliyun-python-sdk-core`` 2.16.1
(``rpc_signature_composer``) and ``tencentcloud-sdk-python-common`` 3.1.195
(``AbstractClient._get_tc3_signature``) for the same inputs; the emulators'
independent implementations must agree with them too.
"""

from __future__ import annotations

import json
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carepath.connectors.aliyun_sms import emulator as aliyun_emulator
from carepath.connectors.aliyun_sms.signing import canonical_query, percent_encode, signature, signed_params
from carepath.connectors.tencent_sms import emulator as tencent_emulator
from carepath.connectors.tencent_sms.signing import CONTENT_TYPE, authorization, headers
from carepath.connectors.tencent_sms.signing import signature as tc3_signature

ALIYUN_PARAMS = {
    "Action": "SendSms", "Version": "2017-05-25", "Format": "JSON", "AccessKeyId": "testId",
    "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0",
    "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466", "Timestamp": "2017-07-12T02:42:19Z",
    "PhoneNumbers": "15300000001", "SignName": "阿里云短信测试专用", "TemplateCode": "SMS_71390007",
    "TemplateParam": '{"customer":"test ~* +/=&"}', "OutId": "123", "RegionId": "cn-hangzhou",
}
TENCENT_BODY = json.dumps({"PhoneNumberSet": ["+8613912345678"], "SmsSdkAppId": "1400000001",
                           "TemplateId": "100001", "SignName": "某医院", "TemplateParamSet": ["张", "5月2日"],
                           "SessionContext": "k1:sms"}, ensure_ascii=False).encode()
TENCENT_KEY = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"


@pytest.mark.parametrize("method, expected", [("GET", "hiBA9K49kuMLHoFytavKFZbgAo8="),
                                              ("POST", "KRpCTMGDlHb+t1qG35uOXfH6XLc=")])
def test_aliyun_signature_matches_the_official_sdk(method: str, expected: str) -> None:
    assert signature("testSecret", method, ALIYUN_PARAMS) == expected
    assert aliyun_emulator.expected_signature("testSecret", method, ALIYUN_PARAMS) == expected


def test_aliyun_percent_encoding_follows_rfc3986() -> None:
    assert percent_encode("a b*c~d/e+f") == "a%20b%2Ac~d%2Fe%2Bf"
    assert percent_encode("医") == "%E5%8C%BB"
    assert canonical_query({"b": "2", "a": "x y", "Signature": "ignored"}) == "a=x%20y&b=2"


def test_aliyun_signed_params_carry_the_common_parameters() -> None:
    signed = signed_params("id", "secret", "SendSms", {"PhoneNumbers": "13912345678"}, nonce="n-1")
    assert {k: signed[k] for k in ("Action", "Version", "Format", "AccessKeyId", "SignatureMethod",
                                   "SignatureVersion", "SignatureNonce")} == {
        "Action": "SendSms", "Version": "2017-05-25", "Format": "JSON", "AccessKeyId": "id",
        "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0", "SignatureNonce": "n-1"}
    assert signed["Signature"] == signature("secret", "POST", signed)


@pytest.mark.parametrize("host, expected", [
    ("sms.tencentcloudapi.com", "d0ba1b073cb0c89d5722da5d94f90de129b00a814224bcc1c2db362c40f2162a"),
    ("127.0.0.1:8123", "4e425ee0b2faadc98b1710f0ae8bd98565f7c4a34e4eef54e39b95a3e497aae5"),
])
def test_tencent_tc3_signature_matches_the_official_sdk(host: str, expected: str) -> None:
    timestamp = 1777600000  # 2026-05-01 UTC
    assert tc3_signature(TENCENT_KEY, host, TENCENT_BODY, timestamp) == expected
    signed = headers("AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", TENCENT_KEY, host, TENCENT_BODY, "SendSms",
                     timestamp, "ap-guangzhou")
    assert signed["Authorization"] == authorization("AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE", TENCENT_KEY, host,
                                                    TENCENT_BODY, timestamp)
    assert signed["Authorization"].endswith(f"/2026-05-01/sms/tc3_request, SignedHeaders=content-type;host, "
                                            f"Signature={expected}")
    received = {"content-type": CONTENT_TYPE, "host": host, "x-tc-timestamp": str(timestamp)}
    assert tencent_emulator.expected_signature(TENCENT_KEY, received, TENCENT_BODY, "content-type;host",
                                               "2026-05-01", "sms") == expected


@given(st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=30), min_size=1, max_size=6),
       st.sampled_from(["GET", "POST"]))
@settings(max_examples=60, deadline=None)
def test_aliyun_connector_and_emulator_agree_on_any_parameters(params: dict[str, str], method: str) -> None:
    """Two independent implementations of the RPC signature (connector, emulator) give the same value."""
    assert signature("s3cret", method, params) == aliyun_emulator.expected_signature("s3cret", method, params)


@given(st.text(max_size=40))
def test_aliyun_percent_encoding_round_trips_and_escapes_all_but_unreserved(text: str) -> None:
    encoded = percent_encode(text)
    assert unquote(encoded, errors="strict") == text
    assert set(encoded) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~%")


@given(st.binary(max_size=200), st.sampled_from(["sms.tencentcloudapi.com", "127.0.0.1:8080"]),
       st.integers(min_value=1_600_000_000, max_value=2_000_000_000))
@settings(max_examples=60, deadline=None)
def test_tencent_connector_and_emulator_agree_on_any_request(body: bytes, host: str, timestamp: int) -> None:
    from carepath.connectors.tencent_sms.signing import credential_date

    received = {"content-type": CONTENT_TYPE, "host": host, "x-tc-timestamp": str(timestamp)}
    assert tc3_signature("k3y", host, body, timestamp) == tencent_emulator.expected_signature(
        "k3y", received, body, "content-type;host", credential_date(timestamp), "sms")

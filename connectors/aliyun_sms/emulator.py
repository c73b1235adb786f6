"""A loopback emulator of Alibaba Cloud SMS (dysmsapi 2017-05-25) for tests and ``carepath emulator aliyun-sms``.

It checks every call's signature with its own implementation of both
algorithms Alibaba Cloud takes, V3 (``ACS3-HMAC-SHA256`` in the
``Authorization`` header, as the current official SDK signs) and the RPC V1
(HMAC-SHA1 ``Signature`` parameter): a bad one is answered HTTP 400
``SignatureDoesNotMatch`` with the service's "server string to sign is:"
text, which the official SDKs read. It checks the timestamp (15 minutes) and
nonce reuse, then serves ``SendSms`` and
``QuerySendDetails`` with the real response shapes and codes: a blacklisted
number gets ``isv.BLACK_KEY_CONTROL_LIMIT``, a number over its daily limit
``isv.BUSINESS_LIMIT_CONTROL``. Receipts and replies are pushed in the
provider's JSON array formats.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from urllib.parse import parse_qsl, quote

from carepath.connectors.sms_common.emulator import Recorded, SmsEmulator
from carepath.connectors.sms_common.segments import segment_count
from zoneinfo import ZoneInfo

BEIJING = ZoneInfo("Asia/Shanghai")
_MOBILE = re.compile(r"^1\d{10}$")
_SKEW = timedelta(minutes=15)


def _rfc3986(text: str) -> str:
    return quote(text.encode("utf-8"), safe="-_.~")


def rpc_string_to_sign(method: str, params: dict[str, str]) -> str:
    """The emulator's own RPC V1 string to sign of ``params``."""
    pairs = sorted((k, v) for k, v in params.items() if k != "Signature")
    query = "&".join(_rfc3986(k) + "=" + _rfc3986(v) for k, v in pairs)
    return method + "&" + _rfc3986("/") + "&" + _rfc3986(query)


def expected_signature(secret: str, method: str, params: dict[str, str]) -> str:
    """The emulator's own computation of the RPC signature 1.0 of ``params``."""
    text = rpc_string_to_sign(method, params)
    return base64.b64encode(hmac.new((secret + "&").encode(), text.encode(), hashlib.sha1).digest()).decode()


_V3 = re.compile(r"^ACS3-HMAC-SHA256 Credential=(?P<id>[^,]+),SignedHeaders=(?P<signed>[a-z0-9;\-]+),"
                 r"Signature=(?P<sig>[0-9a-f]{64})$")
_V3_REQUIRED = ("host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce",
                "x-acs-content-sha256")


def v3_string_to_sign(method: str, query: dict[str, str], headers: dict[str, str], signed: list[str],
                      body: bytes) -> str:
    """The emulator's own V3 (ACS3-HMAC-SHA256) string to sign of a request as received."""
    canonical_query = "&".join(f"{_rfc3986(k)}={_rfc3986(v)}" for k, v in sorted(query.items()))
    canonical_headers = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed)
    request = "\n".join([method, "/", canonical_query, canonical_headers, ";".join(signed),
                         hashlib.sha256(body).hexdigest()])
    return "ACS3-HMAC-SHA256\n" + hashlib.sha256(request.encode()).hexdigest()


def _beijing(at: datetime) -> str:
    return at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


class AliyunSmsEmulator(SmsEmulator):
    """``AliyunSmsEmulator(access_key_id, access_key_secret)``; ``templates`` maps codes to text (optional)."""

    def __init__(self, access_key_id: str = "emulator-key-id", access_key_secret: str = "emulator-secret-0001", *,
                 templates: dict[str, str] | None = None, sign_names: set[str] | None = None,
                 clock: Callable[[], datetime] | None = None, **kwargs: Any) -> None:
        super().__init__(clock=clock, **kwargs)
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.templates = templates
        self.sign_names = sign_names
        self._nonces: set[str] = set()
        self.signatures: Counter[str] = Counter()  # accepted calls by signature version (v3, v1)

    # -- the API ---------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        query = dict(parse_qsl(path.split("?", 1)[1] if "?" in path else "", keep_blank_values=True))
        params = dict(query)
        if method == "POST" and body and "json" not in headers.get("content-type", ""):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if headers.get("authorization", "").startswith("ACS3-HMAC-SHA256"):
            refused = self._authenticate_v3(method, query, headers, body)
            action = headers.get("x-acs-action", "")
            self.signatures["v3"] += refused is None
        else:
            refused = self._authenticate(method, params)
            action = params.get("Action", "")
            self.signatures["v1"] += refused is None
        if refused is not None:
            self.rejected.append(refused[1]["Code"])
            return refused
        self.calls[action] += 1
        if action == "SendSms":
            return self._send(params)
        if action == "QuerySendDetails":
            return self._query(params)
        return 404, self._error("InvalidAction.NotFound", f"Specified api {action!r} is not found.")

    @staticmethod
    def _error(code: str, message: str) -> dict[str, str]:
        return {"RequestId": str(uuid.uuid4()).upper(), "HostId": "dysmsapi.aliyuncs.com", "Code": code,
                "Message": message}

    def _authenticate(self, method: str, params: dict[str, str]) -> tuple[int, dict] | None:
        missing = [k for k in ("AccessKeyId", "Signature", "SignatureNonce", "Timestamp", "Action", "Version")
                   if not params.get(k)]
        if missing:
            return 400, self._error("MissingParameter", f"The input parameter {missing[0]!r} is not specified.")
        if params["AccessKeyId"] != self.access_key_id:
            return 404, self._error("InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        if (params.get("SignatureMethod"), params.get("SignatureVersion")) != ("HMAC-SHA1", "1.0"):
            return 400, self._error("InvalidParameter", "SignatureMethod/SignatureVersion not supported.")
        expected = expected_signature(self.access_key_secret, method, params)
        if not hmac.compare_digest(expected, params["Signature"]):
            return self._signature_mismatch(rpc_string_to_sign(method, params))
        return self._fresh(params["Timestamp"], params["SignatureNonce"])

    def _authenticate_v3(self, method: str, query: dict[str, str], headers: dict[str, str],
                         body: bytes) -> tuple[int, dict] | None:
        match = _V3.match(headers.get("authorization", ""))
        if match is None:
            return 400, self._error("IncompleteSignature", "The request signature does not conform to Aliyun "
                                                           "standards.")
        signed = match["signed"].split(";")
        missing = [h for h in _V3_REQUIRED if h not in signed or not headers.get(h)]
        if missing:
            return 400, self._error("MissingParameter", f"The header {missing[0]!r} is not signed or not given.")
        if match["id"] != self.access_key_id:
            return 404, self._error("InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        if headers["x-acs-content-sha256"] != hashlib.sha256(body).hexdigest():
            return 400, self._error("InvalidParameter", "x-acs-content-sha256 does not match the body.")
        to_sign = v3_string_to_sign(method, query, headers, signed, body)
        expected = hmac.new(self.access_key_secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, match["sig"]):
            return self._signature_mismatch(to_sign)
        return self._fresh(headers["x-acs-date"], headers["x-acs-signature-nonce"])

    def _signature_mismatch(self, string_to_sign: str) -> tuple[int, dict]:
        # the service's own words; the official SDKs read the string to sign after the colon
        return 400, self._error("SignatureDoesNotMatch", "Specified signature is not matched with our calculation. "
                                                         f"server string to sign is:{string_to_sign}")

    def _fresh(self, timestamp: str, nonce: str) -> tuple[int, dict] | None:
        try:
            at = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            return 400, self._error("InvalidTimeStamp.Format", "Specified time stamp is not valid.")
        if abs(self.clock() - at) > _SKEW:
            return 400, self._error("InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
        with self._lock:
            if nonce in self._nonces:
                return 400, self._error("SignatureNonceUsed", "Specified signature nonce was used already.")
            self._nonces.add(nonce)
        return None

    def _answer(self, code: str, message: str, **extra: Any) -> tuple[int, dict]:
        return 200, {"Code": code, "Message": message, "RequestId": str(uuid.uuid4()).upper(), **extra}

    def _send(self, p: dict[str, str]) -> tuple[int, dict]:
        phones = [n for n in p.get("PhoneNumbers", "").split(",") if n]
        if self.account_error:
            return self._answer(self.account_error, "账户余额不足")
        if len(phones) != 1 or not _MOBILE.match(phones[0]):
            return self._answer("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号")
        if self.sign_names is not None and p.get("SignName") not in self.sign_names:
            return self._answer("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名")
        if self.templates is not None and p.get("TemplateCode") not in self.templates:
            return self._answer("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板")
        try:
            params = json.loads(p.get("TemplateParam") or "{}")
        except ValueError:
            return self._answer("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
        refusal = self.refusal(phones[0])
        if refusal == "blacklisted":
            return self._answer("isv.BLACK_KEY_CONTROL_LIMIT", "黑名单管控")
        if refusal == "daily_limit":
            return self._answer("isv.BUSINESS_LIMIT_CONTROL", "触发天级流控Permits:%d" % self.daily_limit)
        content = self._content(p.get("TemplateCode", ""), params)
        biz_id = self.next_id("8") + "^0"
        self.record(Recorded(provider_id=biz_id, phone=phones[0], template=p.get("TemplateCode", ""), params=params,
                             sign_name=p.get("SignName", ""), reference=p.get("OutId", ""), at=self.clock(),
                             extra={"content": content}))
        self.pause_after_accept()
        return self._answer("OK", "OK", BizId=biz_id)

    def _content(self, code: str, params: dict) -> str:
        text = (self.templates or {}).get(code, "")
        return re.sub(r"\$\{(\w+)\}", lambda m: str(params.get(m.group(1), "")), text)

    def _query(self, p: dict[str, str]) -> tuple[int, dict]:
        day = p.get("SendDate", "")
        found = [m for m in self.find(p.get("PhoneNumber", ""))
                 if m.at.astimezone(BEIJING).strftime("%Y%m%d") == day]
        size, page = int(p.get("PageSize") or 10), int(p.get("CurrentPage") or 1)
        status = {None: 1, False: 2, True: 3}
        dtos = [{"PhoneNum": m.phone, "SendStatus": status[m.delivered], "ErrCode": "DELIVERED" if m.delivered else "",
                 "TemplateCode": m.template, "Content": f"【{m.sign_name}】{m.extra.get('content', '')}",
                 "SendDate": _beijing(m.at), "ReceiveDate": _beijing(m.at) if m.delivered else "",
                 "OutId": m.reference} for m in found[(page - 1) * size: page * size]]
        return self._answer("OK", "OK", TotalCount=len(found), SmsSendDetailDTOs={"SmsSendDetailDTO": dtos})

    # -- pushes ------------------------------------------------------------------------------

    def receipt_body(self, messages: list[Recorded]) -> list[dict]:
        now = self.clock()
        return [{"phone_number": m.phone, "send_time": _beijing(m.at), "report_time": _beijing(now),
                 "success": bool(m.delivered), "err_code": "DELIVERED" if m.delivered else "MK:0001",
                 "err_msg": "用户接收成功" if m.delivered else "失败",
                 "sms_size": str(segment_count(f"【{m.sign_name}】{m.extra.get('content', '')}")),
                 "biz_id": m.provider_id, "out_id": m.reference} for m in messages]

    def reply_body(self, phone: str, text: str, sequence: int) -> list[dict]:
        sign = self.messages[-1].sign_name if self.messages else ""
        return [{"phone_number": phone, "send_time": _beijing(self.clock()), "content": text, "sign_name": sign,
                 "dest_code": "1234", "sequence_id": 100000 + sequence}]


def serve(host: str, port: int) -> None:
    """``carepath emulator aliyun-sms``: credentials from ``CAREPATH_EMULATOR_KEY_ID`` / ``_SECRET``."""
    emulator = AliyunSmsEmulator(os.environ.get("CAREPATH_EMULATOR_KEY_ID", "emulator-key-id"),
                                 os.environ.get("CAREPATH_EMULATOR_SECRET", "emulator-secret-0001"),
                                 host=host, port=port)
    print(f"aliyun-sms emulator on {emulator.url} (AccessKeyId {emulator.access_key_id}); "
          f"set endpoint = \"{emulator.url}\" in carepath.toml", flush=True)
    emulator.serve_forever()

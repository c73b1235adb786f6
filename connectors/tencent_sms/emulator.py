"""A loopback emulator of Tencent Cloud SMS (2021-01-11) for tests and ``carepath emulator tencent-sms``.

Every call's ``Authorization`` is checked with the emulator's own
computation of TC3-HMAC-SHA256 over the headers and body it received; a bad
one is answered ``AuthFailure.SignatureFailure``, a timestamp more than 10
minutes off ``InternalError.RequestTimeException``. ``SendSms`` answers
per number in ``SendStatusSet`` (``FailedOperation.PhoneNumberInBlacklist``,
``LimitExceeded.PhoneNumberDailyLimit``...), parameters over 12 characters
are refused, and ``PullSmsSendStatusByPhoneNumber`` / ``PullSmsSendStatus``
return status reports (the emulator reports a message as soon as it takes
it). Receipts and replies are pushed in the provider's formats.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

from carepath.connectors.sms_common.emulator import Recorded, SmsEmulator
from carepath.connectors.sms_common.numbers import national
from carepath.connectors.sms_common.segments import segment_count
from zoneinfo import ZoneInfo

BEIJING = ZoneInfo("Asia/Shanghai")
_AUTH = re.compile(r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>\w+)/tc3_request, "
                   r"SignedHeaders=(?P<signed>[a-z;\-]+), Signature=(?P<sig>[0-9a-f]{64})$")
_E164_CN = re.compile(r"^\+861\d{10}$")


def expected_signature(secret_key: str, headers: dict[str, str], body: bytes, signed: str, date: str,
                       service: str) -> str:
    """The emulator's own TC3-HMAC-SHA256 over the headers named in ``signed`` as received."""
    canonical_headers = "".join(f"{n}:{headers.get(n, '').strip().lower()}\n" for n in signed.split(";"))
    request = "\n".join(["POST", "/", "", canonical_headers, signed, hashlib.sha256(body).hexdigest()])
    scope = f"{date}/{service}/tc3_request"
    to_sign = "\n".join(["TC3-HMAC-SHA256", headers.get("x-tc-timestamp", ""), scope,
                         hashlib.sha256(request.encode()).hexdigest()])
    key = ("TC3" + secret_key).encode()
    for part in (date, service, "tc3_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


class TencentSmsEmulator(SmsEmulator):
    """``TencentSmsEmulator(secret_id, secret_key, sms_sdk_app_id)``; ``templates`` maps ids to text (optional)."""

    #: exactly as Tencent Cloud answers: the official SDK raises an error answer only for this type
    content_type = "application/json"

    def __init__(self, secret_id: str = "AKIDemulator", secret_key: str = "emulator-secret-0001",
                 sms_sdk_app_id: str = "1400000001", *, templates: dict[str, str] | None = None,
                 param_max_length: int = 12, clock: Callable[[], datetime] | None = None, **kwargs: Any) -> None:
        super().__init__(clock=clock, **kwargs)
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.sms_sdk_app_id = sms_sdk_app_id
        self.templates = templates
        self.param_max_length = param_max_length

    @staticmethod
    def _error(code: str, message: str) -> tuple[int, dict]:
        return 200, {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": str(uuid.uuid4())}}

    @staticmethod
    def _ok(**fields: Any) -> tuple[int, dict]:
        return 200, {"Response": {**fields, "RequestId": str(uuid.uuid4())}}

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        refused = self._authenticate(method, headers, body)
        if refused is not None:
            self.rejected.append(refused[1]["Response"]["Error"]["Code"])
            return refused
        try:
            payload = json.loads(body)
        except ValueError:
            return self._error("InvalidParameter", "request body is not JSON")
        action = headers.get("x-tc-action", "")
        self.calls[action] += 1
        if action == "SendSms":
            return self._send(payload)
        if action in ("PullSmsSendStatusByPhoneNumber", "PullSmsSendStatus"):
            return self._pull(payload)
        return self._error("InvalidAction", f"action {action!r} not found")

    def _authenticate(self, method: str, headers: dict[str, str], body: bytes) -> tuple[int, dict] | None:
        match = _AUTH.match(headers.get("authorization", ""))
        if method != "POST" or match is None:
            return self._error("AuthFailure.SignatureFailure", "The provided credentials could not be validated.")
        if match["id"] != self.secret_id:
            return self._error("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
        try:
            timestamp = int(headers.get("x-tc-timestamp", ""))
        except ValueError:
            return self._error("MissingParameter", "X-TC-Timestamp is missing")
        if abs(self.clock().timestamp() - timestamp) > 600:
            return self._error("InternalError.RequestTimeException", "request time differs by more than 10 min")
        date = datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")
        expected = expected_signature(self.secret_key, headers, body, match["signed"], date, match["service"])
        if match["date"] != date or "host" not in match["signed"].split(";") or \
                not hmac.compare_digest(expected, match["sig"]):
            return self._error("AuthFailure.SignatureFailure", "The provided credentials could not be validated. "
                                                               "Please check your signature is correct.")
        return None

    def _send(self, p: dict[str, Any]) -> tuple[int, dict]:
        if self.account_error:
            return self._error(self.account_error, "insufficient balance in SMS package")
        if str(p.get("SmsSdkAppId")) != self.sms_sdk_app_id:
            return self._error("UnauthorizedOperation.SmsSdkAppIdVerifyFail", "SmsSdkAppId verify failed")
        template = str(p.get("TemplateId", ""))
        if self.templates is not None and template not in self.templates:
            return self._error("FailedOperation.TemplateIncorrectOrUnapproved", "template unapproved or not exist")
        params = [str(v) for v in p.get("TemplateParamSet") or []]
        if any(len(v) > self.param_max_length for v in params):
            return self._error("InvalidParameterValue.TemplateParameterLengthLimit",
                               "single template parameter exceeds the length limit")
        content = re.sub(r"\{(\d+)\}", lambda m: params[int(m.group(1)) - 1] if int(m.group(1)) <= len(params)
                         else "", (self.templates or {}).get(template, ""))
        statuses = [self._one(str(phone), template, params, str(p.get("SignName", "")),
                              str(p.get("SessionContext", "")), content) for phone in p.get("PhoneNumberSet") or []]
        if any(s["Code"] == "Ok" for s in statuses):
            self.pause_after_accept()
        return self._ok(SendStatusSet=statuses)

    def _one(self, phone: str, template: str, params: list[str], sign: str, session: str, content: str) -> dict:
        status = {"SerialNo": "", "PhoneNumber": phone, "Fee": 0, "SessionContext": session, "IsoCode": "CN"}
        if not _E164_CN.match(phone):
            return {**status, "Code": "InvalidParameterValue.IncorrectPhoneNumber", "Message": "incorrect number"}
        refusal = self.refusal(phone)
        if refusal == "blacklisted":
            return {**status, "Code": "FailedOperation.PhoneNumberInBlacklist", "Message": "number in blacklist"}
        if refusal == "daily_limit":
            return {**status, "Code": "LimitExceeded.PhoneNumberDailyLimit", "Message": "daily limit reached"}
        serial = f"{self.next_id('2645:')}{uuid.uuid4().int % 10**10:010d}"
        fee = segment_count(f"【{sign}】{content}")
        self.record(Recorded(provider_id=serial, phone=phone, template=template, params=params, sign_name=sign,
                             reference=session, at=self.clock(), extra={"content": content, "fee": fee}))
        return {**status, "SerialNo": serial, "Fee": fee, "Code": "Ok", "Message": "send success"}

    def _pull(self, p: dict[str, Any]) -> tuple[int, dict]:
        if str(p.get("SmsSdkAppId")) != self.sms_sdk_app_id:
            return self._error("UnauthorizedOperation.SmsSdkAppIdVerifyFail", "SmsSdkAppId verify failed")
        since = int(p.get("BeginTime") or 0)
        found = self.find(str(p["PhoneNumber"])) if p.get("PhoneNumber") else list(self.messages)
        found = [m for m in found if m.at.timestamp() >= since]
        offset, limit = int(p.get("Offset") or 0), int(p.get("Limit") or 100)
        reports = [{"UserReceiveTime": m.at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S"), "CountryCode": "86",
                    "SubscriberNumber": national(m.phone), "PhoneNumber": m.phone, "SerialNo": m.provider_id,
                    "ReportStatus": "FAIL" if m.delivered is False else "SUCCESS",
                    "Description": "DELIVRD" if m.delivered is not False else "UNDELIV",
                    "SessionContext": m.reference} for m in found[offset:offset + limit]]
        return self._ok(PullSmsSendStatusSet=reports)

    # -- pushes ------------------------------------------------------------------------------

    def receipt_body(self, messages: list[Recorded]) -> list[dict]:
        now = self.clock().astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
        return [{"user_receive_time": now, "nationcode": "86", "mobile": national(m.phone),
                 "report_status": "SUCCESS" if m.delivered else "FAIL", "errmsg": "DELIVRD" if m.delivered else "MK:0001",
                 "description": "用户短信送达成功" if m.delivered else "用户短信未送达", "sid": m.provider_id}
                for m in messages]

    def reply_body(self, phone: str, text: str, sequence: int) -> dict:
        sign = self.messages[-1].sign_name if self.messages else ""
        return {"extend": "", "mobile": national(phone), "nationcode": "86", "sign": sign, "text": text,
                "time": int(self.clock().timestamp()) + sequence}


def serve(host: str, port: int) -> None:
    """``carepath emulator tencent-sms``: credentials from ``CAREPATH_EMULATOR_KEY_ID`` / ``_SECRET`` / ``_APP_ID``."""
    emulator = TencentSmsEmulator(os.environ.get("CAREPATH_EMULATOR_KEY_ID", "AKIDemulator"),
                                  os.environ.get("CAREPATH_EMULATOR_SECRET", "emulator-secret-0001"),
                                  os.environ.get("CAREPATH_EMULATOR_APP_ID", "1400000001"), host=host, port=port)
    print(f"tencent-sms emulator on {emulator.url} (SecretId {emulator.secret_id}, SmsSdkAppId "
          f"{emulator.sms_sdk_app_id}); set endpoint = \"{emulator.url}\" in carepath.toml", flush=True)
    emulator.serve_forever()

"""The ``tencent-sms`` channel: SendSms 2021-01-11 (TC3-HMAC-SHA256), ``SessionContext`` = idempotency key,
per-number results from ``SendStatusSet``, lookup through PullSmsSendStatusByPhoneNumber."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, ClassVar, Mapping
from urllib.parse import urlsplit

from carepath.connectors.sms_common.channel import Outcome, ProviderAnswer, SmsChannel
from carepath.connectors.sms_common.numbers import e164
from carepath.connectors.sms_common.templates import TemplateMapping
from carepath.connectors.tencent_sms.config import TencentSmsConfig
from carepath.connectors.tencent_sms.signing import headers
from carepath.plugins.contracts import LookupResult, LookupStatus, Message, SendResult

PARAM_TOO_LONG = "InvalidParameterValue.TemplateParameterLengthLimit"
# https://cloud.tencent.com/document/product/382/55981 (SendSms error codes), as PROTOCOLS.md lists them
OUTCOMES: Mapping[str, Outcome] = {
    "Ok": Outcome.OK,
    "LimitExceeded.PhoneNumberDailyLimit": Outcome.RATE_LIMIT,
    "LimitExceeded.PhoneNumberOneHourLimit": Outcome.RATE_LIMIT,
    "LimitExceeded.PhoneNumberThirtySecondLimit": Outcome.RATE_LIMIT,
    "LimitExceeded.PhoneNumberSameContentDailyLimit": Outcome.RATE_LIMIT,
    "LimitExceeded.AppDailyLimit": Outcome.RETRY,
    "LimitExceeded.DailyLimit": Outcome.RETRY,
    "InternalError.Timeout": Outcome.RETRY,
    "InternalError.RequestTimeException": Outcome.RETRY,
    "RequestLimitExceeded": Outcome.RETRY,
    "FailedOperation.MarketingSendTimeConstraint": Outcome.RETRY,
    "FailedOperation.PhoneNumberInBlacklist": Outcome.UNSUBSCRIBED,
    "FailedOperation.TemplateIncorrectOrUnapproved": Outcome.PERMANENT,
    "FailedOperation.SignatureIncorrectOrUnapproved": Outcome.PERMANENT,
    "FailedOperation.ContainSensitiveWord": Outcome.PERMANENT,
    "InvalidParameterValue.IncorrectPhoneNumber": Outcome.PERMANENT,
    PARAM_TOO_LONG: Outcome.PERMANENT,
    "InvalidParameterValue.ProhibitedUseUrlInTemplateParameter": Outcome.PERMANENT,
    "FailedOperation.InsufficientBalanceInSmsPackage": Outcome.ACCOUNT,
    "UnauthorizedOperation.SmsSdkAppIdVerifyFail": Outcome.ACCOUNT,
    "UnauthorizedOperation.SerivceSuspendDueToArrears": Outcome.ACCOUNT,
    "AuthFailure.SignatureFailure": Outcome.ACCOUNT,
    "AuthFailure.SecretIdNotFound": Outcome.ACCOUNT,
    "AuthFailure.UnauthorizedOperation": Outcome.ACCOUNT,
}


class TencentSmsChannel(SmsChannel):
    """Tencent Cloud SMS (SendSms 2021-01-11)."""

    type_name: ClassVar[str] = "tencent-sms"
    Config = TencentSmsConfig
    outcomes = OUTCOMES
    config: TencentSmsConfig

    def _call(self, action: str, payload: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        cfg = self.config
        body = json.dumps(payload, ensure_ascii=False).encode()
        host = urlsplit(cfg.endpoint).netloc
        signed = headers(cfg.secret_id, cfg.secret_key.get_secret_value(), host, body, action,
                         int(self.now().timestamp()), cfg.region)
        status, data = self._post_json(cfg.endpoint, data=body, headers=signed)
        answer = data.get("Response")
        return status, answer if isinstance(answer, dict) else {}

    def _check_params(self, mapping: TemplateMapping, params: dict[str, str]) -> SendResult | None:
        limit = self.config.param_max_length
        for name, value in params.items():
            if limit is not None and len(value) > limit:
                return SendResult.permanent(PARAM_TOO_LONG, f"template parameter {name!r} has {len(value)} "
                                                            f"characters, at most {limit} allowed")
        return None

    def _submit(self, message: Message, mapping: TemplateMapping, params: dict[str, str],
                sign_name: str) -> ProviderAnswer:
        cfg = self.config
        status, data = self._call("SendSms", {
            "PhoneNumberSet": [e164(message.address)], "SmsSdkAppId": cfg.sms_sdk_app_id,
            "TemplateId": mapping.code, "SignName": sign_name, "TemplateParamSet": list(params.values()),
            "SessionContext": message.idempotency_key})
        error = data.get("Error")
        if isinstance(error, dict):
            return ProviderAnswer(code=str(error.get("Code")), detail=str(error.get("Message") or ""),
                                  http_status=status)
        results = data.get("SendStatusSet") or []
        if not results:
            return ProviderAnswer(code=f"http_{status}", detail="no SendStatusSet in the answer", http_status=status)
        result = results[0]
        return ProviderAnswer(code=str(result.get("Code")), detail=str(result.get("Message") or ""),
                              provider_id=result.get("SerialNo") or None, fee=result.get("Fee") or None,
                              http_status=status)

    def _query(self, message: Message, attempted_at: datetime) -> LookupResult:
        status, data = self._call("PullSmsSendStatusByPhoneNumber", {
            "BeginTime": int(attempted_at.timestamp()) - 300, "Offset": 0, "Limit": 100,
            "PhoneNumber": e164(message.address), "SmsSdkAppId": self.config.sms_sdk_app_id})
        if "Error" in data or "PullSmsSendStatusSet" not in data:
            code = (data.get("Error") or {}).get("Code") or f"http_{status}"
            return LookupResult(LookupStatus.UNKNOWN, detail=f"PullSmsSendStatusByPhoneNumber: {code}")
        for item in data["PullSmsSendStatusSet"] or []:
            if item.get("SessionContext") == message.idempotency_key:
                return LookupResult(LookupStatus.ACCEPTED, provider_id=item.get("SerialNo"),
                                    delivered=item.get("ReportStatus") == "SUCCESS",
                                    detail=str(item.get("ReportStatus")))
        return LookupResult(LookupStatus.NOT_FOUND, detail="no status report with this SessionContext")


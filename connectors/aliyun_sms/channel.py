"""The ``aliyun-sms`` channel: SendSms with ``OutId`` = idempotency key, QuerySendDetails to look up."""

from __future__ import annotations

import json
from urllib.parse import urlsplit
from datetime import datetime, timedelta
from typing import Any, ClassVar, Mapping

from carepath.connectors.sms_common.callbacks import BEIJING, lookup_provider_id
from carepath.connectors.sms_common.numbers import national
from carepath.connectors.aliyun_sms.config import AliyunSmsConfig
from carepath.connectors.aliyun_sms.signing import canonical_query, signed_params, v3_headers
from carepath.connectors.sms_common.channel import Outcome, ProviderAnswer, SmsChannel
from carepath.connectors.sms_common.templates import TemplateMapping
from carepath.plugins.contracts import LookupResult, LookupStatus, Message

# https://help.aliyun.com/document_detail/101346.html (API error codes), as PROTOCOLS.md lists them
OUTCOMES: Mapping[str, Outcome] = {
    "OK": Outcome.OK,
    "isv.BUSINESS_LIMIT_CONTROL": Outcome.RATE_LIMIT,
    "isp.SYSTEM_ERROR": Outcome.RETRY,
    "Throttling.User": Outcome.RETRY,
    "ServiceUnavailable": Outcome.RETRY,
    "isv.BLACK_KEY_CONTROL_LIMIT": Outcome.UNSUBSCRIBED,  # 黑名单管控: the number is blacklisted
    "isv.MOBILE_NUMBER_ILLEGAL": Outcome.PERMANENT,
    "isv.TEMPLATE_MISSING_PARAMETERS": Outcome.PERMANENT,
    "isv.INVALID_JSON_PARAM": Outcome.PERMANENT,
    "isv.SMS_SIGNATURE_ILLEGAL": Outcome.PERMANENT,
    "isv.SMS_SIGN_ILLEGAL": Outcome.PERMANENT,
    "isv.SMS_TEMPLATE_ILLEGAL": Outcome.PERMANENT,
    "isv.SMS_CONTENT_ILLEGAL": Outcome.PERMANENT,
    "isv.PARAM_LENGTH_LIMIT": Outcome.PERMANENT,
    "isv.PARAM_NOT_SUPPORT_URL": Outcome.PERMANENT,
    "isv.AMOUNT_NOT_ENOUGH": Outcome.ACCOUNT,
    "isv.OUT_OF_SERVICE": Outcome.ACCOUNT,
    "isp.RAM_PERMISSION_DENY": Outcome.ACCOUNT,
    "isv.ACCOUNT_NOT_EXISTS": Outcome.ACCOUNT,
    "isv.ACCOUNT_ABNORMAL": Outcome.ACCOUNT,
    "isv.PRODUCT_UN_SUBSCRIPT": Outcome.ACCOUNT,
    "isv.DAY_LIMIT_CONTROL": Outcome.ACCOUNT,
    "isv.MONTH_LIMIT_CONTROL": Outcome.ACCOUNT,
    "SignatureDoesNotMatch": Outcome.ACCOUNT,
    "InvalidAccessKeyId.NotFound": Outcome.ACCOUNT,
    "InvalidTimeStamp.Expired": Outcome.RETRY,
    "SignatureNonceUsed": Outcome.RETRY,
}
# QuerySendDetails SendStatus: 1 waiting for a receipt, 2 failed, 3 delivered
_DELIVERED = {"1": None, "2": False, "3": True}


class AliyunSmsChannel(SmsChannel):
    """Alibaba Cloud SMS (dysmsapi 2017-05-25), signed V3 (ACS3-HMAC-SHA256) or, as configured, RPC V1."""

    type_name: ClassVar[str] = "aliyun-sms"
    Config = AliyunSmsConfig
    outcomes = OUTCOMES
    config: AliyunSmsConfig

    def _call(self, action: str, params: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        cfg = self.config
        secret = cfg.access_key_secret.get_secret_value()
        base = cfg.endpoint.rstrip("/") + "/"
        if cfg.signature_version == "v1":
            body = signed_params(cfg.access_key_id, secret, action, {"RegionId": cfg.region_id, **params},
                                 method="POST", now=self.now())
            return self._post_json(base, data=body)
        # parameters in the form body, not the URL: phone numbers stay out of access and debug logs
        body = canonical_query({"RegionId": cfg.region_id, **params}).encode()
        headers = v3_headers(cfg.access_key_id, secret, action, urlsplit(base).netloc, {}, body=body,
                             now=self.now())
        return self._post_json(base, data=body, headers=headers)

    def _submit(self, message: Message, mapping: TemplateMapping, params: dict[str, str],
                sign_name: str) -> ProviderAnswer:
        status, data = self._call("SendSms", {
            "PhoneNumbers": national(message.address), "SignName": sign_name, "TemplateCode": mapping.code,
            "TemplateParam": json.dumps(params, ensure_ascii=False), "OutId": message.idempotency_key})
        code = str(data.get("Code") or f"http_{status}")
        return ProviderAnswer(code=code, detail=str(data.get("Message") or ""),
                              provider_id=str(data["BizId"]) if data.get("BizId") else None, http_status=status)

    def _query(self, message: Message, attempted_at: datetime) -> LookupResult:
        # SendDate is the Beijing date; a call just before midnight may be dated the next day
        local = attempted_at.astimezone(BEIJING)
        days = dict.fromkeys([local.date(), (local + timedelta(minutes=5)).date()])
        for day in days:
            status, data = self._call("QuerySendDetails", {
                "PhoneNumber": national(message.address), "SendDate": day.strftime("%Y%m%d"),
                "PageSize": "50", "CurrentPage": "1"})
            if data.get("Code") != "OK":
                return LookupResult(LookupStatus.UNKNOWN, detail=f"QuerySendDetails: {data.get('Code') or status}")
            details = (data.get("SmsSendDetailDTOs") or {}).get("SmsSendDetailDTO") or []
            for item in details:
                if item.get("OutId") == message.idempotency_key:
                    # the answer carries no BizId: receipts find the message by its OutId instead
                    return LookupResult(LookupStatus.ACCEPTED,
                                        provider_id=item.get("BizId") or lookup_provider_id(message.idempotency_key),
                                        delivered=_DELIVERED.get(str(item.get("SendStatus"))),
                                        detail=f"SendStatus {item.get('SendStatus')}")
        return LookupResult(LookupStatus.NOT_FOUND, detail="no message with this OutId")


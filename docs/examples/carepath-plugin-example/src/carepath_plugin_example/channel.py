"""A generic signed HTTP webhook channel.

Each message is POSTed as JSON to ``url``; the header ``X-Carepath-Signature``
carries ``sha256=<hex HMAC-SHA256 of the raw body, keyed with secret>``. The
receiver answers 2xx (optionally ``{"id": "..."}``, the provider id); 408, 429
and 5xx are retried later, any other 4xx is permanent. Delivery receipts and
replies come back to ``/hooks/webhook/<name>`` signed the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import datetime, timezone
from typing import Any, ClassVar, Literal

import requests
from pydantic import Field, HttpUrl, SecretStr

from carepath.masking import mask_address
from carepath.plugins.contracts import (
    CallbackRequest,
    Capabilities,
    Channel,
    ConnectorConfig,
    Message,
    SendResult,
    classify_http_status,
)

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Carepath-Signature"
CALLBACK_TYPES = ("message.delivered", "message.failed", "message.replied")


def sign(secret: str, body: bytes) -> str:
    """The signature header value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(secret: str, body: bytes, signature: str) -> bool:
    """Constant-time check of a signature header value."""
    return bool(signature) and hmac.compare_digest(sign(secret, body), signature)


class WebhookConfig(ConnectorConfig):
    """``[connectors.<name>] type = "webhook"`` options."""

    url: HttpUrl = Field(description="where messages are POSTed")
    secret: SecretStr = Field(min_length=16, description="HMAC-SHA256 key shared with the receiver")
    timeout: float = Field(5.0, gt=0, le=60, description="connect and read timeout in seconds")
    address: Literal["phone", "openid", "none"] = Field("phone", description="which patient contact to send")


class WebhookChannel(Channel):
    """POSTs signed JSON messages to a receiver; accepts signed receipts back."""

    type_name: ClassVar[str] = "webhook"
    Config = WebhookConfig
    capabilities: ClassVar[Capabilities] = Capabilities(max_length=4000, network=True, callbacks=True)
    config: WebhookConfig

    def __init__(self, name: str, config: WebhookConfig | None = None) -> None:
        super().__init__(name, config)
        self.address_kind = self.config.address  # type: ignore[misc]

    def payload(self, message: Message) -> bytes:
        """The exact bytes sent (and signed) for ``message``."""
        return json.dumps({"id": message.idempotency_key, "channel": self.name, "patient_id": message.patient_id,
                           "to": message.address, "title": message.title, "body": message.body,
                           "template": message.template, "category": message.category, "data": message.data},
                          ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()

    def send(self, message: Message) -> SendResult:
        cfg = self.config
        body = self.payload(message)
        headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": message.idempotency_key,
                   SIGNATURE_HEADER: sign(cfg.secret.get_secret_value(), body)}
        to = mask_address(self.address_kind, message.address)
        log.debug("webhook %s: POST for %s (patient %s)", self.name, to, message.patient_id)
        try:
            response = requests.post(str(cfg.url), data=body, headers=headers, timeout=cfg.timeout)
        except requests.Timeout:
            return self._failed(SendResult.retryable("timeout", f"no answer within {cfg.timeout:g} s"))
        except requests.ConnectionError:
            return self._failed(SendResult.retryable("connection", "could not connect to the receiver"))
        except requests.RequestException as exc:
            return self._failed(SendResult.retryable("request_error", type(exc).__name__))
        kind = classify_http_status(response.status_code)
        if kind is not None:
            code = f"http_{response.status_code}"
            return self._failed(SendResult(ok=False, error_kind=kind, error_code=code,
                                           error=f"receiver answered HTTP {response.status_code}"))
        return SendResult.sent(_provider_id(response))

    def _failed(self, result: SendResult) -> SendResult:
        kind = result.error_kind.value if result.error_kind else ""
        log.info("webhook %s: %s (%s)", self.name, result.error_code, kind)
        return result

    # -- callbacks -------------------------------------------------------------------

    def verify_callback(self, request: CallbackRequest) -> bool:
        return signature_ok(self.config.secret.get_secret_value(), request.body, request.header(SIGNATURE_HEADER))

    def parse_callback(self, request: CallbackRequest) -> list[Any]:
        """``{"events": [{"id", "type", "provider_id", "patient_mrn", "occurred_at", "text"?}]}`` -> events."""
        from carepath.definition.events import EventIn

        events = []
        for item in json.loads(request.body).get("events", []):
            if item.get("type") not in CALLBACK_TYPES:
                continue
            occurred = item.get("occurred_at") or datetime.now(timezone.utc).isoformat()
            payload = {k: item[k] for k in ("provider_id", "text") if k in item}
            events.append(EventIn(type=item["type"], source=f"webhook:{self.name}",
                                  source_id=str(item.get("id") or f"{item['type']}:{item.get('provider_id')}"),
                                  patient_mrn=str(item.get("patient_mrn", "")), occurred_at=occurred,
                                  payload=payload))
        return events


def _provider_id(response: requests.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("id"):
        return str(data["id"])
    return response.headers.get("X-Message-Id")

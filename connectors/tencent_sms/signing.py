"""Tencent Cloud API signature v3 (TC3-HMAC-SHA256) for JSON POST requests.

1. canonical request: ``POST / (empty query) content-type:... host:... content-type;host sha256hex(body)``;
2. ``StringToSign = "TC3-HMAC-SHA256" \\n timestamp \\n date/service/tc3_request \\n sha256hex(canonical request)``,
   ``date`` the UTC date of the timestamp;
3. signing key: ``HMAC("TC3" + SecretKey, date)`` -> ``service`` -> ``"tc3_request"``;
4. ``Signature = hex(HMAC(signing key, StringToSign))``.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timezone

ALGORITHM = "TC3-HMAC-SHA256"
CONTENT_TYPE = "application/json; charset=utf-8"
SIGNED_HEADERS = "content-type;host"
API_VERSION = "2021-01-11"
SERVICE = "sms"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def credential_date(timestamp: int) -> str:
    """``YYYY-MM-DD`` of ``timestamp`` in UTC."""
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")


def canonical_request(host: str, body: bytes, content_type: str = CONTENT_TYPE) -> str:
    return (f"POST\n/\n\ncontent-type:{content_type}\nhost:{host}\n\n{SIGNED_HEADERS}\n"
            + hashlib.sha256(body).hexdigest())


def string_to_sign(host: str, body: bytes, timestamp: int, service: str = SERVICE,
                   content_type: str = CONTENT_TYPE) -> str:
    scope = f"{credential_date(timestamp)}/{service}/tc3_request"
    digest = hashlib.sha256(canonical_request(host, body, content_type).encode()).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{digest}"


def signature(secret_key: str, host: str, body: bytes, timestamp: int, service: str = SERVICE,
              content_type: str = CONTENT_TYPE) -> str:
    """Hex ``Signature`` of a JSON POST of ``body`` to ``host`` at ``timestamp``."""
    key = _hmac(_hmac(_hmac(f"TC3{secret_key}".encode(), credential_date(timestamp)), service), "tc3_request")
    return hmac.new(key, string_to_sign(host, body, timestamp, service, content_type).encode(),
                    hashlib.sha256).hexdigest()


def authorization(secret_id: str, secret_key: str, host: str, body: bytes, timestamp: int,
                  service: str = SERVICE) -> str:
    """The ``Authorization`` header value."""
    scope = f"{credential_date(timestamp)}/{service}/tc3_request"
    return (f"{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders={SIGNED_HEADERS}, "
            f"Signature={signature(secret_key, host, body, timestamp, service)}")


def headers(secret_id: str, secret_key: str, host: str, body: bytes, action: str, timestamp: int,
            region: str) -> dict[str, str]:
    """Every header of a signed SMS API call."""
    return {"Authorization": authorization(secret_id, secret_key, host, body, timestamp),
            "Content-Type": CONTENT_TYPE, "Host": host, "X-TC-Action": action, "X-TC-Version": API_VERSION,
            "X-TC-Timestamp": str(timestamp), "X-TC-Region": region}

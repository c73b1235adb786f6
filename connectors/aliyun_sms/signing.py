"""Alibaba Cloud RPC request signature, version 1.0 (HMAC-SHA1).

1. every parameter but ``Signature``, sorted by name;
2. names and values percent-encoded per RFC 3986 (space ``%20``, ``*`` ``%2A``,
   ``~`` kept), joined ``k=v`` with ``&``: the canonical query;
3. ``StringToSign = METHOD & percentEncode("/") & percentEncode(canonical query)``;
4. ``Signature = base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign))``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import datetime, timezone
from typing import Mapping
from urllib.parse import quote

API_VERSION = "2017-05-25"
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def percent_encode(value: str) -> str:
    """RFC 3986 encoding of UTF-8 text: only ``A-Z a-z 0-9 - _ . ~`` stay as they are."""
    return quote(value, safe="~")


def canonical_query(params: Mapping[str, str]) -> str:
    """The sorted, encoded ``k=v&...`` of every parameter but ``Signature``."""
    return "&".join(f"{percent_encode(k)}={percent_encode(params[k])}"
                    for k in sorted(params) if k != "Signature")


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    return f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"


def signature(secret: str, method: str, params: Mapping[str, str]) -> str:
    """The ``Signature`` parameter for ``params`` sent with ``method``."""
    digest = hmac.new(f"{secret}&".encode(), string_to_sign(method, params).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def signed_params(access_key_id: str, secret: str, action: str, params: Mapping[str, str], *,
                  method: str = "POST", now: datetime | None = None, nonce: str | None = None) -> dict[str, str]:
    """The API's own ``params`` plus the common ones, with ``Signature``."""
    at = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    common = {"Action": action, "Version": API_VERSION, "Format": "JSON", "AccessKeyId": access_key_id,
              "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0",
              "SignatureNonce": nonce or str(uuid.uuid4()), "Timestamp": at.strftime(TIMESTAMP_FORMAT)}
    full = {**common, **{k: str(v) for k, v in params.items()}}
    full["Signature"] = signature(secret, method, full)
    return full

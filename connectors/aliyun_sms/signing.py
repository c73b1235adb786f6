"""Alibaba Cloud request signatures: V3 (``ACS3-HMAC-SHA256``, the default) and the RPC V1 (HMAC-SHA1).

V3, as Alibaba Cloud's current SDKs sign:

1. headers ``host``, ``x-acs-action``, ``x-acs-version``, ``x-acs-date`` (UTC,
   ``YYYY-MM-DDTHH:MM:SSZ``), ``x-acs-signature-nonce``, ``x-acs-content-sha256``
   (hex SHA-256 of the body) and ``accept``, all signed;
2. ``CanonicalRequest = METHOD \n / \n canonical query \n canonical headers \n
   signed headers \n hex(SHA-256(body))`` (canonical query: sorted, RFC 3986
   encoded ``k=v`` joined by ``&``; canonical headers: ``name:value\n`` each,
   names lower-case and sorted; signed headers: their names joined by ``;``);
3. ``StringToSign = "ACS3-HMAC-SHA256" \n hex(SHA-256(CanonicalRequest))``;
4. ``Authorization: ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<...>,Signature=<hex HMAC-SHA256(secret,
   StringToSign)>``.

V1 (RPC, HMAC-SHA1):

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


# -- V3: ACS3-HMAC-SHA256 --------------------------------------------------------------------------------------

V3_ALGORITHM = "ACS3-HMAC-SHA256"


def canonical_request(method: str, query: Mapping[str, str], headers: Mapping[str, str], signed: list[str],
                      body: bytes) -> str:
    """The V3 canonical request; ``headers`` keyed by lower-case name, ``signed`` sorted lower-case names."""
    canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in signed)
    return "\n".join([method.upper(), "/", canonical_query(query), canonical_headers, ";".join(signed),
                      hashlib.sha256(body).hexdigest()])


def v3_string_to_sign(request: str) -> str:
    return f"{V3_ALGORITHM}\n{hashlib.sha256(request.encode()).hexdigest()}"


FORM = "application/x-www-form-urlencoded"


def v3_headers(access_key_id: str, secret: str, action: str, host: str, query: Mapping[str, str], *,
               body: bytes = b"", method: str = "POST", now: datetime | None = None,
               nonce: str | None = None) -> dict[str, str]:
    """The headers of a V3-signed call of ``action``: parameters in ``query``, or form-encoded in ``body``."""
    at = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    headers = {"host": host, "x-acs-action": action, "x-acs-version": API_VERSION,
               "x-acs-date": at.strftime(TIMESTAMP_FORMAT), "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
               "x-acs-content-sha256": hashlib.sha256(body).hexdigest(), "accept": "application/json"}
    if body:
        headers["content-type"] = FORM
    signed = sorted(headers)
    to_sign = v3_string_to_sign(canonical_request(method, query, headers, signed, body))
    signature_hex = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"{V3_ALGORITHM} Credential={access_key_id},SignedHeaders={';'.join(signed)},"
                                f"Signature={signature_hex}")
    return headers

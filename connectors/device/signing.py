"""The device web hook's signature: ``X-Carepath-Signature: sha256=<hex>`` over ``<timestamp>.<body>`` with the
connector's shared secret (HMAC-SHA256), and ``X-Carepath-Timestamp`` (Unix seconds) within the allowed skew."""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "x-carepath-signature"
TIMESTAMP_HEADER = "x-carepath-timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def signed_headers(secret: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """Headers a device cloud sends with ``body``."""
    timestamp = str(int(time.time() if now is None else now))
    return {"Content-Type": "application/json", "X-Carepath-Timestamp": timestamp,
            "X-Carepath-Signature": sign(secret, timestamp, body)}


def verify(secret: str, headers: dict[str, str], body: bytes, *, max_skew: float, now: float | None = None) -> bool:
    """Whether the signature fits the body and the timestamp is recent (compared in constant time)."""
    timestamp, given = headers.get(TIMESTAMP_HEADER, ""), headers.get(SIGNATURE_HEADER, "")
    if not timestamp.isdigit() or len(timestamp) > 12 or not given:
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > max_skew:
        return False
    return hmac.compare_digest(given.strip().lower().encode(), sign(secret, timestamp, body).encode())

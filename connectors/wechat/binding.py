"""Binding a WeChat user to a patient with a signed one-time token.

The hospital shows the patient a temporary QR code whose scene string is a
token from :func:`issue` (or prints it in a binding link). When the patient
scans it, WeChat pushes ``subscribe`` (EventKey ``qrscene_<token>``) or, for
a follower, ``SCAN`` (EventKey ``<token>``) with the user's openid; the
connector checks the token and links that openid to the patient.

A token is ``b.<patient id>.<expiry, hex epoch>.<nonce>.<signature>`` (at
most 64 characters, WeChat's limit for a scene string). The signature is a
keyed hash with the engine's secret key, so only this carepath can make one;
the nonce is recorded when used, so a token binds once.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Callable

PREFIX = "b"
QR_SCENE = "qrscene_"

Sign = Callable[[str], str]  # text -> hex keyed hash


class BindingError(ValueError):
    """A binding token that is malformed, forged or expired."""


@dataclass(frozen=True)
class Binding:
    patient_id: int
    nonce: str


def issue(sign: Sign, patient_id: int, expires_at: float) -> str:
    """A token binding whoever scans it first to ``patient_id`` until ``expires_at`` (epoch seconds)."""
    body = f"{PREFIX}.{patient_id}.{int(expires_at):x}.{secrets.token_hex(4)}"
    return f"{body}.{sign(body)[:20]}"


def token_from_event_key(event_key: str) -> str | None:
    """The binding token carried by a ``subscribe``/``SCAN`` EventKey, if any."""
    key = event_key[len(QR_SCENE):] if event_key.startswith(QR_SCENE) else event_key
    return key if key.startswith(PREFIX + ".") else None


def verify(sign: Sign, token: str, now: float) -> Binding:
    """The patient a token names; raises :class:`BindingError` when it is not authentic or has expired."""
    parts = token.split(".")
    if len(parts) != 5 or parts[0] != PREFIX:
        raise BindingError("not a carepath binding token")
    body, signature = ".".join(parts[:4]), parts[4]
    if not hmac.compare_digest(sign(body)[:20], signature):
        raise BindingError("binding token signature does not match")
    try:
        patient_id, expires = int(parts[1]), int(parts[2], 16)
    except ValueError:
        raise BindingError("binding token is malformed") from None
    if expires < now:
        raise BindingError("binding token has expired")
    return Binding(patient_id, parts[3])

"""Authenticating WeChat pushes before anything in them is read.

A push is authentic when its timestamp is fresh and its signature matches:
``signature`` over Token, timestamp and nonce in plaintext mode, or, in safe
mode, ``msg_signature`` over those and the ``Encrypt`` value, which must then
decrypt to a message for this account's appid. With an EncodingAESKey
configured only safe-mode pushes are accepted (a plaintext signature does not
cover the message).
"""

from __future__ import annotations

import time
from typing import Mapping

from carepath.plugins.contracts import CallbackRejected, CallbackRequest

from carepath.connectors.wechat import crypto


class CallbackAuth:
    """Checks the pushes of one Official Account or Mini Program."""

    def __init__(self, *, token: str, appid: str, encoding_aes_key: str | None, max_age: float) -> None:
        self.token = token
        self.appid = appid
        self.key = crypto.aes_key(encoding_aes_key) if encoding_aes_key else None
        self.max_age = max_age

    def authentic(self, request: CallbackRequest) -> bool:
        """The server-configuration ``GET`` or an event ``POST`` passes every check (changes nothing)."""
        query = request.query
        try:
            if abs(time.time() - int(query.get("timestamp", ""))) > self.max_age:
                return False
        except ValueError:
            return False
        if request.method == "GET":
            return "echostr" in query and crypto.signature_ok(self._signed(query), query.get("signature", ""))
        if request.method != "POST":
            return False
        try:
            self.xml(request)
        except CallbackRejected:
            return False
        return True

    def xml(self, request: CallbackRequest) -> str:
        """The message XML of a POST (decrypted in safe mode); :class:`CallbackRejected` when not authentic."""
        query = request.query
        safe = query.get("encrypt_type") == "aes"
        if self.key is None:
            if safe or not crypto.signature_ok(self._signed(query), query.get("signature", "")):
                raise CallbackRejected("plaintext callback: bad or missing signature")
            return request.body.decode("utf-8", errors="replace")
        if not safe:
            raise CallbackRejected("safe mode is configured: plaintext callbacks are refused")
        try:
            encrypted = str(crypto.parse_xml(request.body).get("Encrypt", ""))
        except ValueError:
            raise CallbackRejected("safe-mode callback without an XML envelope") from None
        if not encrypted or not crypto.signature_ok(self._signed(query, encrypted), query.get("msg_signature", "")):
            raise CallbackRejected("safe-mode callback: bad or missing msg_signature")
        try:
            return crypto.decrypt(self.key, encrypted, self.appid)
        except crypto.CallbackCryptoError as exc:
            raise CallbackRejected(str(exc)) from None

    def _signed(self, query: Mapping[str, str], *extra: str) -> tuple[str, ...]:
        return (self.token, query.get("timestamp", ""), query.get("nonce", ""), *extra)

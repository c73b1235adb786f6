"""Authenticating WeCom callbacks before anything in them is decrypted or stored.

WeCom encrypts every callback (WXBizMsgCrypt, the same scheme as WeChat's
safe mode with the corp id as receive id). A callback is authentic when its
body is within the size bound, its timestamp is fresh, ``msg_signature`` is
the SHA-1 of the sorted Token, timestamp, nonce and ciphertext, and the
ciphertext decrypts to a message for this corp id. The URL check (``GET``)
signs its encrypted ``echostr``, whose plaintext is the answer.
"""

from __future__ import annotations

import time

from carepath.plugins.contracts import CallbackRejected, CallbackRequest

from carepath.connectors.wechat import crypto


class WecomAuth:
    """Checks the callbacks of one WeCom enterprise."""

    def __init__(self, *, token: str, corpid: str, encoding_aes_key: str, max_age: float, max_bytes: int) -> None:
        self.token = token
        self.corpid = corpid
        self.key = crypto.aes_key(encoding_aes_key)
        self.max_age = max_age
        self.max_bytes = max_bytes

    def authentic(self, request: CallbackRequest) -> bool:
        """The URL check or an event ``POST`` passes every check (changes nothing)."""
        try:
            self.plaintext(request)
        except CallbackRejected:
            return False
        return True

    def plaintext(self, request: CallbackRequest) -> str:
        """The decrypted ``echostr`` (GET) or message XML (POST); :class:`CallbackRejected` when not authentic."""
        query = request.query
        if len(request.body) > self.max_bytes:
            raise CallbackRejected(f"callback body over {self.max_bytes} bytes")
        try:
            if abs(time.time() - int(query.get("timestamp", ""))) > self.max_age:
                raise CallbackRejected("callback timestamp is not fresh")
        except ValueError:
            raise CallbackRejected("callback without a timestamp") from None
        if request.method == "GET":
            encrypted = query.get("echostr", "")
        elif request.method == "POST":
            try:  # the envelope only: <xml><ToUserName/><AgentID/><Encrypt/></xml>
                encrypted = str(crypto.parse_xml(request.body).get("Encrypt", ""))
            except ValueError:
                raise CallbackRejected("callback without an XML envelope") from None
        else:
            raise CallbackRejected(f"method {request.method} is not a WeCom callback")
        signed = (self.token, query.get("timestamp", ""), query.get("nonce", ""), encrypted)
        if not encrypted or not crypto.signature_ok(signed, query.get("msg_signature", "")):
            raise CallbackRejected("bad or missing msg_signature")
        try:
            return crypto.decrypt(self.key, encrypted, self.corpid)
        except crypto.CallbackCryptoError as exc:
            raise CallbackRejected(str(exc)) from None

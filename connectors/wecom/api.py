"""The WeCom server API as the connector calls it: JSON over HTTPS with a shared access token.

``gettoken`` issues the token from the corp id and the customer-contact
secret; :class:`~carepath.connectors.wechat.token.AccessTokens` shares it
between workers through the database (one refresh at a time), exactly as the
WeChat connector does. A token WeCom refuses (40014, 42001) is replaced once
and the call made again.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import requests

from carepath.plugins.contracts import ErrorKind

from carepath.connectors.wechat.channel import call_json_api
from carepath.connectors.wechat.token import AccessTokens, ApiError, Issued, lease_seconds
from carepath.connectors.wecom.config import WecomConfig

log = logging.getLogger(__name__)
_SECRET_PARAMS = re.compile(r"\b(corpsecret|access_token)=[^&\s\"']+")


class _RedactQuery(logging.Filter):
    """WeCom takes the secret (``gettoken``) and the access token in the query string, which urllib3 logs at
    DEBUG level: their values are masked before any handler sees the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "corpsecret=" in text or "access_token=" in text:
            record.msg, record.args = _SECRET_PARAMS.sub(r"\1=***", text), ()
        return True


_URLLIB3 = logging.getLogger("urllib3.connectionpool")
if not any(isinstance(f, _RedactQuery) for f in _URLLIB3.filters):
    _URLLIB3.addFilter(_RedactQuery())

#: errcodes meaning "this access token is not (or no longer) valid"
TOKEN_ERRCODES = frozenset({40014, 42001, 41001})
RETRYABLE_ERRCODES = {-1: "system busy", 45009: "API frequency limit", 45033: "too many concurrent calls"}
ERRCODE_MEANINGS = {
    **RETRYABLE_ERRCODES, 40013: "invalid corpid", 40001: "invalid secret", 40014: "access token invalid",
    42001: "access token expired", 41001: "access token missing", 40096: "invalid external_userid",
    41048: "no such welcome code or it was used", 40098: "staff member not activated", 60111: "no such staff member",
    95000: "customer-service session state forbids it", 95001: "customer-service message limit reached",
    95007: "invalid customer-service message token",
}


class WecomApi:
    """Authorized calls to one enterprise's WeCom API."""

    def __init__(self, name: str, config: WecomConfig) -> None:
        self.name = name
        self.config = config
        self.tokens = AccessTokens(name, self._fetch_token, margin=config.token_refresh_margin,
                                   lease=lease_seconds(config.timeout))
        self._session = requests.Session()

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` with the shared access token; the reply (its errcode may be non-zero), or :class:`ApiError`
        for transport trouble or a token that cannot be had."""
        token = self.tokens.get()
        reply = self._request("POST", path, {"access_token": token}, body)
        if reply.get("errcode") in TOKEN_ERRCODES:  # refreshed elsewhere or revoked: once more with a new one
            reply = self._request("POST", path, {"access_token": self.tokens.replace(token)}, body)
        return reply

    def checked(self, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        """:meth:`post` where a non-zero errcode is an :class:`ApiError` too (retryable when WeCom says so)."""
        reply = self.post(path, body)
        code = reply.get("errcode", 0)
        if code:
            kind = ErrorKind.RETRYABLE if code in RETRYABLE_ERRCODES or code in TOKEN_ERRCODES else ErrorKind.PERMANENT
            raise ApiError(kind, str(code), f"WeCom errcode {code} {what}: {meaning(code)}")
        return reply

    def _request(self, method: str, path: str, params: dict[str, str], body: dict[str, Any] | None) -> dict[str, Any]:
        return call_json_api(self._session, method, self.config.base_url + path, params, body, self.config.timeout,
                             "WeCom")

    def _fetch_token(self, force: bool) -> Issued:
        """``GET /cgi-bin/gettoken?corpid=&corpsecret=`` (WeCom has no forced refresh: the token is what it is)."""
        reply = self._request("GET", "/cgi-bin/gettoken", {"corpid": self.config.corpid,
                                                           "corpsecret": self.config.secret.get_secret_value()}, None)
        if "access_token" not in reply or reply.get("errcode"):
            code = reply.get("errcode", "no_token")
            kind = ErrorKind.RETRYABLE if code in RETRYABLE_ERRCODES else ErrorKind.PERMANENT
            raise ApiError(kind, str(code), f"WeCom errcode {code} getting an access token: {meaning(code)}")
        log.info("wecom %s: new access token", self.name)
        return Issued(str(reply["access_token"]), time.time() + int(reply.get("expires_in", 7200)))


def meaning(code: Any) -> str:
    """What a WeCom errcode means, in words."""
    return ERRCODE_MEANINGS.get(code, "unexpected errcode")

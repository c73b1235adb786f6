"""The ``wechat`` channel: Official Account template and subscription messages, Mini Program subscribe messages.

Each carepath template is sent as the WeChat template its configuration maps
it to; each data field is rendered from the journey template's context and
fitted to WeChat's field rules before the call. The access token is shared by
all workers through the database (:mod:`carepath.connectors.wechat.token`).
Callbacks (``/hooks/wechat/<name>``) are verified (signature, safe-mode AES)
before anything in them is read (:mod:`~carepath.connectors.wechat.verify`),
then turned into events (:mod:`~carepath.connectors.wechat.callbacks`).
"""

from __future__ import annotations

import hashlib
import logging
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Sequence

import requests

from carepath.definition.expressions import render
from carepath.masking import mask_openid
from carepath.plugins.contracts import (
    CallbackRequest,
    Capabilities,
    Channel,
    ErrorKind,
    Message,
    SendResult,
    classify_http_status,
)
from carepath.runtime.template_consent import withdrawn_templates

from carepath.connectors.wechat import crypto
from carepath.connectors.wechat.callbacks import CallbackParser
from carepath.connectors.wechat.config import TemplateMapping, WechatConfig
from carepath.connectors.wechat.directory import EngineDirectory
from carepath.connectors.wechat.fields import FieldRuleError, apply_rule
from carepath.connectors.wechat.token import TOKEN_ERRCODES, AccessTokens, ApiError, Issued, lease_seconds
from carepath.connectors.wechat.verify import CallbackAuth

log = logging.getLogger(__name__)

SHOW_QRCODE = "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket="

CUSTOM_SEND = "/cgi-bin/message/custom/send"  # customer-service messages (客服消息), issue 21
ENDPOINTS = {"template": "/cgi-bin/message/template/send", "subscribe": "/cgi-bin/message/subscribe/bizsend",
             "miniprogram": "/cgi-bin/message/subscribe/send"}
RETRYABLE_ERRCODES = {-1: "system busy", 45009: "frequency limit reached"}
ERRCODE_MEANINGS = {
    **RETRYABLE_ERRCODES,
    40001: "access token invalid", 40014: "access token invalid", 42001: "access token expired",
    40003: "invalid openid", 40013: "invalid appid", 40125: "invalid appsecret", 40164: "caller IP not allowed",
    40037: "invalid template id", 41030: "invalid page", 43004: "user does not follow the account",
    43101: "user refused or has no subscription left", 47003: "template data invalid",
    45015: "out of the 48-hour customer-service window", 45047: "too many customer-service messages for one message",
}


@dataclass(frozen=True)
class BindingQr:
    """A binding QR code: show ``image`` (or encode ``url``) to the patient; ``token`` is its scene string."""

    token: str
    ticket: str
    url: str
    image: str
    expires_in: int


def client_msg_id(idempotency_key: str) -> str:
    """WeChat's dedup id for a message: the idempotency key, hashed when too long for the field."""
    if len(idempotency_key) <= 64 and idempotency_key.isascii():
        return idempotency_key
    return "cp-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:48]


class WechatChannel(Channel):
    """Sends mapped templates to a patient's openid; turns WeChat pushes into events."""

    type_name: ClassVar[str] = "wechat"
    Config = WechatConfig
    capabilities: ClassVar[Capabilities] = Capabilities(network=True, callbacks=True)
    address_kind: ClassVar[str] = "openid"
    emulator: ClassVar[str | None] = "carepath.connectors.wechat.emulator:serve"
    config: WechatConfig

    def __init__(self, name: str, config: WechatConfig | None = None) -> None:
        if config is None:
            raise TypeError("a wechat channel needs its configuration (appid, secret, token, templates)")
        super().__init__(name, config)
        self.tokens = AccessTokens(name, self._fetch_token, margin=config.token_refresh_margin,
                                   lease=lease_seconds(config.timeout))
        self.directory = EngineDirectory(name)
        key = config.encoding_aes_key
        self._auth = CallbackAuth(token=config.token.get_secret_value(), appid=config.appid,
                                  encoding_aes_key=key.get_secret_value() if key else None,
                                  max_age=config.callback_max_age)
        self._engine: Any = None
        self._session = requests.Session()  # one connection pool for sends and token fetches

    def bind(self, engine: Any) -> None:
        self._engine = engine
        self.directory.engine = engine
        self.tokens.bind(engine.db, engine.cipher)

    def unmapped_templates(self, names: Iterable[str]) -> list[str]:
        return [name for name in names if name not in self.config.templates]

    def binding_token(self, patient_id: int) -> str:
        """A one-time token linking whoever scans it to ``patient_id`` (use it as a QR code's scene string)."""
        return self.directory.issue_token(patient_id, self.config.binding_ttl)

    def binding_qrcode(self, patient_id: int) -> BindingQr:
        """A temporary Official Account QR code carrying a binding token for ``patient_id``.

        Raises :class:`ApiError` when WeChat refuses; Mini Programs have no scene QR codes.
        """
        if self.config.kind == "miniprogram":
            raise ValueError("binding QR codes belong to Official Accounts; this channel sends Mini Program messages")
        token = self.binding_token(patient_id)
        body = {"expire_seconds": self.config.binding_ttl, "action_name": "QR_STR_SCENE",
                "action_info": {"scene": {"scene_str": token}}}
        reply = self._call_authorized("/cgi-bin/qrcode/create", body)
        if "ticket" not in reply:
            code = reply.get("errcode", "no_ticket")
            raise ApiError(ErrorKind.PERMANENT, str(code), f"WeChat errcode {code} creating a binding QR code")
        ticket = str(reply["ticket"])
        return BindingQr(token=token, ticket=ticket, url=str(reply.get("url", "")),
                         image=SHOW_QRCODE + urllib.parse.quote(ticket, safe=""),
                         expires_in=int(reply.get("expire_seconds", self.config.binding_ttl)))

    # -- sending -------------------------------------------------------------------------

    def send(self, message: Message) -> SendResult:
        return self.send_batch([message])[0]

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        refused: set[tuple[int, str]] = set()
        if self._engine is not None and messages:
            with self._engine.db.connect() as conn:
                refused = withdrawn_templates(conn, {m.patient_id for m in messages}, self.name)
        return [self._send_one(m, refused) for m in messages]

    def _send_one(self, message: Message, refused: set[tuple[int, str]]) -> SendResult:
        mapping = self.config.templates.get(message.template)
        if mapping is None:
            return SendResult.permanent("unmapped_template", f"template {message.template!r} has no WeChat mapping "
                                                             f"in connectors.{self.name}.templates")
        if (message.patient_id, message.template) in refused:
            return SendResult.permanent("template_rejected", f"the patient rejected WeChat messages of template "
                                                             f"{message.template!r}")
        if not message.address:
            return SendResult.permanent("no_openid", "the patient has no openid")
        try:
            body = self.request_body(message, mapping)
        except FieldRuleError as exc:
            return SendResult.permanent("bad_data", f"template {message.template}: {exc}")
        except Exception as exc:  # a template map expression that fails on this context
            return SendResult.permanent("render_error", f"template {message.template}: {type(exc).__name__}: {exc}")
        try:
            reply = self._call_authorized(ENDPOINTS[self.config.kind], body)
        except ApiError as exc:
            return self._failed(message, SendResult(ok=False, error_kind=exc.kind, error_code=exc.code,
                                                    error=str(exc)))
        return self._result(message, reply)

    def send_customer_service(self, openid: str, text: str) -> SendResult:
        """A text customer-service message (客服消息) to ``openid``: free text, allowed by WeChat only within 48 hours
        of the patient's last interaction (errcode 45015 outside it). Callers check the window first
        (:mod:`carepath.runtime.conversations.replies`); Mini Programs are not served here."""
        if self.config.kind == "miniprogram":
            return SendResult.permanent("not_official_account", "customer-service messages go through an "
                                                                "Official Account channel")
        body = {"touser": openid, "msgtype": "text", "text": {"content": text}}
        try:
            reply = self._call_authorized(CUSTOM_SEND, body)
        except ApiError as exc:
            return SendResult(ok=False, error_kind=exc.kind, error_code=exc.code, error=str(exc))
        code = reply.get("errcode", 0)
        if code == 0:
            return SendResult.sent(None)
        text_ = f"WeChat errcode {code}: {ERRCODE_MEANINGS.get(code, 'unexpected errcode')}"
        if code in RETRYABLE_ERRCODES or code in TOKEN_ERRCODES:
            return SendResult.retryable(str(code), text_)
        return SendResult.permanent(str(code), text_)

    def request_body(self, message: Message, mapping: TemplateMapping) -> dict[str, Any]:
        """The JSON body of the send call for ``message`` (field rules applied)."""
        cfg = self.config
        context = dict(message.context)
        tz = getattr(context.get("patient"), "tz", None) or "Asia/Shanghai"
        data = {key: {"value": apply_rule(key, render(source, context), tz)} for key, source in mapping.data.items()}
        body: dict[str, Any] = {"touser": message.address, "template_id": mapping.template_id, "data": data}
        link = {"appid": cfg.miniprogram_appid, "pagepath": mapping.page} if mapping.page else None
        if cfg.kind == "template":
            body["client_msg_id"] = client_msg_id(message.idempotency_key)
            if mapping.url:
                body["url"] = str(mapping.url)
            if link:
                body["miniprogram"] = link
        elif cfg.kind == "subscribe":
            if mapping.url:
                body["page"] = str(mapping.url)
            if link:
                body["miniprogram"] = link
        else:
            body.update(miniprogram_state=cfg.miniprogram_state, lang=cfg.lang)
            if mapping.page:
                body["page"] = mapping.page
        return body

    def _result(self, message: Message, reply: dict[str, Any]) -> SendResult:
        code = reply.get("errcode", 0)
        if code == 0:
            msgid = reply.get("msgid")
            return SendResult.sent(str(msgid) if msgid is not None else None)
        meaning = ERRCODE_MEANINGS.get(code, "unexpected errcode")
        detail = str(reply.get("errmsg", "")).replace(message.address, mask_openid(message.address))
        text = f"WeChat errcode {code}: {meaning} ({detail[:200]})"
        if code in RETRYABLE_ERRCODES or code in TOKEN_ERRCODES:
            return self._failed(message, SendResult.retryable(str(code), text))
        return self._failed(message, SendResult.permanent(str(code), text))

    def _failed(self, message: Message, result: SendResult) -> SendResult:
        kind = result.error_kind.value if result.error_kind else ""
        log.info("wechat %s: %s to %s not sent: %s (%s)", self.name, message.template,
                 mask_openid(message.address), result.error_code, kind)
        return result

    # -- the HTTP API ---------------------------------------------------------------------

    def _call(self, path: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        """POST ``body`` to ``path``; the JSON reply, or :class:`ApiError` for transport and HTTP trouble."""
        url = self.config.base_url + path
        params = {"access_token": token} if token else None
        return call_json_api(self._session, "POST", url, params, body, self.config.timeout, "WeChat")

    def _call_authorized(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """:meth:`_call` with the shared access token; a token WeChat refuses is replaced once and the call retried."""
        token = self.tokens.get()
        reply = self._call(path, body, token)
        if reply.get("errcode") in TOKEN_ERRCODES:  # refreshed elsewhere or revoked: once more with a new one
            reply = self._call(path, body, self.tokens.replace(token))
        return reply

    def _fetch_token(self, force: bool) -> Issued:
        cfg = self.config
        reply = self._call("/cgi-bin/stable_token", {"grant_type": "client_credential", "appid": cfg.appid,
                                                     "secret": cfg.secret.get_secret_value(), "force_refresh": force})
        if "access_token" not in reply:
            code = reply.get("errcode", "no_token")
            meaning = ERRCODE_MEANINGS.get(code, "no access token")
            kind = ErrorKind.RETRYABLE if code in RETRYABLE_ERRCODES else ErrorKind.PERMANENT
            raise ApiError(kind, str(code), f"WeChat errcode {code} getting an access token: {meaning}")
        log.info("wechat %s: new access token (force_refresh=%s)", self.name, force)
        return Issued(str(reply["access_token"]), time.time() + int(reply.get("expires_in", 7200)))

    # -- callbacks -------------------------------------------------------------------------

    def verify_callback(self, request: CallbackRequest) -> bool:
        return self._auth.authentic(request)

    def parse_callback(self, request: CallbackRequest) -> list[Any]:
        if request.method == "GET":
            return []
        # an authentic push whose message cannot be read is refused (400) and kept for operators by the route
        return self._parser().events(crypto.parse_xml(self._auth.xml(request)))

    def callback_reply(self, request: CallbackRequest) -> tuple[int, str]:
        if request.method == "GET":
            return 200, request.query.get("echostr", "")
        return 200, "success"

    def _parser(self) -> CallbackParser:
        by_wechat_id: dict[str, list[str]] = defaultdict(list)
        for name, mapping in self.config.templates.items():
            by_wechat_id[mapping.template_id].append(name)
        return CallbackParser(self.name, by_wechat_id, self.directory)


def call_json_api(session: requests.Session, method: str, url: str, params: dict[str, str] | None,
                  body: dict[str, Any] | None, timeout: float, provider: str) -> dict[str, Any]:
    """One call to a JSON API of the WeChat family (WeChat, WeCom): its reply object, or :class:`ApiError`
    classified for the dispatcher (timeouts, unreachable, HTTP errors, a reply that is not a JSON object)."""
    try:
        response = session.request(method, url, params=params, json=body, timeout=timeout)
    except requests.Timeout:
        raise ApiError(ErrorKind.RETRYABLE, "timeout", f"{provider} did not answer within {timeout:g} s")
    except requests.RequestException as exc:
        raise ApiError(ErrorKind.RETRYABLE, "connection", f"could not reach {provider} ({type(exc).__name__})")
    kind = classify_http_status(response.status_code)
    if kind is not None:
        raise ApiError(kind, f"http_{response.status_code}", f"{provider} answered HTTP {response.status_code}")
    try:
        reply = response.json()
    except ValueError:
        raise ApiError(ErrorKind.RETRYABLE, "bad_reply", f"{provider} answered something that is not JSON") from None
    if not isinstance(reply, dict):
        raise ApiError(ErrorKind.RETRYABLE, "bad_reply", f"{provider} answered JSON that is not an object")
    return reply

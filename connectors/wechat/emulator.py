"""A loopback emulator of the WeChat API, for tests and ``carepath emulator wechat``.

It speaks the real wire protocol (see PROTOCOLS.md, WeChat): ``stable_token``
and ``token`` issue access tokens with a configurable lifetime; a new token
leaves the previous one valid for ``overlap`` seconds (5 minutes on the real
platform); the three send endpoints check the token (41001 missing, 40001
unknown, 42001 expired), deduplicate ``client_msg_id``, enforce ``thing``
values of at most 20 characters (47003), and answer the errcodes a test asks
for (``refuse`` an openid with 43101 or 40003, ``fail_next`` with 45009 or
-1). Everything accepted is kept in ``sent``. Customer-service messages
(``message/custom/send``, kept in ``custom_sent``) are accepted only within
48 hours of the user's last push to carepath (45015 otherwise). ``push`` signs (and in safe mode
encrypts) a callback the way WeChat does and POSTs it to carepath; the
builders of those pushes live in :mod:`carepath.connectors.wechat.pushes`.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from carepath.plugins._loopback import LoopbackHTTP

from carepath.connectors.wechat import crypto
from carepath.connectors.wechat.pushes import event, signed_callback

QRCODE_PATH = "/cgi-bin/qrcode/create"
CUSTOM_PATH = "/cgi-bin/message/custom/send"
CUSTOM_WINDOW = 48 * 3600
SEND_PATHS = {"/cgi-bin/message/template/send": "template", "/cgi-bin/message/subscribe/bizsend": "subscribe",
              "/cgi-bin/message/subscribe/send": "miniprogram"}


@dataclass
class _Token:
    value: str
    expires_at: float


@dataclass
class Sent:
    """One message the emulator accepted."""

    kind: str
    body: dict[str, Any]
    msgid: int

    @property
    def data(self) -> dict[str, str]:
        """``{"thing1": "value", ...}``."""
        return {k: v.get("value", "") for k, v in self.body.get("data", {}).items()}


@dataclass
class EmulatorState:
    """What the emulator received and what it was told to do (guarded by ``lock``)."""

    token_requests: int = 0
    sent: list[Sent] = field(default_factory=list)
    rejected_calls: list[tuple[str, int]] = field(default_factory=list)  # (path, errcode)
    refused: dict[str, int] = field(default_factory=dict)  # openid -> errcode
    failures: list[int] = field(default_factory=list)
    custom_sent: list[dict[str, Any]] = field(default_factory=list)  # accepted customer-service messages
    interactions: dict[str, float] = field(default_factory=dict)  # openid -> when they last pushed (time.time())
    lock: threading.Lock = field(default_factory=threading.Lock)


class WechatEmulator(LoopbackHTTP):
    """``with WechatEmulator(appid=..., secret=..., token=...) as wx: ...``; ``wx.url`` is the API base."""

    def __init__(self, *, appid: str = "wxemulator0000001", secret: str = "emulator-app-secret",
                 token: str = "emulatortoken", encoding_aes_key: str | None = None,
                 token_lifetime: float = 7200, overlap: float = 300, host: str = "127.0.0.1", port: int = 0) -> None:
        self.appid, self.secret, self.token = appid, secret, token
        self.encoding_aes_key = encoding_aes_key
        self.token_lifetime, self.overlap = token_lifetime, overlap
        self.state = EmulatorState()
        self._tokens: list[_Token] = []
        self._msgids = itertools.count(200228332)
        self._dedup: dict[tuple[str, str], int] = {}
        self._scenes: dict[str, str] = {}  # QR ticket -> scene string
        super().__init__(self._handler(), host=host, port=port, name="wechat-emulator")

    # -- what a test controls and inspects ---------------------------------------------

    @property
    def sent(self) -> list[Sent]:
        with self.state.lock:
            return list(self.state.sent)

    @property
    def token_requests(self) -> int:
        with self.state.lock:
            return self.state.token_requests

    @property
    def custom_sent(self) -> list[dict[str, Any]]:
        """The customer-service messages accepted (request bodies)."""
        with self.state.lock:
            return list(self.state.custom_sent)

    def age_interaction(self, openid: str, seconds: float) -> None:
        """Pretend ``openid`` last wrote ``seconds`` earlier than it did (to leave the 48-hour window)."""
        with self.state.lock:
            self.state.interactions[openid] = self.state.interactions.get(openid, time.time()) - seconds

    def _custom(self, body: dict[str, Any]) -> dict[str, Any]:
        openid = str(body.get("touser", ""))
        if body.get("msgtype") != "text" or not str((body.get("text") or {}).get("content", "")).strip():
            return _error(44002, "empty post data or msgtype not supported by the emulator")
        with self.state.lock:
            last = self.state.interactions.get(openid)
            if last is None or time.time() - last > CUSTOM_WINDOW:
                return _error(45015, "response out of time limit or subscription is canceled")
            self.state.custom_sent.append(body)
        return {"errcode": 0, "errmsg": "ok"}

    def refuse(self, openid: str, errcode: int = 43101) -> None:
        """Answer every send to ``openid`` with ``errcode`` (43101 refused, 40003 bad openid)."""
        with self.state.lock:
            self.state.refused[openid] = errcode

    def fail_next(self, errcode: int, times: int = 1) -> None:
        """Answer the next ``times`` sends with ``errcode`` (45009 rate limit, -1 busy)."""
        with self.state.lock:
            self.state.failures.extend([errcode] * times)

    def expire_tokens(self) -> None:
        """Every token issued so far expires now (the platform answers 42001 to it)."""
        with self.state.lock:
            for issued in self._tokens:
                issued.expires_at = min(issued.expires_at, time.time() - 1)

    # -- tokens ---------------------------------------------------------------------------

    def _issue(self, force: bool) -> tuple[str, int]:
        now = time.time()
        with self.state.lock:
            self.state.token_requests += 1
            current = self._tokens[-1] if self._tokens else None
            if current is not None and not force and current.expires_at - now > self.overlap:
                return current.value, int(current.expires_at - now)
            if current is not None:  # the previous token stays valid for the overlap only
                current.expires_at = min(current.expires_at, now + self.overlap)
            issued = _Token(secrets.token_urlsafe(48), now + self.token_lifetime)
            self._tokens.append(issued)
            return issued.value, int(self.token_lifetime)

    def _token_problem(self, value: str | None) -> int | None:
        if not value:
            return 41001
        with self.state.lock:
            found = next((t for t in self._tokens if t.value == value), None)
        if found is None:
            return 40001
        return 42001 if found.expires_at <= time.time() else None

    # -- sending ----------------------------------------------------------------------------

    def _send(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        openid = str(body.get("touser", ""))
        for key, item in (body.get("data") or {}).items():
            value = str((item or {}).get("value", ""))
            if key.rstrip("0123456789") == "thing" and len(value) > 20:
                return _error(47003, f"argument invalid! data.{key}.value exceeds 20 characters")
        if not body.get("template_id"):
            return _error(40037, "invalid template_id")
        with self.state.lock:
            if self.state.failures:
                code = self.state.failures.pop(0)
                return _error(code, "system error" if code == -1 else "reach max api daily quota limit")
            if openid in self.state.refused:
                code = self.state.refused[openid]
                return _error(code, "user refuse to accept the msg" if code == 43101 else "invalid openid")
            dedup = (openid, str(body.get("client_msg_id") or ""))
            if dedup[1] and dedup in self._dedup:
                return {"errcode": 0, "errmsg": "ok", "msgid": self._dedup[dedup]}
            msgid = next(self._msgids)
            if dedup[1]:
                self._dedup[dedup] = msgid
            self.state.sent.append(Sent(kind, body, msgid))
        return {"errcode": 0, "errmsg": "ok", "msgid": msgid}

    def _qrcode(self, body: dict[str, Any]) -> dict[str, Any]:
        scene = str(((body.get("action_info") or {}).get("scene") or {}).get("scene_str", ""))
        if body.get("action_name") != "QR_STR_SCENE" or not 1 <= len(scene) <= 64:
            return _error(40097, "invalid args: scene_str is 1 to 64 characters")
        ticket = "gQ" + secrets.token_urlsafe(30)
        with self.state.lock:
            self._scenes[ticket] = scene
        return {"ticket": ticket, "expire_seconds": int(body.get("expire_seconds", 60)),
                "url": f"http://weixin.qq.com/q/{ticket[2:24]}"}

    def scan(self, url: str, ticket: str, openid: str, *, following: bool = False) -> requests.Response:
        """A user scans the QR code of ``ticket``: ``SCAN`` for a follower, else ``subscribe`` with ``qrscene_``."""
        with self.state.lock:
            scene = self._scenes[ticket]
        if following:
            return self.push(url, event(openid, "SCAN", EventKey=scene, Ticket=ticket))
        return self.push(url, event(openid, "subscribe", EventKey=f"qrscene_{scene}", Ticket=ticket))

    def _answer(self, method: str, path: str, query: Mapping[str, str], raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return _error(47001, "data format error")
        if path == "/cgi-bin/stable_token" and method == "POST":
            return self._grant(body.get("appid"), body.get("secret"), bool(body.get("force_refresh")))
        if path == "/cgi-bin/token" and method == "GET":
            return self._grant(query.get("appid"), query.get("secret"), False)
        kind = SEND_PATHS.get(path)
        if (kind is None and path not in (QRCODE_PATH, CUSTOM_PATH)) or method != "POST":
            return _error(48001, "api unauthorized")
        problem = self._token_problem(query.get("access_token"))
        if problem is not None:
            with self.state.lock:
                self.state.rejected_calls.append((path, problem))
            return _error(problem, {41001: "access_token missing", 40001: "invalid credential, access_token is "
                                    "invalid or not latest", 42001: "access_token expired"}[problem])
        answer = self._send(kind, body) if kind else self._custom(body) if path == CUSTOM_PATH else self._qrcode(body)
        if answer.get("errcode"):
            with self.state.lock:
                self.state.rejected_calls.append((path, answer["errcode"]))
        return answer

    def _grant(self, appid: Any, secret: Any, force: bool) -> dict[str, Any]:
        if appid != self.appid:
            return _error(40013, "invalid appid")
        if secret != self.secret:
            return _error(40125, "invalid appsecret")
        token, expires_in = self._issue(force)
        return {"access_token": token, "expires_in": expires_in}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return json_api_handler(self._answer)

    # -- callbacks to carepath ------------------------------------------------------------

    def signed_request(self, fields: Mapping[str, Any], *, safe: bool | None = None,
                       timestamp: int | None = None, nonce: str | None = None) -> tuple[dict[str, str], bytes]:
        """The query and body WeChat would POST for ``fields`` (safe mode when an EncodingAESKey is set)."""
        return signed_callback(fields, token=self.token, appid=self.appid, encoding_aes_key=self.encoding_aes_key,
                               safe=safe, timestamp=timestamp, nonce=nonce)

    def push(self, url: str, fields: Mapping[str, Any], *, safe: bool | None = None,
             timestamp: int | None = None, nonce: str | None = None) -> requests.Response:
        """POST a signed callback to carepath at ``url`` (``.../hooks/wechat/<name>``)."""
        query, body = self.signed_request(fields, safe=safe, timestamp=timestamp, nonce=nonce)
        if fields.get("FromUserName"):  # the user interacted: customer-service messages are open for 48 hours
            with self.state.lock:
                self.state.interactions[str(fields["FromUserName"])] = time.time()
        return requests.post(f"{url}?{urlencode(query)}", data=body, headers={"Content-Type": "text/xml"}, timeout=10)

    def verify_server(self, url: str) -> requests.Response:
        """WeChat's server-configuration check: a signed GET whose ``echostr`` must come back."""
        timestamp, nonce = str(int(time.time())), secrets.token_hex(5)
        query = {"signature": crypto.signature(self.token, timestamp, nonce), "timestamp": timestamp,
                 "nonce": nonce, "echostr": secrets.token_hex(8)}
        return requests.get(url, params=query, timeout=10)


def _error(code: int, message: str) -> dict[str, Any]:
    return {"errcode": code, "errmsg": f"{message} rid: {secrets.token_hex(4)}"}


def serve(host: str = "127.0.0.1", port: int = 0) -> None:
    """``carepath emulator wechat``: run until interrupted, printing the address and credentials to configure."""
    import os

    emulator = WechatEmulator(appid=os.environ.get("WECHAT_EMULATOR_APPID", "wxemulator0000001"),
                              secret=os.environ.get("WECHAT_EMULATOR_SECRET", "emulator-app-secret"),
                              token=os.environ.get("WECHAT_EMULATOR_TOKEN", "emulatortoken"),
                              encoding_aes_key=os.environ.get("WECHAT_EMULATOR_AES_KEY") or None,
                              token_lifetime=float(os.environ.get("WECHAT_EMULATOR_TOKEN_LIFETIME", "7200")),
                              host=host, port=port)
    with emulator:
        print(f"WeChat emulator listening on {emulator.url}", flush=True)
        print(f'  api_base = "{emulator.url}"  appid = "{emulator.appid}"  '
              f"(secret: WECHAT_EMULATOR_SECRET, token: WECHAT_EMULATOR_TOKEN)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


def json_api_handler(answer: Callable[[str, str, dict[str, str], bytes], dict[str, Any]]
                     ) -> type[BaseHTTPRequestHandler]:
    """A request handler for a JSON API in the WeChat family (Official Account, WeCom): ``answer(method, path,
    query, body)`` gives the reply, sent with HTTP 200 as those APIs do (errors are an ``errcode`` in it)."""

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            data = json.dumps(answer(self.command, parts.path, query, raw), ensure_ascii=False).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, *args: object) -> None:
            pass

    return Handler

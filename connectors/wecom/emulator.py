"""A loopback emulator of the WeCom API, for tests and ``carepath emulator wecom``.

It speaks the wire protocol of PROTOCOLS.md (WeCom): ``gettoken`` issues
access tokens (40013 wrong corp id, 40001 wrong secret; 41001 missing, 40014
unknown, 42001 expired token on other calls); ``add_msg_template`` creates a
mass-message task that nothing reaches until :meth:`WecomEmulator.confirm`
(the staff member's confirmation in their app), after which
``get_groupmsg_send_result`` reports each target sent (1), not a contact (2)
or over WeCom's mass-message limit (3); ``send_welcome_msg`` takes each
welcome code once; ``groupchat/get`` lists a group's members;
``kf/sync_msg`` pages customer-service messages by cursor and ``kf/send_msg``
records answers. The helpers below change the emulated world (a customer adds
a staff member, joins a group, writes to customer service) and push the
encrypted, signed callback WeCom would send to carepath.
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
from urllib.parse import urlencode

import requests

from carepath.plugins._loopback import LoopbackHTTP

from carepath.connectors.wechat.emulator import json_api_handler
from carepath.connectors.wecom import pushes


@dataclass
class Task:
    """One mass-message task (``add_msg_template``)."""

    msgid: str
    chat_type: str
    sender: str
    targets: list[str]  # external_userids (single) or chat ids (group)
    content: str
    confirmed_at: int | None = None
    status: dict[str, int] = field(default_factory=dict)  # target -> 0 not sent, 1 sent, 2 not a contact, 3 capped


@dataclass
class Group:
    chat_id: str
    owner: str
    name: str = ""
    members: set[str] = field(default_factory=set)  # external_userids


class WecomEmulator(LoopbackHTTP):
    """``with WecomEmulator(corpid=..., secret=..., token=..., encoding_aes_key=...) as wc: ...``; ``wc.url``."""

    def __init__(self, *, corpid: str = "wwemulator0000001", secret: str = "emulator-contact-secret",
                 token: str = "emulatortoken", encoding_aes_key: str = "A" * 43, token_lifetime: float = 7200,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.corpid, self.secret, self.token, self.encoding_aes_key = corpid, secret, token, encoding_aes_key
        self.token_lifetime = token_lifetime
        self.lock = threading.Lock()
        self.token_requests = 0
        self.tokens: dict[str, float] = {}  # access token -> expiry
        self.contacts: set[tuple[str, str]] = set()  # (staff userid, external_userid)
        self.capped: set[str] = set()  # external_userids that already had a mass message in WeCom's window
        self.tasks: dict[str, Task] = {}
        self.groups: dict[str, Group] = {}
        self.welcome_codes: dict[str, str] = {}  # code -> external_userid, until used
        self.welcomes: list[dict[str, Any]] = []
        self.kf_messages: list[dict[str, Any]] = []
        self.kf_tokens: set[str] = set()
        self.kf_sent: list[dict[str, Any]] = []
        self.rejected_calls: list[tuple[str, int]] = []
        self._ids = itertools.count(1)
        super().__init__(self._handler(), host=host, port=port, name="wecom-emulator")

    # -- the emulated world ------------------------------------------------------------------

    def add_group(self, chat_id: str, owner: str, name: str = "") -> None:
        with self.lock:
            self.groups[chat_id] = Group(chat_id, owner, name)

    def confirm(self, msgid: str) -> None:
        """The task's staff member confirms the send in their WeCom app: each target gets its outcome."""
        with self.lock:
            task = self.tasks[msgid]
            task.confirmed_at = int(time.time())
            for target in task.targets:
                if task.chat_type == "group":
                    task.status[target] = 1
                elif (task.sender, target) not in self.contacts:
                    task.status[target] = 2
                elif target in self.capped:
                    task.status[target] = 3
                else:
                    task.status[target] = 1
                    self.capped.add(target)  # one mass message per customer in the window

    def task_of(self, sender: str) -> Task:
        """The newest task of staff member ``sender``."""
        with self.lock:
            return [t for t in self.tasks.values() if t.sender == sender][-1]

    def add_contact(self, url: str, staff: str, external: str, state: str = "") -> requests.Response:
        """Customer ``external`` adds ``staff`` (through a QR code carrying ``state``); the callback is pushed."""
        code = "wc-" + secrets.token_hex(8)
        with self.lock:
            self.contacts.add((staff, external))
            self.welcome_codes[code] = external
        return self.push(url, pushes.contact_added(self.corpid, staff, external, state=state, welcome_code=code))

    def remove_contact(self, url: str | None, staff: str, external: str, by_customer: bool = True) -> Any:
        """The two are no longer contacts; the callback is pushed when ``url`` is given (WeCom may miss it)."""
        with self.lock:
            self.contacts.discard((staff, external))
        if url is not None:
            return self.push(url, pushes.contact_removed(self.corpid, staff, external, by_customer=by_customer))
        return None

    def join_group(self, url: str, chat_id: str, external: str, joined: bool = True) -> requests.Response:
        """``external`` joins (or leaves) the customer group; the callback is pushed."""
        with self.lock:
            members = self.groups[chat_id].members
            members.add(external) if joined else members.discard(external)
        return self.push(url, pushes.chat_changed(self.corpid, chat_id, "update",
                                                  "add_member" if joined else "del_member"))

    def customer_writes(self, url: str, open_kfid: str, external: str, text: str) -> requests.Response:
        """``external`` writes to customer-service account ``open_kfid``; the kf callback is pushed."""
        token = "kf-" + secrets.token_hex(8)
        with self.lock:
            self.kf_tokens.add(token)
            self.kf_messages.append({"msgid": f"kfmsg-{next(self._ids)}", "open_kfid": open_kfid,
                                     "external_userid": external, "send_time": int(time.time()), "origin": 3,
                                     "msgtype": "text", "text": {"content": text}})
        return self.push(url, pushes.kf_event(self.corpid, token, open_kfid))

    # -- callbacks to carepath ---------------------------------------------------------------

    def signed_request(self, fields: Mapping[str, Any], **kw: Any) -> tuple[dict[str, str], bytes]:
        """The query and body WeCom would POST for ``fields``."""
        return pushes.signed_callback(fields, token=self.token, corpid=self.corpid,
                                      encoding_aes_key=self.encoding_aes_key, **kw)

    def push(self, url: str, fields: Mapping[str, Any]) -> requests.Response:
        """POST an encrypted, signed callback to carepath at ``url`` (``.../hooks/wecom/<name>``)."""
        query, body = self.signed_request(fields)
        return requests.post(f"{url}?{urlencode(query)}", data=body, headers={"Content-Type": "text/xml"}, timeout=10)

    def verify_url(self, url: str) -> tuple[str, requests.Response]:
        """WeCom's URL check: a signed GET with an encrypted echostr; returns the plaintext it expects back."""
        echo = secrets.token_hex(8)
        query = pushes.url_check(token=self.token, corpid=self.corpid, encoding_aes_key=self.encoding_aes_key,
                                 echo=echo)
        return echo, requests.get(url, params=query, timeout=10)

    # -- the API --------------------------------------------------------------------------------

    def _grant(self, query: Mapping[str, str]) -> dict[str, Any]:
        if query.get("corpid") != self.corpid:
            return _error(40013, "invalid corpid")
        if query.get("corpsecret") != self.secret:
            return _error(40001, "invalid secret")
        with self.lock:
            self.token_requests += 1
            value = secrets.token_urlsafe(48)
            self.tokens[value] = time.time() + self.token_lifetime
        return {"errcode": 0, "errmsg": "ok", "access_token": value, "expires_in": int(self.token_lifetime)}

    def expire_tokens(self) -> None:
        """Every token issued so far expires now."""
        with self.lock:
            for value in self.tokens:
                self.tokens[value] = time.time() - 1

    def _token_problem(self, value: str | None) -> int | None:
        if not value:
            return 41001
        with self.lock:
            expiry = self.tokens.get(value)
        if expiry is None:
            return 40014
        return 42001 if expiry <= time.time() else None

    def _add_msg_template(self, body: dict[str, Any]) -> dict[str, Any]:
        chat_type, sender = body.get("chat_type", "single"), str(body.get("sender") or "")
        content = str((body.get("text") or {}).get("content", ""))
        if not content and not body.get("attachments"):
            return _error(41040, "content and attachments are both empty")
        with self.lock:
            if chat_type == "group":
                if not sender:
                    return _error(40003, "sender is required for a group message")
                targets = [c for c in body.get("chat_id_list") or [] if c in self.groups
                           and self.groups[c].owner == sender]
                fail = [c for c in body.get("chat_id_list") or [] if c not in targets]
            elif chat_type == "single":
                wanted = [str(e) for e in body.get("external_userid") or []]
                targets = [e for e in wanted if not sender or (sender, e) in self.contacts]
                fail = [e for e in wanted if e not in targets]
            else:
                return _error(40058, "invalid chat_type")
            msgid = f"msg{secrets.token_hex(6)}"
            self.tasks[msgid] = Task(msgid, chat_type, sender, targets, content,
                                     status={t: 0 for t in targets})
        return {"errcode": 0, "errmsg": "ok", "fail_list": fail, "msgid": msgid}

    def _send_result(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            task = self.tasks.get(str(body.get("msgid", "")))
            if task is None or task.sender != body.get("userid"):
                return _error(41063, "msgid not found for this userid")
            key = "chat_id" if task.chat_type == "group" else "external_userid"
            items = [{key: target, "userid": task.sender, "status": status,
                      **({"send_time": task.confirmed_at} if status and task.confirmed_at else {})}
                     for target, status in task.status.items()]
        return {"errcode": 0, "errmsg": "ok", "send_list": items, "next_cursor": ""}

    def _welcome(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if self.welcome_codes.pop(str(body.get("welcome_code", "")), None) is None:
                return _error(41048, "invalid welcome_code")
            self.welcomes.append(body)
        return {"errcode": 0, "errmsg": "ok"}

    def _group(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            group = self.groups.get(str(body.get("chat_id", "")))
            if group is None:
                return _error(49008, "invalid chat_id")
            members = [{"userid": group.owner, "type": 1, "join_time": 0}] + [
                {"userid": e, "type": 2, "join_time": int(time.time())} for e in sorted(group.members)]
            return {"errcode": 0, "errmsg": "ok", "group_chat": {"chat_id": group.chat_id, "name": group.name,
                                                                "owner": group.owner, "member_list": members}}

    def _kf_sync(self, body: dict[str, Any]) -> dict[str, Any]:
        limit = max(1, min(int(body.get("limit") or 1000), 1000))
        with self.lock:
            if body.get("token") and body["token"] not in self.kf_tokens:
                return _error(95007, "invalid msg token")
            start = int(body.get("cursor") or 0)
            mine = [m for m in self.kf_messages if m["open_kfid"] == body.get("open_kfid")]
            page = mine[start:start + limit]
            end = start + len(page)
            return {"errcode": 0, "errmsg": "ok", "next_cursor": str(end), "has_more": int(end < len(mine)),
                    "msg_list": page}

    def _kf_send(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.kf_sent.append(body)
        return {"errcode": 0, "errmsg": "ok", "msgid": f"kfsent-{next(self._ids)}"}

    def _routes(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {"/cgi-bin/externalcontact/add_msg_template": self._add_msg_template,
                "/cgi-bin/externalcontact/get_groupmsg_send_result": self._send_result,
                "/cgi-bin/externalcontact/send_welcome_msg": self._welcome,
                "/cgi-bin/externalcontact/groupchat/get": self._group,
                "/cgi-bin/kf/sync_msg": self._kf_sync, "/cgi-bin/kf/send_msg": self._kf_send}

    def _answer(self, method: str, path: str, query: Mapping[str, str], raw: bytes) -> dict[str, Any]:
        if path == "/cgi-bin/gettoken" and method == "GET":
            return self._grant(query)
        route = self._routes().get(path)
        if route is None or method != "POST":
            return _error(60011, "no privilege to access/modify contact/party/agent")
        problem = self._token_problem(query.get("access_token"))
        if problem is None:
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                return _error(47001, "data format error")
            answer = route(body if isinstance(body, dict) else {})
        else:
            answer = _error(problem, {41001: "access_token missing", 40014: "invalid access_token",
                                      42001: "access_token expired"}[problem])
        if answer.get("errcode"):
            with self.lock:
                self.rejected_calls.append((path, answer["errcode"]))
        return answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return json_api_handler(self._answer)


def _error(code: int, message: str) -> dict[str, Any]:
    return {"errcode": code, "errmsg": f"{message}, hint: [{secrets.token_hex(4)}]"}


def serve(host: str = "127.0.0.1", port: int = 0) -> None:
    """``carepath emulator wecom``: run until interrupted, printing the address and credentials to configure."""
    import os

    emulator = WecomEmulator(corpid=os.environ.get("WECOM_EMULATOR_CORPID", "wwemulator0000001"),
                             secret=os.environ.get("WECOM_EMULATOR_SECRET", "emulator-contact-secret"),
                             token=os.environ.get("WECOM_EMULATOR_TOKEN", "emulatortoken"),
                             encoding_aes_key=os.environ.get("WECOM_EMULATOR_AES_KEY", "A" * 43),
                             host=host, port=port)
    with emulator:
        print(f"WeCom emulator listening on {emulator.url}", flush=True)
        print(f'  api_base = "{emulator.url}"  corpid = "{emulator.corpid}"  (secret: WECOM_EMULATOR_SECRET, '
              "token: WECOM_EMULATOR_TOKEN, encoding_aes_key: WECOM_EMULATOR_AES_KEY)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass

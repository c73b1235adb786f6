"""Verified WeChat callbacks -> carepath events.

Only called on a callback that passed its signature check. Every event gets
``source = "wechat:<connector>"`` and a ``source_id`` the engine deduplicates
on: ``msg:<MsgId>`` for a patient's messages, and for events the sender (a
keyed hash of the openid, never the openid itself), ``CreateTime`` and the
event name, so WeChat's retries of one push are applied once.

=============================  =====================================================
WeChat push                    carepath event
=============================  =====================================================
TEMPLATESENDJOBFINISH          ``message.delivered`` / ``message.failed`` (provider id = MsgID)
subscribe_msg_sent_event       ``message.delivered`` / ``message.failed`` per List item
subscribe_msg_popup_event,     ``consent.changed`` purpose ``template:<carepath template>``
subscribe_msg_change_event     on this connector, granted = accept (reject withdraws)
subscribe (follow)             binds the openid when EventKey carries a binding token;
                               ``consent.changed`` clinical granted on this connector
unsubscribe (unfollow)         ``consent.changed`` clinical and marketing withdrawn here
SCAN                           binds the openid when EventKey carries a binding token
text message                   ``message.replied`` with the text
=============================  =====================================================
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Protocol

import logging

from carepath.definition.events import EventIn
from carepath.runtime.template_consent import template_purpose

from carepath.connectors.wechat.binding import token_from_event_key


class Directory(Protocol):
    """What parsing needs from the database: who an openid is, and binding."""

    def patients(self, openid: str) -> list[str]:
        """MRNs of the patients bound to ``openid`` (empty when unknown or unbound)."""

    def openid_key(self, openid: str) -> str:
        """A stable keyed hash of ``openid`` for source ids."""

    def bind(self, token: str, openid: str) -> None:
        """Link ``openid`` to the patient a binding token names (a bad token is logged and ignored)."""


STATUS_DELIVERED = "success"
log = logging.getLogger(__name__)


class CallbackParser:
    """Turns one verified callback's fields into events for one connector."""

    def __init__(self, connector: str, templates: Mapping[str, Iterable[str]], directory: Directory) -> None:
        self.connector = connector
        self.source = f"wechat:{connector}"
        self.templates = {k: sorted(v) for k, v in templates.items()}  # WeChat template id -> carepath templates
        self.directory = directory

    def events(self, fields: Mapping[str, Any]) -> list[EventIn]:
        openid = str(fields.get("FromUserName", ""))
        at = _occurred(fields.get("CreateTime"))
        if fields.get("MsgType") == "text":
            payload = {"text": fields.get("Content", ""), "channel": self.connector, "msg_id": fields.get("MsgId")}
            return self._for_each_patient(openid, "message.replied", f"msg:{fields.get('MsgId')}", at, payload)
        if fields.get("MsgType") != "event":
            return []
        name = str(fields.get("Event", ""))
        base = f"evt:{self.directory.openid_key(openid)[:24]}:{fields.get('CreateTime')}:{name}"
        handler = self._handlers().get(name.lower())
        return handler(fields, openid, base, at) if handler else []

    def _handlers(self) -> dict[str, Callable[..., list[EventIn]]]:
        return {"templatesendjobfinish": self._job_finished, "subscribe_msg_sent_event": self._subscribe_sent,
                "subscribe_msg_popup_event": self._subscription, "subscribe_msg_change_event": self._subscription,
                "subscribe": self._follow, "unsubscribe": self._unfollow, "scan": self._scan}

    # -- deliveries -----------------------------------------------------------------------

    def _delivery(self, openid: str, source_id: str, at: datetime, msg_id: Any, ok: bool,
                  status: str) -> list[EventIn]:
        payload = {"provider_id": str(msg_id), "channel": self.connector, "status": status}
        if not ok:
            payload["error"] = status
        return self._for_each_patient(openid, "message.delivered" if ok else "message.failed", source_id, at,
                                      payload)[:1]

    def _job_finished(self, fields: Mapping[str, Any], openid: str, base: str, at: datetime) -> list[EventIn]:
        status = str(fields.get("Status", ""))
        msg_id = fields.get("MsgID") or fields.get("MsgId")
        return self._delivery(openid, f"{base}:{msg_id}", at, msg_id, status == STATUS_DELIVERED, status)

    def _subscribe_sent(self, fields: Mapping[str, Any], openid: str, base: str, at: datetime) -> list[EventIn]:
        return [event for item in fields.get("List", [])
                for event in self._delivery(openid, f"{base}:{item.get('MsgID')}", at, item.get("MsgID"),
                                            str(item.get("ErrorCode", "")) == "0",
                                            str(item.get("ErrorStatus") or "success"))]

    # -- consent --------------------------------------------------------------------------

    def _consent(self, openid: str, source_id: str, at: datetime, purpose: str, granted: bool,
                 **extra: Any) -> list[EventIn]:
        payload = {"purpose": purpose, "granted": granted, "channel": self.connector, **extra}
        return self._for_each_patient(openid, "consent.changed", source_id, at, payload)

    def _subscription(self, fields: Mapping[str, Any], openid: str, base: str, at: datetime) -> list[EventIn]:
        found: list[EventIn] = []
        for item in fields.get("List", []):
            template_id = str(item.get("TemplateId", ""))
            status = str(item.get("SubscribeStatusString", ""))
            if status not in ("accept", "reject"):
                continue
            for template in self.templates.get(template_id, []):
                found += self._consent(openid, f"{base}:{template}:{status}", at, template_purpose(template),
                                       status == "accept", wechat_template_id=template_id)
        return found

    def _follow(self, fields: Mapping[str, Any], openid: str, base: str, at: datetime) -> list[EventIn]:
        self._scan(fields, openid, base, at)
        return self._consent(openid, base, at, "clinical", True)

    def _unfollow(self, fields: Mapping[str, Any], openid: str, base: str, at: datetime) -> list[EventIn]:
        return [*self._consent(openid, f"{base}:clinical", at, "clinical", False),
                *self._consent(openid, f"{base}:marketing", at, "marketing", False)]

    def _scan(self, fields: Mapping[str, Any], openid: str, base: str, at: datetime) -> list[EventIn]:
        token = token_from_event_key(str(fields.get("EventKey", "")))
        if token and openid:
            self.directory.bind(token, openid)
        return []

    # -- helpers ------------------------------------------------------------------------------

    def _for_each_patient(self, openid: str, type_: str, source_id: str, at: datetime,
                          payload: dict[str, Any]) -> list[EventIn]:
        """One event per patient the openid is bound to (a guardian may hold several); none for a follower who is
        bound to no patient (logged: WeChat gets its "success", so it does not tell the follower we failed)."""
        mrns = self.directory.patients(openid)
        if not mrns:
            log.info("wechat %s: %s from a follower bound to no patient: acknowledged, not stored", self.connector,
                     type_)
            return []
        return [EventIn(type=type_, source=self.source, source_id=source_id if i == 0 else f"{source_id}:{i}",
                        patient_mrn=mrn, occurred_at=at, payload=dict(payload))
                for i, mrn in enumerate(mrns)]


def _occurred(create_time: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(str(create_time)), timezone.utc)
    except (TypeError, ValueError, OverflowError):
        return datetime.now(timezone.utc)

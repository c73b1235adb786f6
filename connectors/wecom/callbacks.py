"""Verified WeCom callbacks -> bindings, community membership and patients' messages.

Only called on a callback that passed :class:`~carepath.connectors.wecom.verify.WecomAuth`.

=========================================  ======================================================
WeCom callback                             what carepath does
=========================================  ======================================================
change_external_contact                    binds the patient's external_userid to the staff member
  add_external_contact                     (the patient from the signed ``State``), calls the
                                           assignment seam, sends ``welcome_text`` with the
                                           ``WelcomeCode``
  del_external_contact, del_follow_user    ends that binding
change_external_chat (create, update,      a configured community: members read with
  dismiss)                                 ``groupchat/get``, joins and leaves become tags and
                                           portrait facts
kf_msg_or_event                            ``kf/sync_msg`` from the stored cursor; each customer
                                           text is a ``message.replied`` event (as on WeChat)
=========================================  ======================================================

A WeCom API call that fails here is logged and the callback still answered
``success``: the next change of that group, or the next customer-service
callback, reads the whole state again (the kf cursor only moves past
messages that were stored).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Mapping

from sqlalchemy import select, update

from carepath.definition.events import EventIn
from carepath.store.schema import ConnectorState

from carepath.connectors.wechat.state import insert_new
from carepath.connectors.wechat.token import ApiError
from carepath.connectors.wecom.communities import sync_members
from carepath.connectors.wecom.contacts import on_contact_added, patient_from_state

if TYPE_CHECKING:
    from carepath.connectors.wecom.channel import WecomChannel

log = logging.getLogger(__name__)

WELCOME = "/cgi-bin/externalcontact/send_welcome_msg"
GROUP_GET = "/cgi-bin/externalcontact/groupchat/get"
KF_SYNC = "/cgi-bin/kf/sync_msg"
KF_FROM_CUSTOMER = 3
MAX_PAGES = 50  # pages of kf/sync_msg read per callback; the rest on the next one
EXTERNAL_MEMBER = 2  # groupchat/get member type: 1 staff member, 2 external contact


class CallbackHandler:
    """Applies one verified callback for a :class:`~carepath.connectors.wecom.channel.WecomChannel`."""

    def __init__(self, channel: "WecomChannel") -> None:
        self.channel = channel
        self.name = channel.name

    def handle(self, fields: Mapping[str, Any]) -> list[EventIn]:
        """Apply ``fields`` (the decrypted XML); returns the events left for the caller to store (none: this
        handler stores what it must before the callback is answered)."""
        event = str(fields.get("Event", ""))
        if self.channel.engine is None:
            log.warning("wecom %s: %s callback ignored (connector not bound to an engine)", self.name, event)
            return []
        handler = {"change_external_contact": self._contact, "change_external_chat": self._chat,
                   "kf_msg_or_event": self._kf}.get(event)
        if handler is None:
            log.info("wecom %s: %s callback acknowledged, nothing to do", self.name, event or "non-event")
            return []
        handler(fields)
        return []

    # -- contacts -----------------------------------------------------------------------------

    def _contact(self, fields: Mapping[str, Any]) -> None:
        change = str(fields.get("ChangeType", ""))
        staff, external = str(fields.get("UserID", "")), str(fields.get("ExternalUserID", ""))
        if not staff or not external:
            raise ValueError("change_external_contact without UserID or ExternalUserID")
        engine = self.channel.engine
        now = engine.clock.now()
        book = self.channel.book
        if change == "add_external_contact":
            state = str(fields.get("State", ""))
            named = patient_from_state(engine.cipher, self.name, state, time.time()) if state else None
            with engine.db.begin() as conn:  # the binding and the assignment commit together
                patient_id = book.added(conn, external, staff, named, now)
                if patient_id is not None:
                    on_contact_added(conn, engine, self.name, patient_id, staff)
            self._welcome(str(fields.get("WelcomeCode", "")))
        elif change in ("del_external_contact", "del_follow_user"):
            with engine.db.begin() as conn:
                book.removed(conn, external, staff, now)

    def _welcome(self, code: str) -> None:
        text = self.channel.config.welcome_text
        if not code or not text:
            return
        try:  # the code is usable once, shortly after the callback: no retry later
            self.channel.api.checked(WELCOME, {"welcome_code": code, "text": {"content": text}},
                                     "sending the welcome message")
        except ApiError as exc:
            log.warning("wecom %s: welcome message not sent: %s", self.name, exc)

    # -- communities ----------------------------------------------------------------------------

    def _chat(self, fields: Mapping[str, Any]) -> None:
        chat_id = str(fields.get("ChatId", ""))
        found = [name for name, c in self.channel.config.communities.items() if c.chat_id == chat_id]
        if not found:
            log.info("wecom %s: change of a customer group that is no configured community", self.name)
            return
        externals: list[str] = []
        if fields.get("ChangeType") != "dismiss":
            try:
                reply = self.channel.api.checked(GROUP_GET, {"chat_id": chat_id}, "reading a community's members")
            except ApiError as exc:
                log.warning("wecom %s: community %s not read: %s", self.name, found[0], exc)
                return
            members = (reply.get("group_chat") or {}).get("member_list") or []
            externals = [str(m.get("userid", "")) for m in members
                         if isinstance(m, dict) and int(m.get("type", 0)) == EXTERNAL_MEMBER]
        engine = self.channel.engine
        now = engine.clock.now()
        with engine.db.begin() as conn:
            patients = {pid for external in externals if external
                        for pid, _ in self.channel.book.patients(conn, external)}
            joined, left = sync_members(conn, engine.cipher, self.name, found[0], patients, now)
        log.info("wecom %s: community %s: %d joined, %d left", self.name, found[0], len(joined), len(left))

    # -- customer service (微信客服) ----------------------------------------------------------------

    def _kf(self, fields: Mapping[str, Any]) -> None:
        token, kfid = str(fields.get("Token", "")), str(fields.get("OpenKfId", ""))
        if not kfid:
            raise ValueError("kf_msg_or_event without OpenKfId")
        key = f"kf_cursor:{kfid}"[:128]
        for _ in range(MAX_PAGES):
            cursor = self._cursor(key)
            try:
                reply = self.channel.api.checked(KF_SYNC, {"cursor": cursor or "", "token": token, "limit": 1000,
                                                           "open_kfid": kfid}, "pulling customer-service messages")
            except ApiError as exc:
                log.warning("wecom %s: customer-service messages not pulled: %s", self.name, exc)
                return
            for message in reply.get("msg_list") or []:
                if isinstance(message, dict):
                    self._store_message(message, kfid)
            next_cursor = str(reply.get("next_cursor") or "")
            if next_cursor:  # only after every message of the page is stored: a crash re-reads, msgid dedups
                self._save_cursor(key, next_cursor)
            if not reply.get("has_more") or not next_cursor:
                return

    def _store_message(self, message: Mapping[str, Any], kfid: str) -> None:
        if int(message.get("origin", 0) or 0) != KF_FROM_CUSTOMER or message.get("msgtype") != "text":
            return
        engine = self.channel.engine
        external, msgid = str(message.get("external_userid", "")), str(message.get("msgid", ""))
        with engine.db.connect() as conn:
            patients = self.channel.book.patients(conn, external) if external else []
        if not patients or not msgid:
            log.info("wecom %s: customer-service message from a customer bound to no patient: not stored", self.name)
            return
        text = str((message.get("text") or {}).get("content", ""))
        at = _occurred(message.get("send_time"))
        for i, (_, mrn) in enumerate(patients):
            engine.ingest(EventIn(type="message.replied", source=self.channel.source,
                                  source_id=f"kf:{msgid}" if i == 0 else f"kf:{msgid}:{i}", patient_mrn=mrn,
                                  occurred_at=at, payload={"text": text, "channel": self.name, "msg_id": msgid,
                                                           "open_kfid": kfid}),
                          received_via=f"hook:{self.name}")

    def _cursor(self, key: str) -> str | None:
        with self.channel.engine.db.connect() as conn:
            return conn.execute(select(ConnectorState.value).where(ConnectorState.connector == self.name,
                                                                   ConnectorState.key == key)).scalar()

    def _save_cursor(self, key: str, cursor: str) -> None:
        now = self.channel.engine.clock.now()
        with self.channel.engine.db.begin() as conn:
            if not insert_new(conn, self.name, key, cursor, now):
                conn.execute(update(ConnectorState).where(ConnectorState.connector == self.name,
                                                          ConnectorState.key == key)
                             .values(value=cursor, updated_at=now))


def _occurred(stamp: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(str(stamp)), timezone.utc)
    except (TypeError, ValueError, OverflowError):
        return datetime.now(timezone.utc)

"""The ``wecom`` channel: WeCom customer contact (客户联系) mass messages to one patient or a community.

A message to a patient goes through ``externalcontact/add_msg_template``
(``chat_type: single``) from the staff member the patient added (their
health manager); a template listed in ``posts`` goes to that community's
customer group (``chat_type: group``, from the group owner). WeCom holds
either until the staff member confirms the send in their WeCom app, so the
send is recorded ``pending_confirmation`` (:meth:`SendResult.awaiting_confirmation`)
and :meth:`WecomChannel.check_confirmations` asks ``get_groupmsg_send_result``
later: sent (``message.delivered``), not a contact (``message.failed``: the
dispatcher falls back to the next channel) or refused by WeCom's mass-message
limit (``message.failed`` with status ``capped``: skipped, not failed). A
message unconfirmed after ``confirm_within`` falls back like an undelivered one
(:mod:`carepath.runtime.fallback`).

The provider id recorded for a send is ``<msgid>/<sender userid>``: the result
query needs both. Callbacks (``/hooks/wecom/<name>``) are handled by
:mod:`~carepath.connectors.wecom.callbacks` once :mod:`~carepath.connectors.wecom.verify` passed them.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, Sequence

from sqlalchemy import select

from carepath.definition.events import EventIn
from carepath.plugins.contracts import CallbackRequest, Capabilities, Channel, Message, SendResult
from carepath.store.schema import ConnectorState, Delivery, Patient, Touchpoint

from carepath.connectors.wechat import crypto
from carepath.connectors.wechat.state import insert_new
from carepath.connectors.wechat.token import ApiError
from carepath.connectors.wecom.api import RETRYABLE_ERRCODES, TOKEN_ERRCODES, WecomApi, meaning
from carepath.connectors.wecom.config import WecomConfig
from carepath.connectors.wecom.contacts import Contact, ContactBook, issue_state
from carepath.connectors.wecom.verify import WecomAuth

log = logging.getLogger(__name__)

ADD_MSG_TEMPLATE = "/cgi-bin/externalcontact/add_msg_template"
SEND_RESULT = "/cgi-bin/externalcontact/get_groupmsg_send_result"
KF_SEND = "/cgi-bin/kf/send_msg"
#: get_groupmsg_send_result ``status`` -> (receipt event, status carried in its payload)
RESULTS = {1: ("message.delivered", "sent"), 2: ("message.failed", "not_a_contact"), 3: ("message.failed", "capped")}


class WecomChannel(Channel):
    """Mass messages to patients' WeCom contacts and communities; contact, group and customer-service callbacks."""

    type_name: ClassVar[str] = "wecom"
    medium: ClassVar[str] = "wecom"
    Config = WecomConfig
    capabilities: ClassVar[Capabilities] = Capabilities(network=True, callbacks=True)
    #: the channel finds the patient's external_userid and health manager in its own bindings
    address_kind: ClassVar[str] = "none"
    emulator: ClassVar[str | None] = "carepath.connectors.wecom.emulator:serve"
    config: WecomConfig

    def __init__(self, name: str, config: WecomConfig | None = None) -> None:
        if config is None:
            raise TypeError("a wecom channel needs its configuration (corpid, secret, token, encoding_aes_key)")
        super().__init__(name, config)
        self.source = f"wecom:{name}"
        self.api = WecomApi(name, config)
        self.auth = WecomAuth(token=config.token.get_secret_value(), corpid=config.corpid,
                              encoding_aes_key=config.encoding_aes_key.get_secret_value(),
                              max_age=config.callback_max_age, max_bytes=config.callback_max_bytes)
        self.confirmation_window = timedelta(seconds=config.confirm_within)
        self.engine: Any = None
        self.book: ContactBook | None = None

    def bind(self, engine: Any) -> None:
        self.engine = engine
        self.book = ContactBook(self.name, engine.cipher)
        self.api.tokens.bind(engine.db, engine.cipher)

    @property
    def tokens(self) -> Any:
        """The shared access token (:class:`~carepath.connectors.wechat.token.AccessTokens`)."""
        return self.api.tokens

    def contact_state(self, patient_id: int) -> str:
        """The ``State`` to configure on a staff member's "contact me" QR code for ``patient_id``."""
        return issue_state(self._engine().cipher, self.name, patient_id, time.time() + self.config.binding_ttl)

    def contact_of(self, patient_id: int) -> Contact | None:
        """The patient's active WeCom contact (external_userid and the staff member who sends), if any."""
        with self._engine().db.connect() as conn:
            return self._book().contact_of(conn, patient_id)

    # -- sending -------------------------------------------------------------------------

    def send(self, message: Message) -> SendResult:
        return self._send_one(message)

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        return [self._send_one(m) for m in messages]

    def _send_one(self, message: Message) -> SendResult:
        key = "sent:" + hashlib.sha256(message.idempotency_key.encode()).hexdigest()[:48]
        earlier = self._state(key)
        if earlier:  # WeCom has no dedup field: a retry of a send it took answers the same task
            return SendResult.awaiting_confirmation(earlier)
        community = self.config.posts.get(message.template)
        if community is not None:
            group = self.config.communities[community]
            sender = group.owner
            body: dict[str, Any] = {"chat_type": "group", "sender": sender, "chat_id_list": [group.chat_id]}
            target = f"community {community}"
        else:
            contact = self.contact_of(message.patient_id)
            if contact is None:
                return SendResult.permanent("not_a_contact", "the patient is not a WeCom contact of any staff member")
            sender = contact.staff_userid
            body = {"chat_type": "single", "external_userid": [contact.external_userid], "sender": sender}
            target = f"patient {message.patient_id}"
        invite = self.config.invites.get(message.template)
        text = message.body if invite is None else f"{message.body}\n{self.config.communities[invite].invite_url}"
        body["text"] = {"content": text}
        try:
            reply = self.api.post(ADD_MSG_TEMPLATE, body)
        except ApiError as exc:
            return SendResult(ok=False, error_kind=exc.kind, error_code=exc.code, error=str(exc))
        code = reply.get("errcode", 0)
        if code:
            text = f"WeCom errcode {code}: {meaning(code)}"
            log.info("wecom %s: %s to %s not sent: %s", self.name, message.template, target, code)
            if code in RETRYABLE_ERRCODES or code in TOKEN_ERRCODES:
                return SendResult.retryable(str(code), text)
            return SendResult.permanent(str(code), text)
        if reply.get("fail_list") or not reply.get("msgid"):
            return SendResult.permanent("not_a_contact", "WeCom did not take the patient as a contact of the sender")
        provider_id = f"{reply['msgid']}/{sender}"
        self._remember(key, provider_id)
        return SendResult.awaiting_confirmation(provider_id)

    # -- confirmations ----------------------------------------------------------------------

    def check_confirmations(self, limit: int = 200) -> int:
        """Ask WeCom about sends waiting for their staff member; report each outcome as a receipt event.

        Returns how many outcomes were reported. A send still unconfirmed stays as it is (the fallback
        job moves it on after ``confirm_within``).
        """
        engine = self._engine()
        with engine.db.connect() as conn:
            rows = conn.execute(select(Delivery.provider_id, Touchpoint.patient_id, Patient.mrn_enc)
                                .join(Touchpoint, Touchpoint.id == Delivery.touchpoint_id)
                                .join(Patient, Patient.id == Touchpoint.patient_id)
                                .where(Delivery.channel == self.name, Delivery.status == "pending_confirmation",
                                       Touchpoint.channel == self.name, Touchpoint.status == "sent",
                                       Delivery.provider_id.is_not(None))
                                .order_by(Delivery.id).limit(limit)).all()
        reported = 0
        for row in rows:
            msgid, _, sender = str(row.provider_id).partition("/")
            try:
                reply = self.api.checked(SEND_RESULT, {"msgid": msgid, "userid": sender, "limit": 1000},
                                         "reading a mass message's result")
            except ApiError as exc:
                log.warning("wecom %s: result of %s not read: %s", self.name, msgid, exc)
                continue
            send_list = [item for item in reply.get("send_list") or [] if isinstance(item, dict)]
            outcome = self._outcome(send_list)
            if outcome is None:
                continue
            self._forget_lost_contacts(send_list, sender)
            (event_type, status), sent_at = outcome
            mrn = engine.cipher.decrypt(row.mrn_enc) or ""
            engine.ingest(EventIn(type=event_type, source=self.source, source_id=f"result:{msgid}",
                                  patient_mrn=mrn, occurred_at=sent_at,
                                  payload={"provider_id": row.provider_id, "channel": self.name, "status": status,
                                           "reason": status}))
            reported += 1
        return reported

    def _forget_lost_contacts(self, send_list: list[dict[str, Any]], sender: str) -> None:
        """WeCom says these customers are no longer the sender's contacts (status 2): end those bindings, so the
        patient's next message goes to the next channel at once (WeCom may not have called back)."""
        lost = [str(item["external_userid"]) for item in send_list
                if int(item.get("status", 0)) == 2 and item.get("external_userid")]
        if lost:
            engine = self._engine()
            with engine.db.begin() as conn:
                for external in lost:
                    self._book().removed(conn, external, sender, engine.clock.now())

    def _outcome(self, send_list: list[dict[str, Any]]) -> tuple[tuple[str, str], datetime] | None:
        """The reported outcome among ``send_list`` (one item per customer or group of the task), if settled."""
        statuses = [int(item.get("status", 0)) for item in send_list]
        settled = [s for s in statuses if s in RESULTS]
        if not settled or len(settled) < len(statuses):
            return None
        worst = 1 if all(s == 1 for s in settled) else max(s for s in settled if s != 1)
        stamp = max((int(item.get("send_time") or 0) for item in send_list), default=0)
        at = datetime.fromtimestamp(stamp, timezone.utc) if stamp else self._engine().clock.now()
        return RESULTS[worst], at

    # -- customer service (微信客服) ---------------------------------------------------------

    def answer(self, patient_id: int, text: str, open_kfid: str | None = None) -> SendResult:
        """Answer a patient's customer-service message through ``kf/send_msg`` (within WeCom's 48 hours)."""
        kfid = open_kfid or self.config.open_kfid
        contact = self.contact_of(patient_id)
        if not kfid or contact is None:
            return SendResult.permanent("no_session", "no customer-service account or WeCom contact for the patient")
        body = {"touser": contact.external_userid, "open_kfid": kfid, "msgtype": "text", "text": {"content": text}}
        try:
            reply = self.api.post(KF_SEND, body)
        except ApiError as exc:
            return SendResult(ok=False, error_kind=exc.kind, error_code=exc.code, error=str(exc))
        code = reply.get("errcode", 0)
        if code:
            result = SendResult.retryable if code in RETRYABLE_ERRCODES else SendResult.permanent
            return result(str(code), f"WeCom errcode {code}: {meaning(code)}")
        return SendResult.sent(str(reply.get("msgid") or "") or None)

    # -- callbacks -------------------------------------------------------------------------

    def verify_callback(self, request: CallbackRequest) -> bool:
        return self.auth.authentic(request)

    def parse_callback(self, request: CallbackRequest) -> list[Any]:
        if request.method == "GET":
            return []
        from carepath.connectors.wecom.callbacks import CallbackHandler

        return CallbackHandler(self).handle(crypto.parse_xml(self.auth.plaintext(request)))

    def callback_reply(self, request: CallbackRequest) -> tuple[int, str]:
        if request.method == "GET":  # the URL check: answer the decrypted echostr
            return 200, self.auth.plaintext(request)
        return 200, "success"

    # -- shared state -------------------------------------------------------------------------

    def _state(self, key: str) -> str | None:
        if self.engine is None:
            return None
        with self.engine.db.connect() as conn:
            return conn.execute(select(ConnectorState.value).where(ConnectorState.connector == self.name,
                                                                   ConnectorState.key == key)).scalar()

    def _remember(self, key: str, value: str) -> None:
        if self.engine is not None:
            with self.engine.db.begin() as conn:
                insert_new(conn, self.name, key, value, self.engine.clock.now())

    def _engine(self) -> Any:
        if self.engine is None:
            raise RuntimeError(f"wecom connector {self.name!r} is not bound to an engine")
        return self.engine

    def _book(self) -> ContactBook:
        assert self.book is not None
        return self.book

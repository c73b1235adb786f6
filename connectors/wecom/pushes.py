"""WeCom callbacks as WeCom sends them: the fields of each event, encrypted and signed (WXBizMsgCrypt).

Used by the emulator to call carepath, and by tests. The crypto is WeChat's
safe mode (:mod:`carepath.connectors.wechat.crypto`) with the corp id as the
receive id; tests check it against an independent implementation (wechatpy).
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Mapping

from carepath.connectors.wechat import crypto


def signed_callback(fields: Mapping[str, Any], *, token: str, corpid: str, encoding_aes_key: str,
                    timestamp: int | None = None, nonce: str | None = None) -> tuple[dict[str, str], bytes]:
    """The query string and body of the ``POST`` WeCom makes for ``fields``."""
    stamp, nonce = str(timestamp if timestamp is not None else int(time.time())), nonce or secrets.token_hex(5)
    encrypted = crypto.encrypt(crypto.aes_key(encoding_aes_key), crypto.to_xml(fields), corpid)
    query = {"msg_signature": crypto.signature(token, stamp, nonce, encrypted), "timestamp": stamp, "nonce": nonce}
    envelope = crypto.to_xml({"ToUserName": corpid, "AgentID": "", "Encrypt": encrypted})
    return query, envelope.encode()


def url_check(*, token: str, corpid: str, encoding_aes_key: str, echo: str,
              timestamp: int | None = None) -> dict[str, str]:
    """The query string of WeCom's URL verification ``GET``: ``echostr`` is ``echo`` encrypted."""
    stamp, nonce = str(timestamp if timestamp is not None else int(time.time())), secrets.token_hex(5)
    encrypted = crypto.encrypt(crypto.aes_key(encoding_aes_key), echo, corpid)
    return {"msg_signature": crypto.signature(token, stamp, nonce, encrypted), "timestamp": stamp, "nonce": nonce,
            "echostr": encrypted}


def event(corpid: str, name: str, **extra: Any) -> dict[str, Any]:
    """The fields of an event callback (``name``: change_external_contact, change_external_chat, ...)."""
    return {"ToUserName": corpid, "FromUserName": "sys", "CreateTime": int(time.time()), "MsgType": "event",
            "Event": name, **extra}


def contact_added(corpid: str, staff: str, external: str, *, state: str = "", welcome_code: str = "") -> dict:
    """``add_external_contact``: the customer ``external`` added staff member ``staff``."""
    fields = event(corpid, "change_external_contact", ChangeType="add_external_contact", UserID=staff,
                   ExternalUserID=external)
    if state:
        fields["State"] = state
    if welcome_code:
        fields["WelcomeCode"] = welcome_code
    return fields


def contact_removed(corpid: str, staff: str, external: str, *, by_customer: bool = True) -> dict:
    """``del_follow_user`` (the customer deleted the staff member) or ``del_external_contact`` (the reverse)."""
    change = "del_follow_user" if by_customer else "del_external_contact"
    return event(corpid, "change_external_contact", ChangeType=change, UserID=staff, ExternalUserID=external)


def chat_changed(corpid: str, chat_id: str, change: str = "update", detail: str = "add_member") -> dict:
    """``change_external_chat`` for ``chat_id`` (``create``, ``update`` with ``UpdateDetail``, ``dismiss``)."""
    fields = event(corpid, "change_external_chat", ChatId=chat_id, ChangeType=change)
    if change == "update":
        fields["UpdateDetail"] = detail
    return fields


def kf_event(corpid: str, token: str, open_kfid: str) -> dict:
    """``kf_msg_or_event``: there are customer-service messages to pull with ``token``."""
    return event(corpid, "kf_msg_or_event", Token=token, OpenKfId=open_kfid)

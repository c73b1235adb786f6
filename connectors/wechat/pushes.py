"""What WeChat pushes to a callback URL, built and signed the way WeChat does (for the emulator and tests).

The builders return the fields of one push (``event``, ``delivery_report``,
``subscription``, ``subscription_sent``, ``text_message``);
:func:`signed_callback` turns them into the query and body WeChat POSTs, in
plaintext or safe (AES) mode.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Mapping

from carepath.connectors.wechat import crypto


def signed_callback(fields: Mapping[str, Any], *, token: str, appid: str, encoding_aes_key: str | None = None,
                    safe: bool | None = None, timestamp: int | None = None,
                    nonce: str | None = None) -> tuple[dict[str, str], bytes]:
    """``(query, body)`` of a callback as WeChat signs it (and in safe mode encrypts it) for ``appid``."""
    safe = encoding_aes_key is not None if safe is None else safe
    stamp, nonce = str(timestamp if timestamp is not None else int(time.time())), nonce or secrets.token_hex(5)
    xml = crypto.to_xml(fields)
    query = {"signature": crypto.signature(token, stamp, nonce), "timestamp": stamp, "nonce": nonce,
             "openid": str(fields.get("FromUserName", ""))}
    if not safe:
        return query, xml.encode()
    if encoding_aes_key is None:
        raise ValueError("safe mode needs an EncodingAESKey")
    encrypted = crypto.encrypt(crypto.aes_key(encoding_aes_key), xml, appid)
    query.update(encrypt_type="aes", msg_signature=crypto.signature(token, stamp, nonce, encrypted))
    envelope = crypto.to_xml({"ToUserName": fields.get("ToUserName", "gh_emulator"), "Encrypt": encrypted})
    return query, envelope.encode()


def event(openid: str, name: str, *, create_time: int | None = None, **extra: Any) -> dict[str, Any]:
    """The fields of an event push from ``openid`` (``name``: TEMPLATESENDJOBFINISH, subscribe, ...)."""
    return {"ToUserName": "gh_emulator", "FromUserName": openid, "CreateTime": create_time or int(time.time()),
            "MsgType": "event", "Event": name, **extra}


def delivery_report(openid: str, msgid: int | str, status: str = "success", **kw: Any) -> dict[str, Any]:
    """``TEMPLATESENDJOBFINISH`` (status ``success``, ``failed:user block`` or ``failed: system failed``)."""
    return event(openid, "TEMPLATESENDJOBFINISH", MsgID=int(msgid), Status=status, **kw)


def subscription(openid: str, template_id: str, status: str, *, change: bool = True, **kw: Any) -> dict[str, Any]:
    """A subscription decision (``accept`` / ``reject``) for one template."""
    name, wrapper = (("subscribe_msg_change_event", "SubscribeMsgChangeEvent") if change
                     else ("subscribe_msg_popup_event", "SubscribeMsgPopupEvent"))
    item = {"TemplateId": template_id, "SubscribeStatusString": status, "PopupScene": 0}
    return event(openid, name, **{wrapper: {"List": [item]}}, **kw)


def subscription_sent(openid: str, template_id: str, msgid: int | str, error_code: int = 0,
                      error_status: str = "success") -> dict[str, Any]:
    """``subscribe_msg_sent_event``: the outcome of one subscription message."""
    item = {"TemplateId": template_id, "MsgID": int(msgid), "ErrorCode": error_code, "ErrorStatus": error_status}
    return event(openid, "subscribe_msg_sent_event", SubscribeMsgSentEvent={"List": [item]})


def text_message(openid: str, content: str, msg_id: int | None = None) -> dict[str, Any]:
    """A patient's text message to the Official Account."""
    return {"ToUserName": "gh_emulator", "FromUserName": openid, "CreateTime": int(time.time()), "MsgType": "text",
            "Content": content, "MsgId": msg_id or secrets.randbelow(10**16)}

"""WeCom callbacks to /hooks/wecom/<name> over real HTTP (uvicorn): only correctly encrypted and signed ones are
taken, checked against wechatpy's independent WXBizMsgCrypt; contacts, communities and customer-service messages."""

from __future__ import annotations

import time

import pytest
import requests
from sqlalchemy import select

from carepath.connectors.wechat.crypto import to_xml
from carepath.connectors.wecom import pushes
from carepath.connectors.wecom.contacts import ACTIVE, REMOVED
from carepath.store.schema import ConnectorState, Event, Patient
from carepath.store.schema_wecom import WecomContact
from carepath.runtime.portrait import load_portraits

from tests.connectors.wecom_support import (AES_KEY, COMMUNITY_CHAT, CORPID, EXTERNAL, KFID, STAFF, TOKEN, World)
from tests.connectors.wecom_support import make_world, wecom_emulator, world  # noqa: F401 - fixtures

OTHER_AES_KEY = "B" * 43


def _wechatpy_post(world: World, fields: dict, *, token: str = TOKEN, key: str = AES_KEY, corpid: str = CORPID,
                   timestamp: int | None = None) -> requests.Response:
    """A callback encrypted and signed by wechatpy's enterprise WXBizMsgCrypt, not by our code."""
    from wechatpy.enterprise.crypto import WeChatCrypto

    stamp, nonce = str(timestamp or int(time.time())), "sdknonce01"
    envelope = WeChatCrypto(token, key, corpid).encrypt_message(to_xml(fields), nonce, stamp)
    signature = envelope.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
    return requests.post(world.hook, data=envelope.encode(), timeout=10, headers={"Content-Type": "text/xml"},
                         params={"msg_signature": signature, "timestamp": stamp, "nonce": nonce})


def _contacts(world: World) -> list[tuple]:
    with world.engine.db.connect() as conn:
        return [tuple(r) for r in conn.execute(select(WecomContact.staff_userid, WecomContact.patient_id,
                                                      WecomContact.status).order_by(WecomContact.id))]


def test_only_callbacks_wechatpy_encrypts_for_this_corp_with_its_token_are_taken(world: World):
    pid = world.patient()
    state = world.wecom.contact_state(pid)
    added = pushes.contact_added(CORPID, STAFF, EXTERNAL, state=state)
    refused = [_wechatpy_post(world, added, token="not-the-token"),
               _wechatpy_post(world, added, key=OTHER_AES_KEY),
               _wechatpy_post(world, added, corpid="wwanothercorp00001"),
               _wechatpy_post(world, added, timestamp=int(time.time()) - 3600)]
    assert [r.status_code for r in refused] == [401, 401, 401, 401]
    assert _contacts(world) == []  # nothing of a refused callback was stored
    taken = _wechatpy_post(world, added)
    assert (taken.status_code, taken.text) == (200, "success")
    assert _contacts(world) == [(STAFF, pid, ACTIVE)]


def test_the_emulators_callbacks_and_url_check_decrypt_with_wechatpy(world: World):
    from wechatpy.enterprise.crypto import WeChatCrypto
    from wechatpy.exceptions import InvalidSignatureException

    query, body = world.emulator.signed_request(pushes.kf_event(CORPID, "tok", KFID))
    plain = WeChatCrypto(TOKEN, AES_KEY, CORPID).decrypt_message(body.decode(), query["msg_signature"],
                                                                 query["timestamp"], query["nonce"])
    assert "<Event><![CDATA[kf_msg_or_event]]></Event>" in plain
    with pytest.raises(InvalidSignatureException):
        WeChatCrypto("not-the-token", AES_KEY, CORPID).decrypt_message(body.decode(), query["msg_signature"],
                                                                       query["timestamp"], query["nonce"])
    check = pushes.url_check(token=TOKEN, corpid=CORPID, encoding_aes_key=AES_KEY, echo="echo-123")
    assert WeChatCrypto(TOKEN, AES_KEY, CORPID).check_signature(
        check["msg_signature"], check["timestamp"], check["nonce"], check["echostr"]) == "echo-123"


def test_url_verification_answers_the_decrypted_echostr_and_refuses_a_forged_one(world: World):
    echo, answer = world.emulator.verify_url(world.hook)
    assert (answer.status_code, answer.text) == (200, echo)
    forged = requests.get(world.hook, timeout=5, params={"msg_signature": "0" * 40, "timestamp": str(int(time.time())),
                                                         "nonce": "n", "echostr": "abc"})
    assert forged.status_code == 401


def test_a_body_over_the_bound_is_refused_before_it_is_read(world: World):
    from carepath.connectors.wecom.verify import WecomAuth
    from carepath.plugins.contracts import CallbackRequest

    query, body = world.emulator.signed_request(pushes.event(CORPID, "noop", Padding="x" * 2000))
    small = WecomAuth(token=TOKEN, corpid=CORPID, encoding_aes_key=AES_KEY, max_age=300, max_bytes=1024)
    assert small.authentic(CallbackRequest(body=body, query=query)) is False
    assert world.wecom.verify_callback(CallbackRequest(body=body, query=query)) is True  # 64 KiB by default


def test_adding_a_health_manager_binds_the_patient_and_sends_the_welcome_message_once(world: World):
    pid = world.patient()
    world.bind(pid)
    assert _contacts(world) == [(STAFF, pid, ACTIVE)]
    assert [w["text"]["content"] for w in world.emulator.welcomes] == ["您好，我是您的健康管理师。"]
    assert world.wecom.contact_of(pid).staff_userid == STAFF
    with world.engine.db.connect() as conn:  # the external_userid is stored encrypted only
        stored = conn.execute(select(WecomContact.external_userid_enc, WecomContact.external_key)).one()
    assert EXTERNAL not in stored.external_userid_enc and EXTERNAL != stored.external_key
    # a forged State binds nobody (the contact is kept, unbound)
    world.emulator.add_contact(world.hook, "hm_wang", "wmStranger0001", state=f"p{pid:x}.7fffffff.0000000000")
    assert _contacts(world)[-1] == ("hm_wang", None, ACTIVE)
    world.emulator.remove_contact(world.hook, STAFF, EXTERNAL, by_customer=False)
    assert _contacts(world)[0] == (STAFF, pid, REMOVED) and world.wecom.contact_of(pid) is None


def test_community_membership_becomes_a_tag_and_a_portrait_fact(world: World):
    pid = world.patient()
    world.bind(pid)
    assert world.emulator.join_group(world.hook, COMMUNITY_CHAT, EXTERNAL).status_code == 200

    def state():
        with world.engine.db.connect() as conn:
            tags = conn.execute(select(Patient.tags).where(Patient.id == pid)).scalar()
            portrait = load_portraits(conn, world.engine.cipher, {pid: "Asia/Shanghai"}, world.clock.now())[pid]
        return tags, portrait

    tags, portrait = state()
    assert "community:diabetes" in tags
    assert portrait.communities == ("diabetes",)  # what conditions read as patient.portrait.communities
    world.emulator.join_group(world.hook, COMMUNITY_CHAT, EXTERNAL, joined=False)
    tags, portrait = state()
    assert "community:diabetes" not in tags and portrait.communities == ()


def test_a_customer_service_message_becomes_message_replied_once_and_is_answered_by_kf_send_msg(world: World):
    pid = world.patient()
    world.bind(pid)
    assert world.emulator.customer_writes(world.hook, KFID, EXTERNAL, "怎么挂号").status_code == 200
    assert world.emulator.customer_writes(world.hook, KFID, EXTERNAL, "谢谢").status_code == 200
    with world.engine.db.connect() as conn:
        events = conn.execute(select(Event.source, Event.source_id, Event.patient_id)
                              .where(Event.type == "message.replied").order_by(Event.id)).all()
        cursor = conn.execute(select(ConnectorState.value).where(ConnectorState.key == f"kf_cursor:{KFID}")).scalar()
    # the second pull starts at the stored cursor: the first message is not stored twice
    assert [(e.source, e.patient_id) for e in events] == [("wecom:wecom", pid)] * 2
    assert len({e.source_id for e in events}) == 2 and cursor == "2"
    assert world.wecom.answer(pid, "请在公众号菜单“预约挂号”中预约。").ok
    assert world.emulator.kf_sent[-1]["touser"] == EXTERNAL and world.emulator.kf_sent[-1]["open_kfid"] == KFID

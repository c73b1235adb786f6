"""Sending on WeCom: a message waits for its staff member's confirmation, then is delivered; a patient who is no
longer a contact, or a message never confirmed, falls back to SMS; WeCom's mass-message limit is a cap."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from carepath.runtime.fallback import unconfirmed_fallback
from carepath.store.schema import StaffTask

from tests.connectors.wecom_support import COMMUNITY_CHAT, EXTERNAL, STAFF, World
from tests.connectors.wecom_support import make_world, wecom_emulator, world  # noqa: F401 - fixtures


def _tasks(world: World) -> list:
    with world.engine.db.connect() as conn:
        return conn.execute(select(StaffTask.kind)).scalars().all()


def test_a_send_waits_for_the_staff_members_confirmation_then_is_delivered(world: World):
    world.bind(world.patient())
    world.discharge()
    task = world.emulator.task_of(STAFF)
    assert (task.chat_type, task.targets, task.sender) == ("single", [EXTERNAL], STAFF)
    assert task.content.startswith("张先生/女士您好")
    assert world.deliveries() == [("wecom", "pending_confirmation")]
    assert world.touchpoint().status == "sent"

    assert world.confirmations() == 0  # the staff member has not confirmed: nothing reached the patient
    assert world.deliveries() == [("wecom", "pending_confirmation")]

    world.emulator.confirm(task.msgid)
    assert world.confirmations() == 1
    assert world.deliveries() == [("wecom", "delivered")]
    assert world.touchpoint().status == "delivered"
    assert world.sms.messages == [] and world.confirmations() == 0


def test_a_patient_no_longer_a_contact_gets_the_message_by_sms(world: World):
    pid = world.patient()
    world.bind(pid)
    world.discharge()
    task = world.emulator.task_of(STAFF)
    world.emulator.remove_contact(None, STAFF, EXTERNAL)  # the patient deleted their health manager meanwhile
    world.emulator.confirm(task.msgid)
    assert world.confirmations() == 1
    assert world.touchpoint().status == "failed"
    assert world.wecom.contact_of(pid) is None  # WeCom's answer ends the binding (its callback may never come)

    assert unconfirmed_fallback(world.engine) == 1
    world.engine.dispatch_due()
    assert world.deliveries() == [("wecom", "failed"), ("sms", "sent")]
    assert [m.phone for m in world.sms.messages] == ["13912345678"]
    assert world.touchpoint().channel == "sms" and "wecom unconfirmed (a failure receipt)" in world.touchpoint().reason


def test_a_patient_who_never_added_a_health_manager_goes_straight_to_sms(world: World):
    world.patient()
    world.discharge()
    assert world.deliveries() == [("wecom", "failed"), ("sms", "sent")]  # refused before any WeCom call
    assert world.emulator.tasks == {}
    assert "wecom: not_a_contact" in world.touchpoint().reason


def test_a_removed_contact_is_unbound_so_the_next_message_goes_by_sms(world: World):
    world.bind(world.patient())
    answer = world.emulator.remove_contact(world.hook, STAFF, EXTERNAL, by_customer=True)
    assert (answer.status_code, answer.text) == (200, "success")
    world.discharge()
    assert world.deliveries() == [("wecom", "failed"), ("sms", "sent")]
    assert world.emulator.tasks == {} and "wecom: not_a_contact" in world.touchpoint().reason


def test_an_unconfirmed_message_falls_back_after_the_configured_window_and_a_late_confirmation_is_ignored(
        world: World):
    world.bind(world.patient())
    world.discharge()
    task = world.emulator.task_of(STAFF)
    world.clock.advance(timedelta(minutes=59))
    assert unconfirmed_fallback(world.engine) == 0  # confirm_within = 3600 s: not yet
    world.clock.advance(timedelta(minutes=2))
    assert unconfirmed_fallback(world.engine) == 1
    world.engine.dispatch_due()
    assert world.deliveries() == [("wecom", "unconfirmed"), ("sms", "sent")]

    world.emulator.confirm(task.msgid)  # too late: the patient already has it by SMS
    assert world.confirmations() == 0
    assert world.deliveries() == [("wecom", "unconfirmed"), ("sms", "sent")]


def test_the_mass_message_limit_is_a_cap_not_a_failure(world: World):
    world.bind(world.patient())
    world.emulator.capped.add(EXTERNAL)  # the patient already received a mass message in WeCom's window
    world.discharge()
    world.emulator.confirm(world.emulator.task_of(STAFF).msgid)
    assert world.confirmations() == 1
    tp = world.touchpoint()
    assert (tp.status, tp.reason) == ("skipped", "skipped: capped by the provider's mass-message limit")
    assert world.deliveries() == [("wecom", "capped")]
    assert unconfirmed_fallback(world.engine) == 0 and world.sms.messages == [] and _tasks(world) == []


def test_the_access_token_is_fetched_once_and_shared_by_every_worker(world: World, database_url, settings, clock):
    from carepath.connectors.wecom import WecomChannel
    from carepath.engine import Engine

    from tests.connectors.wecom_support import wecom_options

    pid = world.patient()
    world.bind(pid)
    other = WecomChannel.from_options("wecom", wecom_options(world.emulator.url))
    second = Engine(database_url, journeys=[], channels={"wecom": other}, templates={}, clock=clock,
                    settings=settings)
    try:
        assert world.wecom.answer(pid, "第一位").ok and other.answer(pid, "第二位").ok
    finally:
        second.close()
    assert world.emulator.token_requests == 1
    assert [m["text"]["content"] for m in world.emulator.kf_sent] == ["第一位", "第二位"]
    world.emulator.expire_tokens()
    assert other.answer(pid, "过期后").ok and world.emulator.token_requests == 2


def test_a_step_posts_to_its_community_from_the_group_owner_once_confirmed(make_world):
    world = make_world(posts={"sms_followup": "diabetes"})
    world.patient()  # no WeCom contact needed: the post goes to the group, not to the patient
    world.discharge()
    task = world.emulator.task_of(STAFF)
    assert (task.chat_type, task.targets) == ("group", [COMMUNITY_CHAT])
    assert world.deliveries() == [("wecom", "pending_confirmation")]
    world.emulator.confirm(task.msgid)
    assert world.confirmations() == 1 and world.deliveries() == [("wecom", "delivered")]


def test_an_invitation_carries_the_communitys_join_link(make_world):
    link = "https://work.weixin.qq.com/gm/diabetes-join"
    world = make_world(communities={"diabetes": {"chat_id": COMMUNITY_CHAT, "owner": STAFF, "invite_url": link}},
                       invites={"sms_followup": "diabetes"})
    world.bind(world.patient())
    world.discharge()
    task = world.emulator.task_of(STAFF)
    assert task.chat_type == "single" and task.content.endswith("\n" + link)

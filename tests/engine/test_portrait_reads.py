"""A batch loads the portraits its touchpoints may read, and whatever reads one anyway still gets it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from carepath.definition.dsl import enroll_on, journey, on, send, step, template
from carepath.plugins.contracts import Message, SendResult
from carepath.runtime.dispatch.portrait_reads import source_reads_portrait
from tests.engine import helpers as h


class TextOnly(h.RecordingChannel):
    """A channel that sends the rendered text only (so the batch loads portraits for its templates alone);
    ``seen`` records what the context's portrait said when a message went out, for a channel that reads it."""

    reads_context = False

    def __init__(self, name: str = "sms", peek: bool = False) -> None:
        super().__init__(name)
        self.peek = peek
        self.seen: list[int] = []

    def send(self, message: Message) -> SendResult:
        if self.peek:  # a connector that reads the context after all
            self.seen.append(message.context["patient"].portrait.replies_total)
        return super().send(message)


def _engine(database_url, settings, clock, body: str, when: str | None = None, peek: bool = False):
    care = journey("replies-care", enroll=enroll_on("visit.checked_in"),
                   templates=[template("note", body)],
                   steps=[step("note", "in_visit", on("visit.checked_in", "1h"), send("note", ["sms"]), when=when)])
    return h.running_engine(database_url, settings, clock, [care], {"sms": TextOnly(peek=peek)})


def _two_replies_then_check_in(eng, clock) -> None:
    ev = h.Events(clock)
    eng.ingest(ev("message.replied", {"text": "收到"}))
    eng.ingest(ev("message.replied", {"text": "谢谢"}))
    eng.ingest(ev("visit.checked_in"))
    clock.advance(timedelta(hours=2))


def test_a_template_reading_the_portrait_sends_its_facts(database_url, settings, clock):
    with _engine(database_url, settings, clock, "您已回复{{ patient.portrait.replies_total }}次") as eng:
        _two_replies_then_check_in(eng, clock)
        assert eng.dispatch_due().sent == 1
        assert [m.body for m in eng.channels["sms"].messages] == ["您已回复2次"]


@pytest.mark.parametrize("when, sent", [("patient.portrait.replies_total >= 2", 1),
                                        ("patient.portrait.replies_total > 2", 0)])
def test_a_condition_on_the_portrait_decides_with_its_facts(database_url, settings, clock, when, sent):
    with _engine(database_url, settings, clock, "{{ patient.surname }}您好", when=when) as eng:
        _two_replies_then_check_in(eng, clock)
        assert eng.dispatch_due().sent == sent


def test_a_channel_reading_the_context_sees_the_portrait_the_templates_did_not_need(database_url, settings, clock):
    with _engine(database_url, settings, clock, "{{ patient.surname }}您好", peek=True) as eng:
        _two_replies_then_check_in(eng, clock)
        assert eng.dispatch_due().sent == 1
        assert eng.channels["sms"].seen == [2], "the portrait was read when the channel read it"
        assert [m.body for m in eng.channels["sms"].messages] == ["张您好"]


@pytest.mark.parametrize("source, condition", [
    ("{{ patient.surname }}您好，{{ patient.age }}岁", False), ("{{ event.department }}{{ anchors.visit | time }}", False),
    ("patient.has('E11') or patient.tagged('vip')", True), ("欢迎就诊", False), ("patient.age >= 65", True)])
def test_sources_that_read_no_portrait(source, condition):
    assert not source_reads_portrait(source, condition)


@pytest.mark.parametrize("source, condition", [
    ("{{ patient.portrait.clicks_30d }}", False), ("patient.in_segment('elderly')", True),
    ("{% set p = patient %}{{ p.portrait.replies_total }}", False), ("{{ patient['portrait'] }}", False),
    ("{{ patient | attr('portrait') }}", False), ("{{ patient }}", False), ("{{ patient.", False)])
def test_sources_that_may_read_the_portrait(source, condition):
    assert source_reads_portrait(source, condition), "unclear uses count as reads"

"""Sharing a small backlog: a second worker gets part of less than a batch, and a worker alone still sends it all."""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

import pytest

from carepath.definition.dsl import after, enroll_on, journey, send, step, template
from carepath.definition.events import PatientIn
from carepath.plugins.contracts import Message, SendResult
from carepath.runtime.dispatch.claim import PEER_SHARE_FLOOR, SHARE_FLOOR, claim_size
from tests.conftest import ON_POSTGRES
from tests.engine import helpers as h

CARE = journey("care", enroll=enroll_on("program.joined"), templates=[template("t", "{{ patient.name }}您好")],
               steps=[step("s", "post_visit", after("enrolled", "0s"), send("t", ["sms"]))])
BACKLOG = 400  # less than a batch (500), more than a backlog claimed whole (2 × SHARE_FLOOR)


def test_claim_size_shares_only_a_backlog_worth_splitting():
    assert claim_size(1000, 500, leave_some=True) == 500, "two batches due: a whole batch"
    assert claim_size(2 * SHARE_FLOOR, 500, leave_some=True) == 2 * SHARE_FLOOR, "a small backlog is claimed whole"
    assert claim_size(401, 500, leave_some=True) == 201, "half of a backlog worth splitting"
    assert claim_size(401, 500, leave_some=False) == 401, "all of it when no one else is claiming"
    assert claim_size(0, 500, leave_some=True) == 0
    assert claim_size(150, 500, leave_some=True, floor=PEER_SHARE_FLOOR) == 75, \
        "a worker that has seen others claim splits a smaller backlog"
    assert claim_size(2 * PEER_SHARE_FLOOR, 500, leave_some=True, floor=PEER_SHARE_FLOOR) == 2 * PEER_SHARE_FLOOR


class HandOver(h.RecordingChannel):
    """On its first message, lets another worker sweep (as a worker woken by the same NOTIFY would)."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.other = None
        self.other_report = None

    def send(self, message: Message) -> SendResult:
        other, self.other = self.other, None
        if other is not None:
            self.other_report = other.dispatch_due()
        return super().send(message)


def _engines(database_url, settings, clock, channel, n_workers):
    engines = [h.make_engine(database_url, settings, clock, [CARE], {"sms": channel}, worker_id=f"w{i}")
               for i in range(n_workers)]
    _backlog(engines[0], BACKLOG)
    return engines


def _backlog(eng, n: int, first: int = 0) -> None:
    ids = eng.upsert_patients([PatientIn(mrn=f"M{i:04d}", name=f"患者{i}", phone=f"139{i:08d}")
                               for i in range(first, first + n)])
    assert eng.enroll_many("care", [(pid, {}) for pid in ids]) == n


@pytest.mark.skipif(not ON_POSTGRES, reason="workers in other processes share claims on PostgreSQL")
def test_a_second_worker_sweeping_at_the_same_moment_gets_part_of_a_small_backlog(database_url, settings, clock):
    with _two_workers(database_url, settings, clock) as (channel, first, second):
        channel.other = second
        report = first.dispatch_due()
        assert channel.other_report.sent >= BACKLOG // 4, "the second worker took part of the backlog"
        assert report.sent >= BACKLOG // 4, "the first kept part of it"
        assert report.sent + channel.other_report.sent == BACKLOG
        assert Counter(channel.keys) == Counter(t.idempotency_key + ":sms" for t in h.touchpoints(first))


@pytest.mark.skipif(not ON_POSTGRES, reason="workers in other processes share claims on PostgreSQL")
def test_workers_that_have_met_share_a_backlog_a_worker_alone_claims_whole(database_url, settings, clock):
    with _two_workers(database_url, settings, clock) as (channel, first, second):
        channel.other = second
        first.dispatch_due()  # they meet on the first backlog
        small = 2 * SHARE_FLOOR - 50  # claimed whole by a worker that never saw another
        _backlog(first, small, first=BACKLOG)
        channel.other = second
        report = first.dispatch_due()
        assert 0 < channel.other_report.sent < small and report.sent + channel.other_report.sent == small, \
            "the second worker took part of a backlog a worker alone would have claimed whole"


@contextmanager
def _two_workers(database_url, settings, clock):
    """``(channel, first, second)``: two workers on one backlog; afterwards, nothing sent twice and all of it sent."""
    channel = HandOver("sms")
    first, second = _engines(database_url, settings, clock, channel, 2)
    try:
        yield channel, first, second
        assert max(Counter(channel.keys).values()) == 1, "nothing sent twice"
        assert {t.status for t in h.touchpoints(first)} == {"sent"}
    finally:
        first.close()
        second.close()


def test_a_worker_alone_sends_a_small_backlog_in_one_sweep(database_url, settings, clock):
    channel = h.RecordingChannel("sms")
    (eng,) = _engines(database_url, settings, clock, channel, 1)
    try:
        report = eng.dispatch_due()
        assert report.sent == BACKLOG, "the half left for others is claimed by the same sweep"
        assert {t.status for t in h.touchpoints(eng)} == {"sent"}
        assert eng.dispatch_due().claimed == 0
    finally:
        eng.close()

"""A batch runs with Python's cyclic garbage collector paused, leaves it as it found it, and leaves no cycles."""

from __future__ import annotations

import gc
from contextlib import contextmanager
from datetime import timedelta

import pytest

from carepath.definition.dsl import enroll_on, journey, on, send, step, template
from carepath.runtime.patients import LoadedPatientView, PatientRecord
from tests.engine import helpers as h


class TextOnly(h.RecordingChannel):
    """Sends the rendered text only: the batch's patients get portraits read on first use."""

    reads_context = False

    def __init__(self, name: str = "sms") -> None:
        super().__init__(name)
        self.collector_on: list[bool] = []

    def send(self, message):
        self.collector_on.append(gc.isenabled())
        return super().send(message)


@contextmanager
def _one_due(database_url, settings, clock):
    """An engine with one message due (its channel sends text only, so no portrait is loaded with the batch)."""
    care = journey("care", enroll=enroll_on("visit.checked_in"), templates=[template("note", "复诊提醒")],
                   steps=[step("note", "in_visit", on("visit.checked_in", "1h"), send("note", ["sms"]))])
    with h.running_engine(database_url, settings, clock, [care], {"sms": TextOnly()}) as eng:
        eng.ingest(h.Events(clock)("visit.checked_in"))
        clock.advance(timedelta(hours=2))
        yield eng


@pytest.mark.parametrize("enabled", [True, False])
def test_a_batch_leaves_the_collector_as_it_found_it(database_url, settings, clock, enabled):
    """A host process that turned the collector off keeps it off; one that has it on gets it back on."""
    with _one_due(database_url, settings, clock) as eng:
        was = gc.isenabled()
        (gc.enable if enabled else gc.disable)()
        try:
            assert eng.dispatch_due().sent == 1
            assert gc.isenabled() is enabled
            assert eng.channels["sms"].collector_on == [False]  # paused while the batch ran
        finally:
            (gc.enable if was else gc.disable)()


def test_a_batch_leaves_its_patients_to_reference_counting(database_url, settings, clock):
    """The batch's loaded patients (with portraits read on first use) are freed without the cycle collector."""
    with _one_due(database_url, settings, clock) as eng:
        gc.collect()
        flags = gc.get_debug()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds unreachable is kept in gc.garbage, to look at
        try:
            assert eng.dispatch_due().sent == 1
            eng.channels["sms"].messages.clear()  # the provider double keeps each message, and so its context
            gc.collect()
            left = [o for o in gc.garbage if isinstance(o, (LoadedPatientView, PatientRecord))]
        finally:
            gc.set_debug(flags)
            gc.garbage.clear()
        assert left == []


def test_batches_that_overlap_for_long_still_let_the_collector_run(monkeypatch):
    """Under serve several threads' batches may overlap without a gap: one ending after the longest pause collects."""
    from carepath.runtime.dispatch import collector

    monkeypatch.setattr(collector, "MAX_PAUSE_S", 0.0)
    was = gc.isenabled()
    gc.enable()
    try:
        before = gc.get_stats()[1]["collections"]
        with collector.collector_paused():  # another thread's batch, still running
            with collector.collector_paused():
                pass  # this batch ends while the other goes on
            assert gc.get_stats()[1]["collections"] > before and not gc.isenabled()
        assert gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()

"""A dispatcher killed (SIGKILL) while the provider holds its call, then restarted: exactly one message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carepath.definition.events import EventIn, PatientIn
from carepath.engine import Engine
from carepath.store.schema import Delivery, Touchpoint

from tests.connectors.sms_helpers import PHONE, PROVIDERS, sms_options
from tests.connectors.sms_worker import urgent_journey

ROOT = Path(__file__).resolve().parents[2]


def _worker(order: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.connectors.sms_worker", json.dumps(order)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# one provider by default (each run starts two worker processes); both with CAREPATH_CRASH_TESTS=all
CRASH_PROVIDERS = sorted(PROVIDERS) if os.environ.get("CAREPATH_CRASH_TESTS") == "all" else ["tencent"]


@pytest.mark.parametrize("name", CRASH_PROVIDERS)
def test_worker_killed_during_the_provider_call_sends_once_after_restart(name: str, database_url: str,
                                                                         settings) -> None:
    provider = PROVIDERS[name]
    with provider.make_emulator(None) as emulator:
        engine = Engine(database_url, journeys=[urgent_journey()], channels={}, templates={}, settings=settings)
        try:
            engine.upsert_patient(PatientIn(mrn="M1", name="张三", phone=PHONE))
            engine.ingest(EventIn(type="encounter.discharged", source="his", source_id="enc-1", patient_mrn="M1",
                                  occurred_at=engine.clock.now(), payload={}), dispatch_urgent=False)
            order = {"database_url": database_url, "home": str(settings.home), "type": provider.type_name,
                     "options": sms_options(provider, emulator, timeout=20)}
            emulator.delay = 60  # the provider takes the message and holds the answer
            first = _worker(order)
            deadline = time.monotonic() + 30
            while not emulator.messages and time.monotonic() < deadline and first.poll() is None:
                time.sleep(0.05)
            assert emulator.messages, f"the worker never reached the provider: {first.communicate()[1][-2000:]}"
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)

            emulator.delay = 0
            time.sleep(1.2)  # the dead worker's lease runs out
            second = _worker(order)
            out, err = second.communicate(timeout=60)
            assert second.returncode == 0, err[-2000:]
            assert json.loads(out.strip().splitlines()[-1]).get("sent") == 1, out

            assert len(emulator.messages) == 1, "the restarted worker sent the message a second time"
            assert emulator.calls["SendSms"] == 1
            with engine.db.connect() as conn:
                status = conn.execute(Touchpoint.__table__.select()).one().status
                sent = [d for d in conn.execute(Delivery.__table__.select()) if d.status == "sent"]
            assert status == "sent" and sent
        finally:
            engine.close()

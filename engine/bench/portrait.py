"""Portrait upkeep: seconds to apply 100,000 mixed events to patients' portraits and segment membership.

This is what ingest adds per event (issue 20: "updating the portrait for 100,000 events takes seconds, not
minutes"); it runs on SQLite, in-process, without Prefect.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta
from pathlib import Path

from carepath.bench.workload import CHUNK, engine, patients

PORTRAIT_EVENTS = 100_000
_PORTRAIT_MIX = (("message.replied", {"text": "好的"}), ("message.replied", {"text": "收到"}),
                 ("message.clicked", {"touchpoint_id": 1, "link": 1}), ("visit.checked_in", {"department": "内科"}),
                 ("survey.completed", {"survey": "nps", "nps": 9, "nps_category": "promoter", "satisfaction": 4.0,
                                       "red_flags": []}),
                 ("report.ready", {"report": "血常规"}), ("appointment.booked", {"start": "2026-06-09T09:00:00+08:00"}))


def portrait_update_seconds(home: Path, events: int = PORTRAIT_EVENTS, patient_count: int = 10_000,
                            per_transaction: int = 1000) -> float:
    """Seconds to apply ``events`` mixed events to the portraits of ``patient_count`` patients (facts, then the
    segment membership of the patients they touched, per transaction), on SQLite."""
    from zoneinfo import ZoneInfo

    from carepath.definition.events import EventIn
    from carepath.runtime.clock import VirtualClock
    from carepath.runtime.portrait import Counted, apply_event, record_facts
    from carepath.runtime.segments import refresh

    clock = VirtualClock(datetime(2026, 6, 1, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai")))
    eng = engine(f"sqlite:///{home / 'portrait.db'}", home, clock)
    ids: list[int] = []
    for i in range(0, patient_count, CHUNK):
        ids += eng.upsert_patients(patients(min(CHUNK, patient_count - i), first=10_000_000 + i))
    rng = random.Random(20)
    t0 = time.perf_counter()
    for start in range(0, events, per_transaction):
        now = clock.now()
        touched: set[int] = set()
        facts = Counted()
        with eng.db.begin() as conn:
            for _ in range(min(per_transaction, events - start)):
                kind, payload = _PORTRAIT_MIX[rng.randrange(len(_PORTRAIT_MIX))]
                pid = ids[rng.randrange(len(ids))]
                ev = EventIn.model_construct(type=kind, source="bench", source_id="", patient_mrn="",
                                             occurred_at=now, payload=payload)
                if apply_event(conn, eng.cipher, pid, ev, now, facts, "Asia/Shanghai"):
                    touched.add(pid)
            record_facts(conn, facts, now)
            refresh(conn, eng, touched, now)
        clock.advance(timedelta(minutes=10))
    seconds = time.perf_counter() - t0
    eng.close()
    return seconds

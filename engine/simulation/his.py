"""A synthetic HIS: zh_CN patients and a month of bookings, check-ins, reports and discharges."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from faker import Faker

from carepath.definition.events import EventIn, PatientIn

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEPARTMENTS = ["内分泌科", "心内科", "消化内科", "呼吸内科", "骨科", "眼科", "儿科", "皮肤科"]
CONDITIONS = ["E11.9", "I10", "J45.9", "K29.7", "M54.5", "H52.1", "E78.5", "N18.3"]
REPORTS = ["血常规", "肝功能", "血糖", "心电图", "胸部CT", "B超"]


@dataclass(frozen=True)
class SyntheticHIS:
    """Deterministic for a seed: the same patients and events every run."""

    patients: list[PatientIn]
    events: list[EventIn]


def _patient(fake: Faker, rng: random.Random, n: int) -> PatientIn:
    sex = rng.choice(["M", "F"])
    name = fake.name_male() if sex == "M" else fake.name_female()
    return PatientIn(
        mrn=f"MRN{100000 + n}", name=name, phone=f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}",
        openid=f"oDEMO{rng.getrandbits(64):016x}" if rng.random() < 0.6 else None,
        birth_date=fake.date_of_birth(minimum_age=2, maximum_age=90), sex=sex,
        conditions=rng.sample(CONDITIONS, k=rng.choice([0, 0, 1, 1, 2])), tz="Asia/Shanghai",
    )


def _slot(rng: random.Random, day: date) -> datetime:
    minutes = rng.randrange(8 * 60, 16 * 60 + 30, 15)
    return datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=SHANGHAI)


def generate(patients: int, days: int, start: date, seed: int = 7) -> SyntheticHIS:
    """Patients plus a time-ordered event stream over ``days`` from ``start``."""
    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    people = [_patient(fake, rng, n) for n in range(patients)]
    events: list[EventIn] = []
    counter = iter(range(1, 10**9))

    def emit(kind: str, mrn: str, at: datetime, **payload) -> None:
        events.append(EventIn(type=kind, source="his-sim", source_id=f"{kind}:{next(counter)}", patient_mrn=mrn,
                              occurred_at=at, payload=payload))

    for person in people:
        if rng.random() < 0.3:
            emit("consent.changed", person.mrn, _slot(rng, start), purpose="marketing", granted=True)
        for visit in range(rng.choice([1, 1, 1, 2])):
            booked_day = start + timedelta(days=rng.randrange(0, max(1, days - 12)))
            booked_at = _slot(rng, booked_day)
            appt = _slot(rng, booked_day + timedelta(days=rng.randrange(1, 8)))
            appt_id = f"A{next(counter)}"
            dept = rng.choice(DEPARTMENTS)
            emit("appointment.booked", person.mrn, booked_at, appointment_id=appt_id, start=appt.isoformat(),
                 department=dept, fasting=rng.random() < 0.3)
            roll = rng.random()
            if roll < 0.05:
                emit("appointment.cancelled", person.mrn, booked_at + timedelta(hours=rng.randrange(2, 20)),
                     appointment_id=appt_id)
                continue
            if roll < 0.15:
                appt = _slot(rng, appt.date() + timedelta(days=rng.randrange(1, 4)))
                emit("appointment.rescheduled", person.mrn, booked_at + timedelta(hours=rng.randrange(2, 20)),
                     appointment_id=appt_id, start=appt.isoformat(), department=dept)
            emit("visit.checked_in", person.mrn, appt - timedelta(minutes=15), appointment_id=appt_id,
                 queue_no=rng.randrange(1, 80))
            if rng.random() < 0.5:
                emit("report.ready", person.mrn, appt + timedelta(hours=rng.randrange(2, 5)), appointment_id=appt_id,
                     report=rng.choice(REPORTS))
            end = appt + timedelta(minutes=rng.randrange(30, 150))
            emit("encounter.discharged", person.mrn, end, appointment_id=appt_id)
            if rng.random() < 0.4:
                emit("message.replied", person.mrn, end + timedelta(days=3, hours=rng.randrange(1, 10)),
                     appointment_id=appt_id, text="好多了，谢谢")
    horizon = datetime.combine(start + timedelta(days=days), time(0), tzinfo=SHANGHAI)
    events = sorted((e for e in events if e.occurred_at < horizon), key=lambda e: e.occurred_at)
    return SyntheticHIS(people, events)

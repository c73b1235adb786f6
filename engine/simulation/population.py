"""The synthetic population of ``carepath simulate``: documented default distributions, overridable by a file.

Defaults (docs/simulation.md explains each; a ``--population FILE`` of YAML or JSON overrides any of them):

- ``ages``: share of patients per age band — 0-17: 12 %, 18-44: 33 %, 45-64: 30 %, 65-79: 18 %, 80-95: 7 %
  (a Chinese city hospital's outpatients, rounded); the age is uniform inside its band.
- ``conditions``: share of patients with each ICD-10 code, drawn independently — I10 hypertension 25 %,
  E11.9 type 2 diabetes 12 %, E78.5 hyperlipidaemia 10 %, K29.7 gastritis 8 %, M54.5 low back pain 7 %,
  J45.9 asthma 5 %, N18.3 chronic kidney disease 3 %.
- ``channels``: WeChat (an openid) 65 %, a mobile phone 97 %.
- ``consent``: marketing consent granted 30 % (a ``consent.changed`` event on the first day).
- ``behaviour``: per message sent, reply 20 % and click 25 %, 1 to 30 hours after it was sent; per survey
  sent, answered 30 %, of which detractors 15 % and red flags 3 %.
- ``visits``: visits per patient 1 (75 %) or 2 (25 %), booked uniformly over the run, 1 to 7 days ahead;
  cancelled 5 %, rescheduled 10 %, a report 50 %, fasting 30 %, a check-in 15 minutes before, 30 to 150
  minutes in the clinic.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from carepath.definition.events import EventIn, PatientIn
from carepath.simulation.his import DEPARTMENTS, REPORTS, SHANGHAI

AGE_BANDS = {"0-17": 0.12, "18-44": 0.33, "45-64": 0.30, "65-79": 0.18, "80-95": 0.07}
CONDITIONS = {"I10": 0.25, "E11.9": 0.12, "E78.5": 0.10, "K29.7": 0.08, "M54.5": 0.07, "J45.9": 0.05,
              "N18.3": 0.03}
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰"

Share = float


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Channels(_Strict):
    wechat: Share = Field(0.65, ge=0, le=1, description="share of patients with a WeChat openid")
    phone: Share = Field(0.97, ge=0, le=1, description="share of patients with a mobile phone")


class Consent(_Strict):
    marketing: Share = Field(0.30, ge=0, le=1, description="share granting marketing consent")


class Behaviour(_Strict):
    reply: Share = Field(0.20, ge=0, le=1, description="chance a patient replies to a message")
    click: Share = Field(0.25, ge=0, le=1, description="chance a patient opens a message's link")
    delay_hours: tuple[int, int] = Field((1, 30), description="reply or click this many hours after the send")
    survey_answer: Share = Field(0.30, ge=0, le=1, description="chance a survey sent is answered")
    detractor: Share = Field(0.15, ge=0, le=1, description="share of answers scoring 0-6")
    red_flag: Share = Field(0.03, ge=0, le=1, description="share of answers reporting a red flag")

    @field_validator("delay_hours")
    @classmethod
    def _ordered(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] < 0 or v[1] < v[0]:
            raise ValueError("must be [low, high] hours with 0 <= low <= high")
        return v


class Visits(_Strict):
    per_patient: dict[int, float] = Field({1: 0.75, 2: 0.25}, description="weights of visits per patient")
    lead_days: tuple[int, int] = Field((1, 7), description="days from booking to the visit")
    cancelled: Share = Field(0.05, ge=0, le=1)
    rescheduled: Share = Field(0.10, ge=0, le=1)
    report: Share = Field(0.50, ge=0, le=1)
    fasting: Share = Field(0.30, ge=0, le=1)

    @field_validator("per_patient")
    @classmethod
    def _weights(cls, v: dict[int, float]) -> dict[int, float]:
        return _weights(v, lambda k: 0 <= k <= 20, "visit counts from 0 to 20")

    @field_validator("lead_days")
    @classmethod
    def _lead(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] < 1 or v[1] < v[0]:
            raise ValueError("must be [low, high] days with 1 <= low <= high")
        return v


def _weights(v: dict, key_ok: Any, keys: str) -> dict:
    for key, weight in v.items():
        if not key_ok(key):
            raise ValueError(f"{key!r}: keys must be {keys}")
        if weight < 0:
            raise ValueError(f"{key!r}: a weight cannot be negative")
    if not v or sum(v.values()) <= 0:
        raise ValueError("needs at least one positive weight")
    return v


def _band(key: str) -> tuple[int, int] | None:
    low, _, high = key.partition("-")
    if not (low.isdigit() and high.isdigit()) or int(low) > int(high) or int(high) > 110:
        return None
    return int(low), int(high)


class Population(_Strict):
    """What the synthetic patients are like; every field has a documented default."""

    ages: dict[str, float] = Field(default_factory=lambda: dict(AGE_BANDS), description="weight per age band")
    conditions: dict[str, Share] = Field(default_factory=lambda: dict(CONDITIONS),
                                         description="share of patients per ICD-10 code")
    channels: Channels = Field(default_factory=Channels)
    consent: Consent = Field(default_factory=Consent)
    behaviour: Behaviour = Field(default_factory=Behaviour)
    visits: Visits = Field(default_factory=Visits)

    @field_validator("ages")
    @classmethod
    def _ages(cls, v: dict[str, float]) -> dict[str, float]:
        return _weights(v, lambda k: _band(k) is not None, "age bands like '65-79' (0 to 110)")

    @field_validator("conditions")
    @classmethod
    def _conditions(cls, v: dict[str, float]) -> dict[str, float]:
        for code, share in v.items():
            if not 0 <= share <= 1:
                raise ValueError(f"{code!r}: a share must be between 0 and 1")
        return v


class PopulationError(ValueError):
    """A population file that cannot be used; the message names the file and the key."""


def load_population(path: Path | None) -> Population:
    """The defaults, overridden by a YAML or JSON file (only the keys it sets)."""
    if path is None:
        return Population()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PopulationError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise PopulationError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                              f"{str(exc).splitlines()[0]}") from None
    if data is None:
        return Population()
    if not isinstance(data, dict):
        raise PopulationError(f"{path}: must be a mapping of {', '.join(Population.model_fields)}")
    try:
        return Population.model_validate(data)
    except ValidationError as exc:
        raise PopulationError("; ".join(f"{path}: {_where(e['loc'])}: {_plain(e)}" for e in exc.errors())) from None


def _where(loc: tuple) -> str:
    return ".".join(str(part) for part in loc if not str(part).startswith("function-")) or "population"


def _plain(error: dict) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    message = error["msg"]
    return message.removeprefix("Value error, ")


@dataclass(frozen=True)
class SyntheticPopulation:
    """Patients and their time-ordered HIS events; the same for the same seed and population."""

    patients: list[PatientIn]
    events: list[EventIn]
    start: datetime


def _pick(rng: random.Random, weights: dict) -> Any:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def _patient(rng: random.Random, pop: Population, n: int, start: date) -> PatientIn:
    low, high = _band(_pick(rng, pop.ages)) or (18, 44)
    age = rng.randint(low, high)
    birth = start - timedelta(days=age * 365 + rng.randrange(365))
    sex = rng.choice("MF")
    return PatientIn(mrn=f"SIM{100000 + n}", name=rng.choice(SURNAMES) + "".join(rng.choices(GIVEN, k=2)),
                     phone=f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}" if rng.random() < pop.channels.phone
                     else None,
                     openid=f"oSIM{rng.getrandbits(64):016x}" if rng.random() < pop.channels.wechat else None,
                     birth_date=birth, sex=sex,
                     conditions=[code for code, share in pop.conditions.items() if rng.random() < share],
                     tz="Asia/Shanghai")


def _slot(rng: random.Random, day: date) -> datetime:
    minutes = rng.randrange(8 * 60, 16 * 60 + 30, 15)
    return datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=SHANGHAI)


def generate_population(pop: Population, patients: int, days: int, start: date, seed: int) -> SyntheticPopulation:
    """``patients`` people and their bookings, check-ins, reports and discharges over ``days`` from ``start``."""
    rng = random.Random(seed)
    people = [_patient(rng, pop, n, start) for n in range(patients)]
    events: list[EventIn] = []
    v = pop.visits

    def emit(kind: str, mrn: str, at: datetime, **payload: Any) -> None:
        events.append(EventIn(type=kind, source="simulate", source_id=f"{kind}:{len(events) + 1}", patient_mrn=mrn,
                              occurred_at=at, payload=payload))

    for person in people:
        if rng.random() < pop.consent.marketing:
            emit("consent.changed", person.mrn, _slot(rng, start), purpose="marketing", granted=True)
        for _ in range(_pick(rng, v.per_patient)):
            booked_at = _slot(rng, start + timedelta(days=rng.randrange(0, days)))
            appt = _slot(rng, booked_at.date() + timedelta(days=rng.randint(*v.lead_days)))
            appt_id = f"A{len(events) + 1}"
            dept = rng.choice(DEPARTMENTS)
            emit("appointment.booked", person.mrn, booked_at, appointment_id=appt_id, start=appt.isoformat(),
                 department=dept, fasting=rng.random() < v.fasting)
            roll = rng.random()
            if roll < v.cancelled:
                emit("appointment.cancelled", person.mrn, booked_at + timedelta(hours=rng.randrange(2, 20)),
                     appointment_id=appt_id)
                continue
            if roll < v.cancelled + v.rescheduled:
                appt = _slot(rng, appt.date() + timedelta(days=rng.randrange(1, 4)))
                emit("appointment.rescheduled", person.mrn, booked_at + timedelta(hours=rng.randrange(2, 20)),
                     appointment_id=appt_id, start=appt.isoformat(), department=dept)
            emit("visit.checked_in", person.mrn, appt - timedelta(minutes=15), appointment_id=appt_id,
                 queue_no=rng.randrange(1, 80))
            if rng.random() < v.report:
                emit("report.ready", person.mrn, appt + timedelta(hours=rng.randrange(2, 5)), appointment_id=appt_id,
                     report=rng.choice(REPORTS), report_id=f"R{len(events) + 1}")
            emit("encounter.discharged", person.mrn, appt + timedelta(minutes=rng.randrange(30, 150)),
                 appointment_id=appt_id)
    begin = datetime.combine(start, time(0), tzinfo=SHANGHAI)
    horizon = begin + timedelta(days=days)
    ordered = sorted((e for e in events if e.occurred_at < horizon), key=lambda e: (e.occurred_at, e.source_id))
    return SyntheticPopulation(people, ordered, begin)

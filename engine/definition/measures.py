"""What can be measured at home: each measure's unit, the units it is also given in, and its possible range.

Used by check-ins (a reply such as ``6.1`` or ``110 mg/dL``), by readings (``vitals.reading`` from a device,
FHIR or HL7) and by journey validation (a ``reading`` threshold names a measure and its unit). A value outside
the possible range is not a reading but an error of the device or the typing: it is stored rejected, with the
reason, and never counts toward an alert.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Measure:
    """One measure: its canonical ``unit``, other units with their factor to it, the possible range (in ``unit``)."""

    name: str
    unit: str
    low: float
    high: float
    label: str
    other_units: dict[str, float] = field(default_factory=dict)
    #: words a patient writes before the number (``血糖 6.1``)
    words: tuple[str, ...] = ()

    def units(self) -> list[str]:
        return [self.unit, *self.other_units]


MEASURES: dict[str, Measure] = {m.name: m for m in (
    Measure("glucose", "mmol/L", 1.0, 35.0, "血糖", {"mg/dL": 1 / 18.0}, ("血糖", "glucose", "bg")),
    Measure("systolic_bp", "mmHg", 50, 260, "收缩压", {"mm[Hg]": 1.0, "kPa": 7.50062}, ("收缩压", "高压")),
    Measure("diastolic_bp", "mmHg", 30, 160, "舒张压", {"mm[Hg]": 1.0, "kPa": 7.50062}, ("舒张压", "低压")),
    Measure("heart_rate", "bpm", 25, 250, "心率", {"/min": 1.0, "次/分": 1.0, "beats/minute": 1.0}, ("心率", "脉搏")),
    Measure("weight", "kg", 2, 350, "体重", {"斤": 0.5, "lb": 0.45359237}, ("体重",)),
    Measure("temperature", "°C", 30, 45, "体温", {"℃": 1.0, "Cel": 1.0}, ("体温",)),
    Measure("spo2", "%", 50, 100, "血氧", {}, ("血氧", "spo2")),
)}

#: LOINC codes of the measures (FHIR Observation.code, HL7 OBX-3)
LOINC: dict[str, str] = {"2339-0": "glucose", "15074-8": "glucose", "8480-6": "systolic_bp",
                         "8462-4": "diastolic_bp", "8867-4": "heart_rate", "29463-7": "weight",
                         "8310-5": "temperature", "59408-5": "spo2", "2708-6": "spo2"}

#: a blood-pressure check-in or device reading carries both numbers
BLOOD_PRESSURE = "blood_pressure"


def _norm_unit(unit: str) -> str:
    return unit.strip().replace(" ", "").lower()


def unit_factor(measure: str, unit: str | None) -> float | None:
    """The factor from ``unit`` to the measure's own unit (1 for no unit); ``None``: not a unit of it."""
    m = MEASURES.get(measure)
    if m is None:
        return None
    if unit in (None, ""):
        return 1.0
    return {_norm_unit(u): f for u, f in {m.unit: 1.0, **m.other_units}.items()}.get(_norm_unit(unit))


def canonical(measure: str, value: float, unit: str | None) -> tuple[float | None, str | None]:
    """``(value in the measure's unit, None)``, or ``(None, reason)`` for an unknown measure or unit, or a
    value outside the possible range. No unit means the measure's own unit."""
    m = MEASURES.get(measure)
    if m is None:
        return None, f"unknown measure {measure!r} (known: {', '.join(MEASURES)})"
    factor = unit_factor(measure, unit)
    if factor is None:
        return None, f"unit {unit!r} is not a unit of {measure} (use {', '.join(m.units())})"
    if value != value or value in (float("inf"), float("-inf")):
        return None, f"{measure} value is not a number"
    converted = round(value * factor, 2)
    if not m.low <= converted <= m.high:
        # the value itself stays out of the reason (it is kept encrypted beside it)
        return None, f"{measure} value outside the possible range {m.low:g}–{m.high:g} {m.unit}"
    return converted, None


_NUMBER = re.compile(r"^(?P<word>[^\d\s./-]*)\s*[:：]?\s*(?P<a>\d{1,4}(?:\.\d{1,3})?)"
                     r"(?:\s*/\s*(?P<b>\d{1,4}(?:\.\d{1,3})?))?\s*(?P<unit>[^\d\s]{0,8})\s*$")


@dataclass(frozen=True)
class ParsedNumber:
    """A number a patient wrote, with the word before it and the unit after it (either may be empty);
    ``second`` is the lower number of ``150/95``."""

    value: float
    second: float | None
    word: str
    unit: str


def parse_number(text: str) -> ParsedNumber | None:
    """``6.1``, ``血糖 6.1``, ``110 mg/dL``, ``150/95 mmHg`` → their parts; anything else → ``None``."""
    found = _NUMBER.match(text.strip().rstrip("。.!！ "))
    if found is None:
        return None
    second = found.group("b")
    return ParsedNumber(float(found.group("a")), float(second) if second else None, found.group("word").strip(),
                        found.group("unit").strip())


def word_measure(word: str) -> str | None:
    """The measure a word names (``血糖`` → ``glucose``), or ``None``."""
    w = word.strip().lower()
    if not w:
        return None
    return next((m.name for m in MEASURES.values() if w in {x.lower() for x in m.words} or w == m.name), None)

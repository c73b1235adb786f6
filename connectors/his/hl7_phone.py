"""A patient's phone from PID-13 / PID-14: the XTN data type as HL7 v2.5 defines it.

XTN components: 1 telephone number (deprecated, but what many systems fill),
2 telecommunication use code (table 0201: ``PRN`` primary residence, ``ORN``
other residence, ``WPN`` work, ``NET`` network address, ...), 3 equipment type
(table 0202: ``PH`` telephone, ``CP`` cellular phone, ``FX`` fax, ``Internet``
...), 4 e-mail address, 5 country code, 6 area or city code, 7 local number,
8 extension, 12 unformatted telephone number. Chinese HIS systems often send
``^PRN^CP^^86^13812345678`` (the mobile number after the country code, in the
area component) or ``^PRN^PH^^86^010^62345678``; others put the whole number
in component 1.

The number chosen is the first mobile (equipment ``CP``, or a mainland mobile
number whatever its equipment code) among PID-13's repetitions, then
PID-14's; else the first telephone number. E-mail addresses, fax, modem and
beeper entries are never a phone. Mainland numbers are given in national form
(``13812345678``, ``01062345678``), others as ``+<country code><number>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import hl7

NOT_A_PHONE_EQUIPMENT = frozenset({"FX", "MD", "BP", "INTERNET", "X.400"})
NOT_A_PHONE_USE = frozenset({"NET"})
MAINLAND = "86"
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True)
class Telecom:
    """One XTN repetition read as a phone number."""

    use: str
    equipment: str
    number: str  # national form for mainland numbers, else +<country><number>

    @property
    def mobile(self) -> bool:
        return self.equipment == "CP" or bool(_MOBILE.match(self.number))


def repetitions(segment: hl7.Segment, field: int) -> list[list[str]]:
    """The components (as text, 1-based index ``i`` at ``[i - 1]``) of each repetition of ``segment``'s field."""
    try:
        value = segment[field]
    except IndexError:
        return []
    if not value:
        return []
    if isinstance(value[0], hl7.Repetition):
        return [[str(c).strip() for c in rep] for rep in value]
    return [[str(value).strip()]]


def _digits(text: str) -> str:
    return "".join(_DIGITS.findall(text))


def _normalized(country: str, number: str) -> str:
    """National form for mainland numbers (the country code, a ``+86``/``0086``/``86`` prefix removed)."""
    country = _digits(country).lstrip("0")
    plus = number.strip().startswith("+")
    digits = _digits(number)
    if not country:
        if digits.startswith("0086"):
            country, digits = MAINLAND, digits[4:]
        elif (plus and digits.startswith(MAINLAND)) or (digits.startswith(MAINLAND) and len(digits) == 13):
            country, digits = MAINLAND, digits[2:]
        elif plus:
            return "+" + digits
    if not country or country == MAINLAND:
        return digits
    return f"+{country}{digits}"


def telecom(components: list[str]) -> Telecom | None:
    """One XTN repetition as a phone, or None (an e-mail address, a fax, an empty entry)."""
    part = (components + [""] * 12)[:12]
    use, equipment = part[1].upper(), part[2].upper()
    if use in NOT_A_PHONE_USE or equipment in NOT_A_PHONE_EQUIPMENT:
        return None
    if _digits(part[11]):
        number = _normalized(part[4], part[11])
    elif _digits(part[5] + part[6]):
        number = _normalized(part[4], part[5] + part[6])
    else:
        number = _normalized(part[4], part[0])
    if len(_digits(number)) < 5:  # not a number someone can be called on
        return None
    return Telecom(use, equipment, number)


def patient_phone(pid: hl7.Segment) -> str:
    """The phone to reach the patient on: the first mobile of PID-13, then PID-14; else the first number."""
    found = [t for field in (13, 14) for comps in repetitions(pid, field) if (t := telecom(comps)) is not None]
    mobile = next((t for t in found if t.mobile), None)
    chosen = mobile or (found[0] if found else None)
    return chosen.number if chosen is not None else ""

"""ICD-10 code lists: chronic diseases (the clinical dimension) and sensitive categories (PIPL).

A list is written as prefixes and ranges: ``"E11"`` (E11 and every E11.x),
``"B20-B24"`` (B20, B21, ... B24 and their subcodes), ``"F"`` (chapter V, mental
health). Sensitive diagnoses are usable in segments only with the patient's
``sensitive`` consent and are never shown below the minimum group size
(docs/segments.md); a hospital replaces the list with ``[segments]
sensitive_codes`` in carepath.toml.
"""

from __future__ import annotations

import functools
import re
from typing import Iterable

#: diabetes, hypertension, ischaemic heart disease, heart failure, cerebrovascular disease, COPD and
#: asthma, chronic kidney disease, chronic liver disease, rheumatoid arthritis, osteoporosis, cancers
CHRONIC_CODES = ("E10-E14", "I10-I15", "I20-I25", "I50", "I60-I69", "J44-J45", "N18", "K70-K74", "M05-M06",
                 "M80-M81", "C00-C97")
#: mental and behavioural disorders (F), HIV (B20-B24, Z21), other sexually transmitted and notifiable
#: infections (A50-A64 syphilis and STIs, B15-B19 viral hepatitis, A15-A19 tuberculosis), reproductive health
#: (O00-O08 abortive outcomes, N96-N98 infertility, Z30-Z31 contraception and procreation, Z32-Z36 pregnancy)
SENSITIVE_CODES = ("F", "B20-B24", "Z21", "A50-A64", "B15-B19", "A15-A19", "O00-O08", "N96-N98", "Z30-Z36")

_RANGE = re.compile(r"^([A-Z])(\d{1,2})-([A-Z])(\d{1,2})$")
_PREFIX = re.compile(r"^[A-Z](\d{1,2}(\.\d{0,4})?)?$")


def check_code_list(items: Iterable[str]) -> list[str]:
    """Problems of a code list (each naming the item); empty when every item is a prefix or a range."""
    problems = []
    for item in items:
        text = str(item).strip().upper()
        m = _RANGE.match(text)
        if m and (m[1] != m[3] or int(m[2]) > int(m[4])):
            problems.append(f"{item!r}: a range stays in one letter and goes up (e.g. B20-B24)")
        elif not m and not _PREFIX.match(text):
            problems.append(f"{item!r} is not an ICD-10 prefix (E11, F, E11.9) or range (B20-B24)")
    return problems


@functools.lru_cache(maxsize=64)
def matcher(items: tuple[str, ...]):
    """A function ``code -> bool`` for a code list (normalised: upper case, dot optional)."""
    prefixes, ranges = [], []
    for item in items:
        text = item.strip().upper()
        m = _RANGE.match(text)
        if m:
            ranges.append((m[1], int(m[2]), int(m[4])))
        else:
            prefixes.append(text.replace(".", ""))

    @functools.lru_cache(maxsize=4096)
    def matches(code: str) -> bool:
        c = str(code).strip().upper().replace(".", "")
        if any(c.startswith(p) for p in prefixes):
            return True
        digits = c[1:3]
        return bool(c) and digits.isdigit() and any(c[0] == letter and lo <= int(digits) <= hi
                                                    for letter, lo, hi in ranges)

    return matches


def is_chronic(code: str) -> bool:
    return matcher(CHRONIC_CODES)(code)

"""Validation of who a step sends to (issue 19, family and guardians): ``send.to``.

``to`` itself is one of ``patient``, ``guardian``, ``family`` or ``patient+family`` (the model refuses
anything else, naming the field). What needs the whole journey is checked here: ``to: guardian`` in
a journey that only adults can enter (its enroll condition requires ``patient.age`` of at least
the age of majority), where no guardian can exist: a minor's guardian is a parent or one appointed
for the child, and the messages would all be skipped.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from carepath.definition.model import Journey, Send

if TYPE_CHECKING:
    from carepath.definition.validation import Reporter

#: the age of majority the validator assumes (PRC Civil Code art. 17); the runtime's is ``CAREPATH_MINOR_AGE``
ADULT_AGE = 18
_AT_LEAST = re.compile(r"\bpatient\.age\s*(>=|>)\s*(\d+)\b")


def adults_only(journey: Journey) -> str | None:
    """The enroll condition's clause that admits adults only (``patient.age >= 18``), if it has one that
    holds whatever else the condition says (no ``or`` beside it)."""
    condition = journey.enroll.condition or ""
    if re.search(r"\bor\b|\bnot\b", condition):
        return None
    for match in _AT_LEAST.finditer(condition):
        op, years = match.group(1), int(match.group(2))
        if years + (op == ">") >= ADULT_AGE:
            return match.group(0)
    return None


def check_recipients(journey: Journey, report: "Reporter") -> None:
    """``to: guardian`` where no guardian can exist (see the module docstring)."""
    adult = None
    for index, step in enumerate(journey.steps):
        if not isinstance(step.action, Send) or step.action.to != "guardian":
            continue
        adult = adult if adult is not None else (adults_only(journey) or "")
        if adult:
            report.add(f"to: guardian in a journey only adults enter (enroll condition '{adult}'): an adult has no "
                       "guardian to send to, so every message would be skipped; write to: family (or "
                       "patient+family) to reach the family", f"steps[{index}].send.to", step.id)

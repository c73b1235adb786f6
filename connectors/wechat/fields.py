"""WeChat's rules for template data values, applied before a message is sent.

A field's kind is its name without the trailing number (``thing1`` -> ``thing``).
``thing`` values longer than 20 characters are shortened with an ellipsis (the
platform would refuse them with 47003); values that cannot be made to fit their
kind (a ``number`` that is not a number) raise :class:`FieldRuleError`, naming
the field. Datetimes and ISO strings given to ``time`` and ``date`` fields are
written the way WeChat shows them (``2026年5月2日 08:30``), in the patient's
time zone when they carry an offset. Kinds WeChat does not
document (``first``, ``keyword1`` of classic templates) pass unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

ELLIPSIS = "…"


class FieldRuleError(ValueError):
    """A template data value breaks its field's rule; the message names the field."""


@dataclass(frozen=True)
class Rule:
    max_chars: int | None = None
    pattern: str | None = None
    describe: str = ""
    shorten: bool = False


_TIME = r"(\d{4}年\d{1,2}月\d{1,2}日 ?)?([01]?\d|2[0-3]):[0-5]\d(:[0-5]\d)?|\d{4}-\d{2}-\d{2} ([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?"
_DATE = r"\d{4}年\d{1,2}月\d{1,2}日( ?([01]?\d|2[0-3]):[0-5]\d)?|\d{4}-\d{2}-\d{2}( ([01]\d|2[0-3]):[0-5]\d)?"

RULES: dict[str, Rule] = {
    "thing": Rule(20, None, "at most 20 characters", shorten=True),
    "number": Rule(32, r"[+-]?\d+(\.\d+)?", "a number of at most 32 digits (decimals allowed)"),
    "letter": Rule(32, r"[A-Za-z]+", "at most 32 letters"),
    "symbol": Rule(5, r"[^\w\s]+", "at most 5 symbols"),
    "character_string": Rule(32, r"[\x21-\x7e]+", "at most 32 letters, digits and symbols"),
    "time": Rule(None, _TIME, "a 24-hour time such as 15:01 or 2026年5月1日 15:01"),
    "date": Rule(None, _DATE, "a date such as 2026年5月1日 (optionally with a 24-hour time)"),
    "amount": Rule(None, r"[¥$€£]?\d{1,10}(\.\d{1,2})?元?", "a currency sign and at most 10 digits, optionally 元"),
    "phone_number": Rule(17, r"[\d+\-() ]+", "at most 17 digits and symbols"),
    "car_number": Rule(8, None, "at most 8 characters"),
    "name": Rule(20, None, "at most 10 Chinese characters or 20 letters"),
    "phrase": Rule(5, r"[\u4e00-\u9fff]+", "at most 5 Chinese characters"),
}


def field_kind(key: str) -> str:
    """``thing12`` -> ``thing``."""
    return key.rstrip("0123456789")


def _as_local(value: object, tz: str, fmt: str) -> str | None:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(ZoneInfo(tz))
    return moment.strftime(fmt)


def apply_rule(key: str, value: object, tz: str = "Asia/Shanghai") -> str:
    """The value to send for field ``key``, shortened or reformatted as its kind requires."""
    kind = field_kind(key)
    text = str(value).strip()
    if kind in ("time", "date"):
        text = _as_local(value, tz, "%Y年%-m月%-d日 %H:%M" if kind == "time" else "%Y年%-m月%-d日") or text
    rule = RULES.get(kind)
    if rule is None:
        return text
    if not text:
        raise FieldRuleError(f"data.{key} is empty ({kind}: {rule.describe})")
    if kind == "name" and re.search(r"[\u4e00-\u9fff]", text) and len(text) > 10:
        raise FieldRuleError(f"data.{key} has {len(text)} characters ({kind}: {rule.describe})")
    if rule.max_chars is not None and len(text) > rule.max_chars:
        if not rule.shorten:
            raise FieldRuleError(f"data.{key} has {len(text)} characters ({kind}: {rule.describe})")
        text = text[:rule.max_chars - 1] + ELLIPSIS
    if rule.pattern is not None and not re.fullmatch(rule.pattern, text):
        raise FieldRuleError(f"data.{key} is not {rule.describe}")
    return text

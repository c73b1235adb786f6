"""What the engine takes in: normalized events and patient records, and the checks that guard the door.

An event that cannot be stored the same way on SQLite and PostgreSQL, or that
would hurt the engine (a payload nested thousands deep, NaN, a NUL byte, a lone surrogate, a date
in year 1), is refused with :class:`EventRejected` naming the field, before
anything is stored. :func:`parse_event` turns raw input into a checked event;
``Engine.ingest`` checks again with the installation's limits.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from collections.abc import Mapping as AbcMapping
from decimal import Decimal
from typing import Annotated, Any, Callable, Literal, Mapping

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

# Column widths of the events table (carepath.store.schema.Event): longer values fail on PostgreSQL only.
TYPE_MAX, SOURCE_MAX, SOURCE_ID_MAX, MRN_MAX = 64, 64, 255, 128
EARLIEST, LATEST = date(1900, 1, 1), date(2199, 12, 31)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?$")


def check_zone(name: str) -> str:
    """``name`` when it is an IANA time zone (``Asia/Shanghai``), else a ValueError saying so."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None
    return name


class EventRejected(ValueError):
    """An event refused at the door; nothing of it was stored.

    ``field`` is the path of the offending value (``source_id``, ``payload.visit.items[2]``),
    ``reason`` what is wrong with it.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}")

    @classmethod
    def from_validation_error(cls, exc: ValidationError) -> "EventRejected":
        """The first problem pydantic found, as a refusal naming its field (never echoing the value)."""
        error = exc.errors(include_input=False, include_url=False)[0]
        return cls(_path(error["loc"]) or "event", str(error["msg"]).removeprefix("Value error, "))


@dataclass(frozen=True)
class EventLimits:
    """How much an event may carry (``CAREPATH_EVENT_*`` settings)."""

    max_depth: int = 32
    max_payload_bytes: int = 256 * 1024
    earliest: date = EARLIEST
    latest: date = LATEST


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored alike on SQLite and PostgreSQL (a NUL, a lone surrogate), else None."""
    if "\x00" in value:
        return "contains a NUL character"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (f"contains a lone surrogate (U+{ord(value[exc.start]):04X} at character {exc.start + 1}), "
                    "which is not text UTF-8 can store")
    return None


def printable(text: str) -> str:
    """``text`` with lone surrogates spelt as ``\\udXXX`` escapes, so that a message naming it can be encoded."""
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _storable(value: str) -> str:
    if problem := text_problem(value):
        raise ValueError(problem)
    return value


Text = Annotated[str, AfterValidator(_storable)]


def _in_range(value: datetime | date, earliest: date = EARLIEST, latest: date = LATEST) -> None:
    day = value.date() if isinstance(value, datetime) else value
    if not earliest <= day <= latest:
        raise ValueError(f"date {day.isoformat()} is outside {earliest.isoformat()} .. {latest.isoformat()}")


def _aware(v: datetime) -> datetime:
    if v.tzinfo is None:
        raise ValueError("must carry a time zone offset (e.g. 2026-05-01T09:00:00+08:00)")
    _in_range(v)
    return v.astimezone(timezone.utc)


class EventIn(BaseModel):
    """A normalized fact from the HIS, a channel callback, a survey or a device.

    ``source`` + ``source_id`` is the dedup key: the same pair is stored once.
    """

    model_config = ConfigDict(extra="forbid")

    type: Text = Field(pattern=r"^[a-z_]+(\.[a-z_]+)+$", max_length=TYPE_MAX)
    source: Text = Field(min_length=1, max_length=SOURCE_MAX)
    source_id: Text = Field(min_length=1, max_length=SOURCE_ID_MAX)
    patient_mrn: Text = Field(max_length=MRN_MAX)
    occurred_at: datetime
    payload: dict[str, Any] = {}
    _stored: dict[str, Any] | None = PrivateAttr(default=None)

    _aware = field_validator("occurred_at")(classmethod(lambda cls, v: _aware(v)))

    def stored_payload(self) -> dict[str, Any]:
        """The payload as kept in the events table and enrollment context.

        A patient record is stored (encrypted) on the patient, never beside the event;
        ``Engine.ingest`` also encrypts the configured personal-data paths.
        """
        if self._stored is not None:
            return self._stored
        return {k: v for k, v in self.payload.items() if k != "patient"}

    def with_stored_payload(self, stored: dict[str, Any]) -> "EventIn":
        """A copy that stores ``stored`` instead of its plain payload."""
        copy = self.model_copy()
        copy._stored = stored
        return copy


class PatientIn(BaseModel):
    """A patient record as the HIS gives it; contacts are encrypted when stored."""

    model_config = ConfigDict(extra="forbid")

    mrn: Text = Field(min_length=1, max_length=MRN_MAX)
    name: Text | None = Field(default=None, max_length=200)
    phone: Text | None = Field(default=None, max_length=32)
    openid: Text | None = Field(default=None, max_length=128)
    birth_date: date | None = None
    sex: Text | None = Field(default=None, max_length=8)
    conditions: list[Annotated[Text, Field(max_length=64)]] = []
    tags: list[Annotated[Text, Field(max_length=64)]] = []
    tz: str = Field(default="Asia/Shanghai", max_length=64)
    language: Text = Field(default="zh_CN", max_length=16)
    channel_prefs: list[Annotated[Text, Field(max_length=64)]] = []
    #: issue 19: ``lunar`` when the patient keeps their birthday on the lunar calendar (birth_date stays Gregorian)
    birthday_calendar: Literal["gregorian", "lunar"] | None = None
    #: issue 19: times of day the patient chose (``{"medication_time": "20:30"}``); merged into the stored ones
    preferences: dict[Annotated[str, Field(max_length=48)], str | None] | None = Field(default=None, max_length=32)

    @field_validator("birth_date")
    @classmethod
    def _born(cls, v: date | None) -> date | None:
        if v is not None:
            _in_range(v)
        return v

    _zone = field_validator("tz")(lambda v: check_zone(v))


def parse_event(data: Mapping[str, Any] | str | bytes, limits: EventLimits = EventLimits()) -> EventIn:
    """An event from a JSON document or a mapping, checked: raises :class:`EventRejected`."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data, parse_constant=_refuse_constant)
        except RecursionError:
            raise EventRejected("payload", f"nested deeper than {limits.max_depth} levels") from None
        except ValueError as exc:
            raise EventRejected("event", f"not a JSON document: {exc}") from None
        if not isinstance(data, dict):
            raise EventRejected("event", "must be a JSON object")
    try:
        event = EventIn.model_validate(data)
    except ValidationError as exc:
        raise EventRejected.from_validation_error(exc) from None
    return check_event(event, limits)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def check_event(event: EventIn, limits: EventLimits = EventLimits()) -> EventIn:
    """The event with a JSON-safe payload (dates as ISO text), or :class:`EventRejected`.

    Checked: identifier lengths, NUL characters and lone surrogates, ``occurred_at`` and dates in the
    payload within ``limits.earliest .. limits.latest``, nesting depth, NaN and
    Infinity, payload size, values that are not JSON data, and a patient record
    carrying its own ``mrn`` (the event's ``patient_mrn`` names the patient).
    """
    for name, width in (("type", TYPE_MAX), ("source", SOURCE_MAX), ("source_id", SOURCE_ID_MAX),
                        ("patient_mrn", MRN_MAX)):
        value = getattr(event, name)
        if not isinstance(value, str) or not value:
            raise EventRejected(name, "required text")
        if len(value) > width:
            raise EventRejected(name, f"{len(value)} characters, at most {width} allowed")
        if problem := text_problem(value):
            raise EventRejected(name, problem)
    try:
        _in_range(event.occurred_at, limits.earliest, limits.latest)
    except ValueError as exc:
        raise EventRejected("occurred_at", str(exc)) from None
    _check_depth(event.payload, limits.max_depth)
    payload = _Normalizer(limits).value(event.payload, "payload")
    record = payload.get("patient")
    if isinstance(record, dict) and "mrn" in record:
        raise EventRejected("payload.patient.mrn", "not allowed: the event's patient_mrn names the patient")
    size = len(json.dumps(payload, ensure_ascii=False).encode())
    if size > limits.max_payload_bytes:
        raise EventRejected("payload", f"{size} bytes, over the limit of {limits.max_payload_bytes} "
                                       "(CAREPATH_EVENT_MAX_PAYLOAD_BYTES)")
    return event.model_copy(update={"payload": payload})


def _check_depth(payload: Any, max_depth: int) -> None:
    """Iterative, so that a hostile depth cannot exhaust the interpreter's stack."""
    stack: list[tuple[Any, int, str]] = [(payload, 1, "payload")]
    while stack:
        value, depth, path = stack.pop()
        if depth > max_depth:
            raise EventRejected(path, f"nested deeper than {max_depth} levels (CAREPATH_EVENT_MAX_DEPTH)")
        if isinstance(value, dict) or (not isinstance(value, (str, int, float, list, tuple))
                                       and isinstance(value, AbcMapping)):
            stack.extend((v, depth + 1, f"{path}.{k}") for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((v, depth + 1, f"{path}[{i}]") for i, v in enumerate(value))


class _Normalizer:
    """JSON-safe copy of a payload (depth already bounded), refusing what cannot be stored alike everywhere."""

    def __init__(self, limits: EventLimits) -> None:
        self.limits = limits
        self._kinds: dict[type, Callable[[Any, str], Any]] = {
            str: self._text, bool: lambda v, _: v, int: self._integer, float: self._number,
            Decimal: lambda v, p: self._number(float(v), p), datetime: self._moment, date: self._moment,
            time: lambda v, p: self._text(v.isoformat(), p), type(None): lambda v, _: v,
        }

    def value(self, value: Any, path: str) -> Any:
        handle = self._kinds.get(type(value))  # the common case, without walking the type's MRO
        if handle is not None:
            return handle(value, path)
        if isinstance(value, AbcMapping):
            out = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise EventRejected(f"{path}.{key}", "keys must be text")
                here = f"{path}.{printable(key)}"
                self._text(key, here)
                out[key] = self.value(item, here)
            return out
        if isinstance(value, (list, tuple)):
            return [self.value(item, f"{path}[{i}]") for i, item in enumerate(value)]
        for kind in type(value).__mro__:
            if kind in self._kinds:
                return self._kinds[kind](value, path)
        raise EventRejected(path, f"{type(value).__name__} is not JSON data (text, number, true/false, list, object)")

    def _text(self, value: str, path: str) -> str:
        if problem := text_problem(value):
            raise EventRejected(path, problem)
        if _ISO_DATE.match(value):
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return value  # date-like but not a date: left to whoever reads it
            self._range(moment, path)
        return value

    def _integer(self, value: int, path: str) -> int:
        if not -2**63 <= value < 2**63:
            raise EventRejected(path, "integer out of the 64-bit range")
        return value

    def _number(self, value: float, path: str) -> float:
        if not math.isfinite(value):
            raise EventRejected(path, f"{value} is not a number JSON allows")
        return value

    def _moment(self, value: date, path: str) -> str:
        self._range(value, path)
        return value.isoformat()

    def _range(self, value: date, path: str) -> None:
        try:
            _in_range(value, self.limits.earliest, self.limits.latest)
        except ValueError as exc:
            raise EventRejected(path, str(exc)) from None


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out

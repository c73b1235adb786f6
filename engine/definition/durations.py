"""Durations as integrators write them: ``90m``, ``2h30m``, ``3d``, ``1w``, ISO 8601 or seconds."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|m|s)")
_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(value: Any) -> Any:
    """Turn ``"2h30m"`` into a timedelta; leave other forms to pydantic."""
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        sign = -1 if text.startswith("-") else 1
        body = text.lstrip("+-")
        if body and _PART.sub("", body) == "" and _PART.search(body):
            # one timedelta per part: a float sum would round away microseconds of long durations
            return sign * sum((timedelta(seconds=float(n) * _UNITS[u]) for n, u in _PART.findall(body)), timedelta())
        if body.isdigit():
            return timedelta(seconds=sign * int(body))
    return value


def format_duration(value: timedelta) -> str:
    """The compact form, used for hashing and export: ``1d2h`` (``1.5s`` below a second); parses back equal."""
    micros = value // timedelta(microseconds=1)
    if micros == 0:
        return "0s"
    sign = "-" if micros < 0 else ""
    seconds, fraction = divmod(abs(micros), 1_000_000)
    out = []
    for unit in ("d", "h", "m"):
        n, seconds = divmod(seconds, _UNITS[unit])
        if n:
            out.append(f"{n}{unit}")
    if seconds or fraction:
        out.append(f"{seconds}.{fraction:06d}".rstrip("0").rstrip(".") + "s")
    return sign + "".join(out)


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]

"""Patient preferences (issue 19): times of day a patient chose, which steps use as ``at``.

``every: {interval: 1d, at: patient.preferences.medication_time}`` reminds each patient at the time they
chose, or at the preference's default until they choose one. The known preferences are the built-in ones
below plus those a hospital declares in ``carepath.toml``::

    [preferences.exercise_time]
    type = "time"
    default = "18:30"
    description = "when the patient prefers an exercise reminder"

A journey naming an unknown preference, and a ``patient.preferences_updated`` event or a patient record
carrying one, are refused with the name and the known ones. Values are ``HH:MM`` in the patient's time zone;
they are stored encrypted on the patient (``patients.preferences_enc``).
"""

from __future__ import annotations

import difflib
import functools
import re
from datetime import time
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


def parse_time(value: Any) -> time:
    """``HH:MM`` (or a ``time``) as a time of day; ValueError naming the value otherwise."""
    if isinstance(value, time):
        return value.replace(second=0, microsecond=0, tzinfo=None)
    if isinstance(value, str):
        match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)(?::00)?", value.strip())
        if match:
            return time(int(match[1]), int(match[2]))
    raise ValueError(f"{value!r} is not a time of day: write HH:MM (e.g. 08:30)")


def format_time(value: time) -> str:
    return value.strftime("%H:%M")


class PreferenceField(BaseModel):
    """One preference a patient may set: its type (a time of day), its default and what it means."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["time"] = "time"
    default: str = Field(description="HH:MM used until the patient chooses")
    description: str = ""

    @field_validator("default")
    @classmethod
    def _time(cls, v: str) -> str:
        return format_time(parse_time(v))


BUILTIN_PREFERENCES: dict[str, PreferenceField] = {
    "medication_time": PreferenceField(default="08:00", description="when the patient takes their medication"),
    "measurement_time": PreferenceField(default="07:30",
                                        description="when the patient measures blood pressure or glucose at home"),
    "checkin_time": PreferenceField(default="20:00", description="when the patient prefers a daily check-in prompt"),
}


@functools.lru_cache(maxsize=1)
def _configured() -> dict[str, PreferenceField]:
    from carepath.config import load_config

    return dict(load_config().preferences)


def known_preferences(extra: Mapping[str, PreferenceField] | None = None) -> dict[str, PreferenceField]:
    """The built-in preferences and those of this installation's carepath.toml (or ``extra``)."""
    if extra is None:
        try:
            extra = _configured()
        except Exception:  # a configuration that fails is reported by `carepath config check`
            extra = {}
    return {**BUILTIN_PREFERENCES, **extra}


def reload_preferences() -> None:
    """Forget the cached configuration (tests, a changed carepath.toml)."""
    _configured.cache_clear()


def unknown_preference(name: str, known: Mapping[str, PreferenceField] | None = None) -> str | None:
    """Why ``name`` is no known preference (with a "did you mean" and the known ones), or None."""
    known = known_preferences() if known is None else known
    if name in known:
        return None
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return (f"unknown preference '{name}'{hint} (known: {', '.join(sorted(known))}; a hospital declares more "
            "under [preferences.<name>] in carepath.toml)")


def check_values(values: Mapping[str, Any], known: Mapping[str, PreferenceField] | None = None) -> list[str]:
    """Problems of preference values (each naming its field); ``None`` clears a preference."""
    known = known_preferences() if known is None else known
    problems = []
    for name, value in values.items():
        if (why := unknown_preference(str(name), known)) is not None:
            problems.append(f"{name}: {why}")
        elif value is not None:
            try:
                parse_time(value)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
    return problems


def chosen_time(name: str, values: Mapping[str, str], known: Mapping[str, PreferenceField] | None = None) -> time:
    """The time of preference ``name``: the patient's value, else the preference's default (08:00 when even
    the preference is unknown, e.g. removed from carepath.toml after a journey was stored)."""
    if name in values:
        return parse_time(values[name])
    field = (known_preferences() if known is None else known).get(name)
    return parse_time(field.default) if field is not None else time(8, 0)

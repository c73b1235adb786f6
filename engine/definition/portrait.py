"""What conditions and templates see as ``patient.portrait``: the patient's clinical and engagement facts.

The facts are kept by :mod:`carepath.runtime.portrait` as events arrive; this module is
the read side: :class:`PortraitView` and the table of its fields (:func:`portrait_fields`,
used by the journey validator and docs/segments.md). Counted kinds (``click``,
``reply``...) are declared in :data:`KINDS`; each gives the fields ``<plural>_30d``,
``<plural>_90d``, ``<plural>_total`` and ``last_<kind>_days``. A module that records
a new kind of fact declares it once with :func:`register_kind`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Mapping, Sequence

WINDOWS = (30, 90)  # days of the windowed counts


@dataclass(frozen=True)
class Kind:
    """A counted kind of fact: ``interaction`` kinds are the patient doing something (they end an idle period)."""

    name: str
    plural: str
    interaction: bool
    meaning: str


KINDS: dict[str, Kind] = {}


def register_kind(name: str, plural: str, *, interaction: bool, meaning: str) -> Kind:
    """Declare a counted kind of fact (its fields appear in ``patient.portrait`` and its docs)."""
    kind = KINDS.setdefault(name, Kind(name, plural, interaction, meaning))
    return kind


for _name, _plural, _interaction, _meaning in (
        ("message", "messages", False, "messages sent to the patient (accepted by a provider)"),
        ("delivered", "delivered", False, "messages a provider confirmed delivered"),
        ("click", "clicks", True, "links clicked in messages (one per link and message)"),
        ("reply", "replies", True, "replies to messages"),
        ("survey", "surveys", True, "surveys answered"),
        ("checkin", "checkins", True, "check-ins (打卡) recorded"),
        ("visit", "visits", True, "outpatient visits (check-ins at the clinic)"),
        ("admission", "admissions", True, "admissions"),
        ("discharge", "discharges", True, "discharges from a stay (not the end of an outpatient visit)"),
        ("report", "reports", False, "lab and imaging reports issued"),
        ("community", "communities_joined", True, "patient communities joined")):
    register_kind(_name, _plural, interaction=_interaction, meaning=_meaning)

#: fields that are not per kind: name -> (type, meaning)
FIXED_FIELDS: dict[str, tuple[str, str]] = {
    "diagnoses": ("list of text", "ICD-10 codes of the patient's diagnoses (sensitive ones only with the patient's "
                                  "`sensitive` consent)"),
    "has_diagnosis": ("function", '`has_diagnosis("E11")`: a diagnosis starting with the code (same rule as '
                                  "`diagnoses`)"),
    "chronic": ("true/false", "a diagnosis in the chronic-disease list (diabetes, hypertension, heart disease, "
                              "COPD, chronic kidney disease...)"),
    "admitted": ("true/false", "the patient is in hospital now (admitted, not yet discharged)"),
    "last_department": ("text", "department of the latest visit or admission (empty when none)"),
    "last_interaction_days": ("integer", "days since the patient last did anything (reply, click, survey, "
                                         "check-in, visit...); none when never"),
    "interactions_30d": ("integer", "interactions in the last 30 days (every interaction kind)"),
    "interactions_90d": ("integer", "interactions in the last 90 days"),
    "programmes": ("list of text", "journeys the patient is enrolled in now"),
    "communities": ("list of text", "patient communities (groups) the patient is a member of"),
    "last_survey": ("text", "name of the last survey answered (empty when none)"),
    "last_nps": ("integer", "0-10 answer of the last survey that asked it; none when never"),
    "last_satisfaction": ("number", "satisfaction score of the last survey that had one; none when never"),
    "segments": ("list of text", "segments the patient is in (use `patient.in_segment(\"name\")`)"),
}


def portrait_fields() -> dict[str, tuple[str, str]]:
    """Every ``patient.portrait.X`` name with its type and meaning (fixed fields, then per kind)."""
    out = dict(FIXED_FIELDS)
    for kind in KINDS.values():
        for days in WINDOWS:
            out[f"{kind.plural}_{days}d"] = ("integer", f"{kind.meaning}, last {days} days")
        out[f"{kind.plural}_total"] = ("integer", f"{kind.meaning}, all time")
        out[f"last_{kind.name}_days"] = ("integer", f"days since the last one ({kind.meaning}); none when never")
    return out


def _kind_field(name: str) -> tuple[str, Any] | None:
    """``clicks_30d`` -> ``("click", 30)``, ``clicks_total`` -> ``("click", "total")``,
    ``last_click_days`` -> ``("click", "last")``; ``None`` for any other name."""
    index = _FIELD_INDEX.get(len(KINDS))
    if index is None:
        index = {}
        for kind in KINDS.values():
            index[f"{kind.plural}_total"] = (kind.name, "total")
            index[f"last_{kind.name}_days"] = (kind.name, "last")
            for days in WINDOWS:
                index[f"{kind.plural}_{days}d"] = (kind.name, days)
        _FIELD_INDEX.clear()
        _FIELD_INDEX[len(KINDS)] = index
    return index.get(name)


_FIELD_INDEX: dict[int, dict[str, tuple[str, Any]]] = {}


@dataclass(frozen=True)
class KindFacts:
    total: int = 0
    last_at: datetime | None = None
    windows: Mapping[int, int] = field(default_factory=dict)


class PortraitView:
    """``patient.portrait``: read-only facts, with counts over the last 30 and 90 patient-local days.

    ``facts`` is the decrypted fact document (diagnoses, visits...), read lazily: a batch that never looks
    at clinical facts never decrypts them. Sensitive diagnoses are left out of ``diagnoses`` unless the
    patient gave the ``sensitive`` consent.
    """

    __slots__ = ("_kinds", "_facts", "_load_facts", "admitted", "programmes", "segments", "today",
                 "_sensitive", "_consented", "last_interaction_at", "_tz", "_record_codes", "_memo")

    def __init__(self, *, kinds: Mapping[str, KindFacts] | None = None, facts: Mapping[str, Any] | None = None,
                 load_facts: Any = None, admitted: bool = False, programmes: tuple[str, ...] = (),
                 segments: tuple[str, ...] = (), today: date | None = None, sensitive: Any = None,
                 consented: bool = False, last_interaction_at: datetime | None = None, tz: Any = None,
                 record_codes: tuple[str, ...] = ()) -> None:
        self._kinds = dict(kinds or {})
        self._facts = dict(facts) if facts is not None else None
        self._load_facts = load_facts
        self.admitted = admitted
        self.programmes = tuple(programmes)
        self.segments = tuple(segments)
        self.today = today or date.today()
        self._sensitive = sensitive  # code -> bool (a sensitive ICD-10 code?)
        self._consented = consented
        self.last_interaction_at = last_interaction_at
        self._tz = tz  # the patient's zone: days are counted in patient-local days
        self._record_codes = tuple(record_codes)  # conditions on the patient record (diagnoses without dates)
        self._memo: dict[str, Any] = {}  # derived fields, computed once per view (segments read them many times)

    def with_record_codes(self, codes: Sequence[str]) -> "PortraitView":
        """This view, given the conditions of the patient record it was read for (diagnoses without dates; the
        portrait loader reads the record and the portrait apart). Returns ``self``."""
        self._record_codes = tuple(codes)
        self._memo.clear()
        return self

    # -- facts -------------------------------------------------------------------
    def _doc(self) -> Mapping[str, Any]:
        if self._facts is None:
            self._facts = dict(self._load_facts() if self._load_facts else {})
        return self._facts

    def all_diagnoses(self) -> tuple[str, ...]:
        """Every diagnosis code, sensitive ones included (for the engine, never for expressions)."""
        dated = tuple(d["code"] for d in self._doc().get("diagnoses", ()))
        return dated + tuple(c for c in self._record_codes if c not in dated)

    @property
    def sensitive_consent(self) -> bool:
        """Whether the patient consented to the processing of sensitive personal information."""
        return self._consented

    def visible(self, code: str) -> bool:
        """Whether a code may be used: not sensitive, or the patient consented to sensitive processing."""
        return self._consented or self._sensitive is None or not self._sensitive(code)

    @property
    def diagnoses(self) -> tuple[str, ...]:
        return tuple(c for c in self.all_diagnoses() if self.visible(c))

    def has_diagnosis(self, code: str) -> bool:
        return any(c.startswith(code) for c in self.diagnoses)

    @property
    def chronic(self) -> bool:
        from carepath.runtime.clinical_codes import is_chronic

        return any(is_chronic(c) for c in self.diagnoses)

    @property
    def last_department(self) -> str:
        return str(self._doc().get("last_department") or "")

    @property
    def communities(self) -> tuple[str, ...]:
        return tuple(self._doc().get("communities", ()))

    @property
    def last_survey(self) -> str:
        return str((self._doc().get("survey") or {}).get("name") or "")

    @property
    def last_nps(self) -> int | None:
        return (self._doc().get("survey") or {}).get("nps")

    @property
    def last_satisfaction(self) -> float | None:
        return (self._doc().get("survey") or {}).get("satisfaction")

    # -- counts ------------------------------------------------------------------
    def count(self, kind: str, days: int | None = None) -> int:
        facts = self._kinds.get(kind)
        if facts is None:
            return 0
        return facts.total if days is None else int(facts.windows.get(days, 0))

    def days_since(self, kind: str) -> int | None:
        facts = self._kinds.get(kind)
        return None if facts is None or facts.last_at is None else self._days(facts.last_at)

    def _days(self, at: datetime) -> int:
        day = at.astimezone(self._tz).date() if self._tz is not None else at.date()
        return max(0, (self.today - day).days)

    @property
    def last_interaction_days(self) -> int | None:
        return None if self.last_interaction_at is None else self._days(self.last_interaction_at)

    def _interactions(self, days: int) -> int:
        key = f"interactions{days}"
        if key not in self._memo:
            self._memo[key] = sum(self.count(k.name, days) for k in KINDS.values() if k.interaction)
        return self._memo[key]

    @property
    def interactions_30d(self) -> int:
        return self._interactions(30)

    @property
    def interactions_90d(self) -> int:
        return self._interactions(90)

    def __getattr__(self, name: str) -> Any:
        found = _kind_field(name)
        if found is None:
            raise AttributeError(f"patient.portrait has no field {name!r}")
        kind, what = found
        if what == "last":
            return self.days_since(kind)
        return self.count(kind, None if what == "total" else what)

    def as_dict(self) -> dict[str, Any]:
        """Every field with its value (functions left out): what ``carepath patients show`` prints."""
        return {name: getattr(self, name) for name, (kind, _) in portrait_fields().items() if kind != "function"}


EMPTY = PortraitView()

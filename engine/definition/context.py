"""What conditions and templates see: ``patient``, ``event``, ``anchors``, ``journey``."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import Any

from carepath.definition.portrait import EMPTY, PortraitView
from carepath.runtime.policy import zone


@dataclass(frozen=True)
class PatientView:
    """The patient as expressions see it (``patient.age``, ``patient.has("E11")``)."""

    id: int
    name: str
    sex: str | None
    birth_date: date | None
    conditions: tuple[str, ...]
    tags: tuple[str, ...]
    tz: str
    language: str
    today: date
    extra: dict[str, Any] = field(default_factory=dict)
    #: clinical and engagement facts (``patient.portrait.clicks_30d``): see docs/segments.md
    portrait: PortraitView = EMPTY

    @property
    def age(self) -> int | None:
        if self.birth_date is None:
            return None
        b, t = self.birth_date, self.today
        return t.year - b.year - ((t.month, t.day) < (b.month, b.day))

    @property
    def surname(self) -> str:
        return self.name[:1]

    def has(self, code: str) -> bool:
        """ICD-10 prefix match: ``has("E11")`` is true for E11.9."""
        return any(c.startswith(code) for c in self.conditions)

    def tagged(self, tag: str) -> bool:
        return tag in self.tags

    def in_segment(self, name: str) -> bool:
        """Whether the patient is in the named segment now (``patient.in_segment("elderly-diabetic")``)."""
        return name in self.portrait.segments


@dataclass(frozen=True)
class RecipientView:
    """Who a message goes to, as templates see it: ``recipient.name``, ``recipient.relationship`` (``self`` for
    the patient, else ``mother``, ``guardian``...), ``recipient.guardian``, ``recipient.is_patient``."""

    name: str
    relationship: str = "self"
    guardian: bool = False

    @property
    def is_patient(self) -> bool:
        return self.relationship == "self"


CONTEXT_NAMES = ("patient", "event", "anchors", "journey", "now", "recipient")


def recipient_fields() -> frozenset[str]:
    """What ``recipient.X`` may name."""
    return frozenset({f.name for f in fields(RecipientView)} | {"is_patient"})


def patient_fields() -> frozenset[str]:
    """What ``patient.X`` may name: fields, properties and methods of :class:`PatientView`."""
    names = {f.name for f in fields(PatientView)} | {n for n in vars(PatientView) if not n.startswith("_")}
    return frozenset(names)


def local_anchors(anchors: dict[str, datetime | None], tz_name: str) -> dict[str, datetime | None]:
    tz = zone(tz_name)
    return {k: (v.astimezone(tz) if v else None) for k, v in anchors.items()}


def expression_context(patient: PatientView, *, event: dict[str, Any] | None = None,
                       anchors: dict[str, datetime | None] | None = None, journey: str = "",
                       now: datetime | None = None, recipient: RecipientView | None = None) -> dict[str, Any]:
    """The variables conditions and templates are evaluated with; times are patient-local; ``recipient``
    defaults to the patient."""
    return {
        "recipient": recipient or RecipientView(patient.name),
        "patient": patient,
        "event": event or {},
        "anchors": local_anchors(anchors or {}, patient.tz),
        "journey": journey,
        "now": now.astimezone(zone(patient.tz)) if now else None,
    }

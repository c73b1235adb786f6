"""What one ``Engine.ingest`` call did (:class:`IngestResult`), and how its outcome reads."""

from __future__ import annotations

from dataclasses import dataclass, field

from carepath.runtime.held import APPLIED, HELD, RESEND, STALE
from carepath.runtime.refused import REFUSED


@dataclass
class IngestResult:
    """What one ``Engine.ingest`` call did; ``duplicate`` events change nothing.

    ``state`` is what the stored event became: applied, resend (it repeated a
    fact already acted on), stale (older than what it would change), held
    (waiting for its patient or enrollment), refused (its payload does not fit
    its type: stored for operators, nothing applied, see :mod:`carepath.runtime.refused`).
    """

    status: str  # stored | duplicate
    event_id: int | None
    enrolled: list[str] = field(default_factory=list)
    exited: list[str] = field(default_factory=list)
    anchors: list[str] = field(default_factory=list)
    planned: int = 0
    urgent_touchpoints: list[int] = field(default_factory=list)
    due_now: list[str] = field(default_factory=list)  # journeys that planned touchpoints due now (wake-ups)
    notes: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)  # on steps already planned for this business identity
    stale: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # why the event waits
    released: int = 0  # held events applied because of this one
    cancelled_tasks: int = 0
    hold_key: str | None = None  # the episode key a held event waits for (or a refused one was about)
    refused: list[str] = field(default_factory=list)  # why (part of) the event could not be applied
    turns: list[int] = field(default_factory=list)  # issue 21: conversation turns stored, routed after the commit

    @property
    def duplicate(self) -> bool:
        return self.status == "duplicate"

    @property
    def state(self) -> str:
        if self.held:
            return HELD
        acted = self.enrolled or self.exited or self.anchors or self.planned or self.released
        if self.refused and not acted:
            return REFUSED
        if self.stale and not acted:
            return STALE
        if self.resent and not acted:
            return RESEND
        return APPLIED

    def summary(self) -> str:
        if self.duplicate:
            return "duplicate event: already stored, nothing changed"
        parts = [f"enrolled {', '.join(self.enrolled)}" if self.enrolled else "",
                 f"exited {', '.join(self.exited)}" if self.exited else "",
                 f"anchors {', '.join(self.anchors)}" if self.anchors else "",
                 f"{self.planned} touchpoint(s) planned" if self.planned else "",
                 f"{self.cancelled_tasks} open staff task(s) cancelled" if self.cancelled_tasks else "",
                 *(f"resend: {r}" for r in self.resent), *(f"stale: {s}" for s in self.stale),
                 f"{self.released} held event(s) applied" if self.released else "", *self.refused, *self.notes,
                 *(f"held: {h}" for h in self.held)]
        return "; ".join(p for p in parts if p) or "stored; no journey affected"

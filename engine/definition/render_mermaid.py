"""A journey map as a Mermaid flowchart: one subgraph per stage, edges from what starts each step.

Node ids are generated (``s0``, ``a0``, ``e0``), never taken from the journey, so any step id,
anchor or event name is safe; the names appear in the labels, with the characters Mermaid reads
as syntax written as entity codes.
"""

from __future__ import annotations

from carepath.definition.journey_map import JourneyMap, MapStep, Source
from carepath.definition.model import Journey

__all__ = ["mermaid_flowchart", "mermaid_text"]

#: node shapes by action kind; a kind not listed is drawn as a plain box
SHAPES = {"send": ('["', '"]'), "survey": ('[/"', '"/]'), "task": ('[["', '"]]'), "tag": ('(["', '"])')}
_PLAIN = ('["', '"]')
#: colours by action kind, so staff work stands out from messages
CLASSES = {"task": "fill:#fde2e1,stroke:#c0392b", "survey": "fill:#e8f4fd,stroke:#2e86c1",
           "tag": "fill:#eef7e8,stroke:#5b8c3a", "source": "fill:#f5f5f5,stroke:#888"}
_ENTITIES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;", "`": "#96;", "\n": " "}


def mermaid_text(text: str) -> str:
    """``text`` safe inside a quoted Mermaid label."""
    return "".join(_ENTITIES.get(ch, ch) for ch in text)


def _label(*lines: str) -> str:
    return "<br/>".join(mermaid_text(line) for line in lines if line)


class _Ids:
    """Generated node ids: one per step, anchor and event."""

    def __init__(self) -> None:
        self.ids: dict[tuple[str, str], str] = {}

    def get(self, kind: str, name: str) -> str:
        key = (kind, name)
        if key not in self.ids:
            prefix = {"step": "s", "anchor": "a", "event": "e"}.get(kind, "n")
            self.ids[key] = f"{prefix}{sum(1 for k, _ in self.ids if k == kind)}"
        return self.ids[key]


def _step_node(step: MapStep, node_id: str) -> str:
    opening, closing = SHAPES.get(step.action_kind, _PLAIN)
    detail = [f"when {step.condition}" if step.condition else "", step.category, *step.notes]
    return f"{node_id}{opening}{_label(step.id, step.action, ' · '.join(d for d in detail if d))}{closing}"


def _source_id(source: Source, ids: _Ids, step_ids: set[str]) -> str:
    if source.kind == "step" and source.name in step_ids:
        return ids.get("step", source.name)
    if source.kind in ("anchor", "event"):
        return ids.get(source.kind, source.name)
    return "journey"


def mermaid_flowchart(journey: Journey | JourneyMap, *, direction: str = "TD") -> str:
    """The journey as a Mermaid ``flowchart``: enrollment, anchors and events feed the steps, by stage."""
    from carepath.definition.journey_map import journey_map

    jmap = journey if isinstance(journey, JourneyMap) else journey_map(journey)
    ids = _Ids()
    step_ids = {step.id for step in jmap.steps}
    for step in jmap.steps:
        ids.get("step", step.id)
    title = f"{jmap.name} · {jmap.title}" if jmap.title else jmap.name
    enroll = "enroll: " + ", ".join(jmap.enroll)
    lines = [f"flowchart {direction}",
             f'    journey(["{_label(title, enroll, f"when {jmap.enroll_condition}" if jmap.enroll_condition else "")}"])']
    edges: list[str] = []
    sources: list[str] = []
    for step in jmap.steps:
        source = _source_id(step.source, ids, step_ids)
        if step.source.kind in ("anchor", "event") and source not in sources:
            sources.append(source)
        arrow = "-.->" if step.source.kind == "step" else "-->"
        edges.append(f'    {source} {arrow}|"{_label(step.when)}"| {ids.get("step", step.id)}')
    names = {node_id: key for key, node_id in ids.ids.items()}
    for node_id in sources:
        kind, name = names[node_id]
        if kind == "anchor":
            set_by = ", ".join(jmap.anchors.get(name, ()))
            lines.append(f'    {node_id}[/"{_label(f"anchor {name}", f"set by {set_by}" if set_by else "")}"/]')
        else:
            lines.append(f'    {node_id}{{{{"{_label(f"event {name}")}"}}}}')
    for index, (stage, steps) in enumerate(jmap.stages):
        lines.append(f'    subgraph stage{index}["{_label(stage)}"]')
        lines += [f"        {_step_node(step, ids.get('step', step.id))}" for step in steps]
        lines.append("    end")
    lines += edges
    for what, events in (("exit", jmap.exit), ("pause", jmap.pause_on), ("resume", jmap.resume_on)):
        if events:
            lines.append(f'    journey -.-> {what}_on(["{_label(f"{what} on " + ", ".join(events))}"])')
    by_kind: dict[str, list[str]] = {}
    for step in jmap.steps:
        if step.action_kind in CLASSES:
            by_kind.setdefault(step.action_kind, []).append(ids.get("step", step.id))
    if sources:
        by_kind["source"] = sources
    for kind, members in by_kind.items():
        lines.append(f"    classDef {kind} {CLASSES[kind]}")
        lines.append(f"    class {','.join(members)} {kind}")
    return "\n".join(lines) + "\n"

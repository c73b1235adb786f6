"""A journey map for the terminal: a rich tree by stage, follow-up steps under the step they follow."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from rich.tree import Tree

from carepath.definition.journey_map import JourneyMap, MapStep, journey_map
from carepath.definition.model import Journey

__all__ = ["journey_tree"]

#: styles by action kind; a kind not listed is drawn plain
STYLES = {"send": "cyan", "survey": "blue", "task": "bold red", "tag": "green"}


def _step_text(step: MapStep, *, stage_shown: str) -> Text:
    text = Text()
    text.append(step.id, style="bold")
    if step.stage != stage_shown:
        text.append(f" ({step.stage})", style="dim")
    text.append(f"  {step.trigger if step.source.kind != 'step' else step.when}", style="yellow")
    text.append(" → ")
    text.append(step.action, style=STYLES.get(step.action_kind, ""))
    details = [f"when {step.condition}" if step.condition else "", step.category, *step.notes]
    text.append("  [" + " · ".join(d for d in details if d) + "]", style="dim")
    return text


def _header(jmap: JourneyMap) -> Group:
    title = Text(jmap.name, style="bold")
    if jmap.title:
        title.append(f" {jmap.title}")
    title.append(f"  version {jmap.version}", style="dim")
    facts = [("enroll", ", ".join(jmap.enroll) + (f" when {jmap.enroll_condition}" if jmap.enroll_condition else "")),
             ("exit", ", ".join(jmap.exit)), ("pause on", ", ".join(jmap.pause_on)),
             ("resume on", ", ".join(jmap.resume_on)),
             ("anchors", "; ".join(f"{a} (set by {', '.join(by)})" for a, by in jmap.anchors.items()))]
    lines = [Text.assemble((f"{label}: ", "dim"), value) for label, value in facts if value]
    return Group(title, *lines)


def journey_tree(journey: Journey | JourneyMap) -> Tree:
    """The journey as a rich :class:`Tree`: header, then each stage with its steps in file order; a step
    that follows another (``after_step``) hangs under that step."""
    jmap = journey if isinstance(journey, JourneyMap) else journey_map(journey)
    tree = Tree(_header(jmap), guide_style="dim")
    followers: dict[str, list[MapStep]] = {}
    ids = {step.id for step in jmap.steps}
    for step in jmap.steps:
        if step.source.kind == "step" and step.source.name in ids and step.source.name != step.id:
            followers.setdefault(step.source.name, []).append(step)
    placed: set[str] = set()

    def add(branch: Tree, step: MapStep, stage: str) -> None:
        placed.add(step.id)
        node = branch.add(_step_text(step, stage_shown=stage))
        for follower in followers.get(step.id, []):
            if follower.id not in placed:
                add(node, follower, stage)

    for stage, steps in jmap.stages:
        branch = tree.add(Text(stage, style="bold magenta"))
        for step in steps:
            if step.id not in placed and not (step.source.kind == "step" and step.source.name in ids
                                              and step.source.name != step.id):
                add(branch, step, stage)
    leftovers = [step for step in jmap.steps if step.id not in placed]  # a cycle of after_step steps
    for step in leftovers:
        if step.id not in placed:
            add(tree, step, "")
    return tree

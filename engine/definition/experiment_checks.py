"""Issue 23: checks on a step's experiment (variants and a holdout).

Clinical safety first: a holdout withholds a message from a share of patients, so it is refused on
any step that is not ``marketing`` or declared non-clinical education (``education: true`` on a
transactional step). Variants must name templates and channels that exist.
"""

from __future__ import annotations

from datetime import time
from typing import TYPE_CHECKING, Any, Collection

from carepath.definition.model import AnchorOffset, Category, Every, Journey, Send, Step

if TYPE_CHECKING:
    from carepath.definition.validation import Reporter

#: the arm of patients held out (receive nothing); no variant may take the name
HOLDOUT = "holdout"


def check_experiment(journey: Journey, step: Step, prefix: str, known_templates: Collection[str] | None,
                     known_channels: Collection[str] | None, report: "Reporter") -> None:
    """Report what is wrong with ``step.experiment`` (nothing when the step has none)."""
    experiment = step.experiment
    if experiment is None:
        return
    where = f"{prefix}.experiment"
    if not isinstance(step.action, Send):
        report.add("an experiment varies a message: only send, survey and check-in steps can have one", where,
                   step.id)
        return
    if not experiment.variants and not experiment.holdout:
        report.add("an experiment needs variants or a holdout share", where, step.id)
    if experiment.holdout and not holdout_allowed(step):
        report.add(f"a holdout withholds this {step.category.value} message from "
                   f"{experiment.holdout:.0%} of patients: holdouts are only allowed on marketing steps and "
                   "non-clinical education steps (category transactional with education: true)",
                   f"{where}.holdout", step.id)
    names = [v.name for v in experiment.variants]
    for i, variant in enumerate(experiment.variants):
        at = f"{where}.variants[{i}]"
        if variant.name == HOLDOUT:
            report.add("'holdout' names the held-out group: give the variant another name", f"{at}.name", step.id)
        if names.count(variant.name) > 1 and names.index(variant.name) != i:
            report.add(f"duplicate variant name '{variant.name}'", f"{at}.name", step.id)
        if variant.template and known_templates is not None and \
                variant.template not in set(journey.templates) | set(known_templates):
            report.add(f"unknown template '{variant.template}'", f"{at}.template", step.id)
        if variant.at is not None:
            _check_time(step, variant.at, f"{at}.at", report)
        if known_channels is not None:
            for j, channel in enumerate(variant.via or ()):
                if channel not in known_channels:
                    report.add(f"unknown channel '{channel}'", f"{at}.via[{j}]", step.id)


def _check_time(step: Step, at: Any, path: str, report: "Reporter") -> None:
    """A variant's time moves the message later on the day the step plans it: the step needs a fixed time of
    day (``at``) of its own, earlier than the variant's."""
    trigger = step.trigger
    own = trigger.at if isinstance(trigger, (AnchorOffset, Every)) else None
    if not isinstance(own, time):
        report.add("a variant's time needs a step planned at a fixed time of day (after: or every: with at: "
                   "\"HH:MM\"): write the earliest arm's time on the step", path, step.id)
    elif at <= own:
        report.add(f"variant time {at:%H:%M} is not after the step's {own:%H:%M}: write the earliest arm's time on "
                   "the step, the variants send later that day", path, step.id)


def holdout_allowed(step: Step) -> bool:
    """Whether ``step`` may hold patients out: marketing, or non-clinical education (a transactional step
    whose experiment says ``education: true``); never a clinical or urgent message."""
    if step.category is Category.marketing:
        return True
    return bool(step.experiment and step.experiment.education and step.category is Category.transactional)

"""Which claimed touchpoints may read their patient's portrait, told from the journey's sources before deciding.

A batch loads the portraits (``patient.portrait``, ``patient.in_segment``) of the patients whose
touchpoints may read them, and only those: most steps' conditions and templates read a patient's
name, age or conditions and never the portrait, and a touchpoint only deferred or skipped reads
nothing. What a step may read is told from Jinja's own parse of its condition and template, once
per source. The answer errs towards loading: a source that uses ``patient`` other than through a
known plain field (``patient.age``, ``patient.has(...)``), a source that cannot be parsed, a step
under an experiment (its arms' templates differ), a channel that renders ``Message.context`` itself
(a provider template's parameters: :attr:`~carepath.plugins.contracts.Channel.reads_context`) and
any ``before_send`` hook make the portrait load. A portrait not loaded with the batch is still read
on first use (:class:`~carepath.runtime.patients.LoadedPatientView`), so a reader this module did not
foresee gets the same facts, read a moment later.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Iterable

from jinja2 import TemplateSyntaxError, nodes

from carepath.definition.expressions import environment

if TYPE_CHECKING:
    from carepath.engine import Engine

#: ``patient.X`` that never touch the portrait: the record's own fields, properties and methods
PLAIN_PATIENT = frozenset({"id", "name", "sex", "birth_date", "conditions", "tags", "tz", "language", "today",
                           "extra", "age", "surname", "has", "tagged"})
#: template constructs that bring in other sources or hand the context on (never the case in journeys; loads)
_OPAQUE = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends, nodes.ContextReference,
           nodes.DerivedContextReference)


@functools.lru_cache(maxsize=4096)
def source_reads_portrait(source: str | None, condition: bool = False) -> bool:
    """Whether a template (or a condition) may read the patient's portrait; ``True`` when it cannot be told."""
    if not source or ("{" not in source and not condition):
        return False
    try:
        tree = environment().parse("{{ " + source + " }}" if condition else source)
    except TemplateSyntaxError:
        return True
    if any(True for _ in tree.find_all(_OPAQUE)):
        return True
    plain_uses = {id(node.node) for node in tree.find_all(nodes.Getattr)
                  if isinstance(node.node, nodes.Name) and node.node.name == "patient" and node.attr in PLAIN_PATIENT}
    return any(name.name == "patient" and id(name) not in plain_uses for name in tree.find_all(nodes.Name))


def step_reads_portrait(eng: "Engine", journey: Any, step: Any) -> bool:
    """Whether deciding or sending ``step`` of ``journey`` (a version) may read the patient's portrait."""
    if step.experiment is not None or journey.experiment is not None:
        return True
    if source_reads_portrait(step.condition, True):
        return True
    action = step.action
    name = getattr(action, "template", None)
    if name:
        template = journey.templates.get(name) or eng.templates.get(name)
        if template is not None and (source_reads_portrait(template.title) or source_reads_portrait(template.body)):
            return True
    for channel in getattr(action, "via", ()) or ():
        found = eng.channels.get(channel)
        if found is not None and getattr(found, "reads_context", True):
            return True
    return False


def portrait_readers(eng: "Engine", tps: Iterable[Any], enrollments: dict[int, Any]) -> set[int]:
    """The patients of ``tps`` whose portraits the batch may read (each step judged once per batch)."""
    from carepath.runtime.dispatch.decide import step_of

    tps = list(tps)
    if eng.plugins.pm.hook.carepath_before_send.get_hookimpls():  # a hook sees Message.context
        return {tp.patient_id for tp in tps}
    judged: dict[tuple[str, str, str], bool] = {}
    readers: set[int] = set()
    for tp in tps:
        enrollment = enrollments.get(tp.enrollment_id)
        if enrollment is None or tp.patient_id in readers:
            continue
        key = (tp.journey, enrollment.version, tp.step)
        reads = judged.get(key)
        if reads is None:
            journey = eng.journey_version(tp.journey, enrollment.version)
            step = step_of(journey, tp.step) if journey is not None else None
            reads = judged[key] = step is not None and step_reads_portrait(eng, journey, step)
        if reads:
            readers.add(tp.patient_id)
    return readers


__all__ = ["PLAIN_PATIENT", "portrait_readers", "source_reads_portrait", "step_reads_portrait"]

"""What one touchpoint's condition and template see, each name built only when something reads it.

The names are those of :func:`carepath.definition.context.expression_context` (``patient``,
``event``, ``anchors``, ``journey``, ``now``, ``recipient``) plus ``survey`` and ``checkin``
for invitations, with the same values. A condition or template is evaluated with only the
names its source uses (:func:`names_used`, found once per source from Jinja's own parse), so
a condition on ``patient.age`` does not decrypt the event payload or convert the anchors, and
a plain-text body builds nothing. The whole mapping still goes to the channel as
``Message.context``: a connector that reads a name gets the value the template would have had.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Callable, Iterator

from jinja2 import TemplateSyntaxError, meta, nodes

from carepath.definition.context import RecipientView, local_anchors
from carepath.definition.expressions import environment, evaluate, render
from carepath.runtime.planner import anchor_values
from carepath.runtime.policy import zone

@functools.lru_cache(maxsize=4096)
def names_used(source: str, condition: bool = False) -> frozenset[str] | None:
    """The context names a template (or a condition) reads; ``None`` when it cannot be told (give it all)."""
    try:
        tree = environment().parse("{{ " + source + " }}" if condition else source)
    except TemplateSyntaxError:
        return None  # it fails the same way when run, with every name given
    return frozenset(meta.find_undeclared_variables(tree))


@functools.lru_cache(maxsize=256)
def _local_now(now: datetime, tz_name: str) -> datetime:
    return now.astimezone(zone(tz_name))


class MessageContext(Mapping):
    """The expression context of one touchpoint; a name's value is made on first read and kept."""

    __slots__ = ("_values", "_makers")

    def __init__(self, makers: dict[str, Callable[[], Any]]) -> None:
        self._values: dict[str, Any] = {}
        self._makers = makers

    @classmethod
    def for_touchpoint(cls, tp: Any, ctx: Any, enrollment: Any, patient: Any, journey_name: str,
                       now: datetime) -> "MessageContext":
        view = patient.view
        return cls({
            "recipient": lambda: RecipientView(view.name),
            "patient": lambda: view,
            "event": lambda: ctx.event_payload(tp, enrollment) or {},
            "anchors": lambda: local_anchors(anchor_values(enrollment.anchors or {}, enrollment.enrolled_at), view.tz),
            "journey": lambda: journey_name,
            "now": lambda: _local_now(now, view.tz),
        })

    def with_value(self, name: str, value: Any) -> "MessageContext":
        """This context with ``name`` set to ``value`` (a copy: values already made are shared)."""
        other = MessageContext(self._makers)
        other._values = {**self._values, name: value}
        return other

    def __getitem__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            pass
        make = self._makers[name]  # KeyError for a name the context does not have, as a dict
        value = self._values[name] = make()
        return value

    def __contains__(self, name: object) -> bool:
        return name in self._values or name in self._makers

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(self._makers), **self._values})

    def __len__(self) -> int:
        return len(set(self._makers) | set(self._values))

    def only(self, names: frozenset[str] | None) -> dict[str, Any]:
        """The values of ``names`` this context has (all of them for ``None``)."""
        if names is None:
            return dict(self)
        return {n: self[n] for n in names if n in self}

    def render(self, source: str) -> str:
        """:func:`~carepath.definition.expressions.render` with the names ``source`` reads."""
        if "{" not in source:
            return source
        return render(source, self.only(names_used(source)))

    def evaluate(self, condition: str) -> Any:
        """:func:`~carepath.definition.expressions.evaluate` with the names ``condition`` reads.

        A condition that is a pure function of a few plain fields of the patient (``patient.age >= 65``,
        ``patient.has('E11')``: :func:`patient_fields_read`) is evaluated once per distinct value of those
        fields and its answer reused; it ran in the sandbox the first time, with the same inputs."""
        fields = patient_fields_read(condition)
        if fields is None:
            return evaluate(condition, self.only(names_used(condition, True)))
        patient = self["patient"]
        key = (condition, *(getattr(patient, _KEYED_BY.get(f, f)) for f in fields))
        try:
            found = _ANSWERS.get(key)
        except TypeError:  # a field of an unhashable kind (never from the database): no reuse
            return evaluate(condition, {"patient": patient})
        if found is None:
            found = evaluate(condition, {"patient": patient})
            if found.error is None:  # an error (a limit) is told afresh each time
                if len(_ANSWERS) > 20000:
                    _ANSWERS.clear()
                _ANSWERS[key] = found
        return found


#: plain fields of the patient whose values decide a condition that reads only them (``has`` and ``tagged``
#: are decided by ``conditions`` and ``tags``); a condition on anything else is evaluated every time
_KEYED_BY = {"has": "conditions", "tagged": "tags"}
_PURE_FIELDS = frozenset({"id", "sex", "birth_date", "conditions", "tags", "tz", "language", "today", "age", "has",
                          "tagged"})
_PURE_NODES = (nodes.Template, nodes.Output, nodes.Compare, nodes.Operand, nodes.And, nodes.Or, nodes.Not,
               nodes.Const, nodes.Test, nodes.CondExpr, nodes.Tuple, nodes.List, nodes.Neg, nodes.Pos, nodes.Add,
               nodes.Sub, nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod, nodes.Getattr, nodes.Name, nodes.Call)
_ANSWERS: dict[tuple, Any] = {}


@functools.lru_cache(maxsize=4096)
def patient_fields_read(condition: str) -> tuple[str, ...] | None:
    """The plain patient fields a condition reads when nothing else decides it (``None`` otherwise): only
    constants, comparisons, logic, arithmetic, Jinja tests, ``patient.<field>`` and calls of ``patient.has``
    or ``patient.tagged`` with constant arguments (no filters, no globals such as ``lipsum``, no other names)."""
    try:
        tree = environment().parse("{{ " + condition + " }}")
    except TemplateSyntaxError:
        return None
    fields: set[str] = set()
    plain: set[int] = set()
    for node in tree.find_all(nodes.Node):
        if not isinstance(node, _PURE_NODES):
            return None
        if isinstance(node, nodes.Getattr):
            if not (isinstance(node.node, nodes.Name) and node.node.name == "patient" and node.attr in _PURE_FIELDS):
                return None
            fields.add(node.attr)
            plain.add(id(node.node))
        elif isinstance(node, nodes.Call):
            method = node.node
            if not (isinstance(method, nodes.Getattr) and method.attr in _KEYED_BY and not node.kwargs
                    and node.dyn_args is None and node.dyn_kwargs is None
                    and all(isinstance(a, nodes.Const) for a in node.args)):
                return None
        elif isinstance(node, nodes.Test) and (node.kwargs or node.dyn_args or node.dyn_kwargs):
            return None
    if any(isinstance(n, nodes.Name) and id(n) not in plain for n in tree.find_all(nodes.Name)):
        return None
    return tuple(sorted(fields)) if fields else None


__all__ = ["MessageContext", "names_used", "patient_fields_read"]

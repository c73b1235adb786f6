"""Where a number a segment condition reads matters: the constants it is compared with.

Segment membership is cached by the values the conditions read of a patient
(:func:`carepath.runtime.segments.members_of`). A number read only in comparisons with constants
(``patient.age < 18``, ``1 <= patient.portrait.interactions_30d < 4``) and in ``is none`` tests changes
the outcome only when it crosses one of those constants: ages 30 and 31 put a patient in the same
segments. :func:`compared_fields` finds such fields in the conditions' syntax trees and
:func:`position` gives the value's place among the constants (below, at or above each), which is then
cached instead of the value, so that far fewer patients need the conditions evaluated.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

from jinja2 import nodes

#: comparisons whose outcome only the value's place among the constants decides
_ORDERING = frozenset({"eq", "ne", "lt", "lteq", "gt", "gteq"})

Field = tuple[str, str]  # ("v", name): a patient field; ("p", name): a portrait field


def _number(node: nodes.Node) -> float | None:
    if isinstance(node, nodes.Const) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    return None


def field_of(node: nodes.Node) -> Field | None:
    """``patient.X`` as ``("v", X)`` and ``patient.portrait.X`` as ``("p", X)``; else ``None``."""
    if not isinstance(node, nodes.Getattr):
        return None
    inner = node.node
    if isinstance(inner, nodes.Name) and inner.name == "patient" and node.attr != "portrait":
        return ("v", node.attr)
    if isinstance(inner, nodes.Getattr) and inner.attr == "portrait" and isinstance(inner.node, nodes.Name) \
            and inner.node.name == "patient":
        return ("p", node.attr)
    return None


def _constants(node: nodes.Node, parent: nodes.Node | None, grandparent: nodes.Node | None) -> list[float] | None:
    """The constants ``node`` is compared with where it stands, or ``None`` when it is used otherwise
    (an ``is none`` test compares with nothing: an empty list)."""
    if isinstance(parent, nodes.Test) and parent.node is node and parent.name == "none":
        return []
    if isinstance(parent, nodes.Compare) and parent.expr is node:
        chain, at = [parent.expr, *(o.expr for o in parent.ops)], 0
        ops = [o.op for o in parent.ops]
    elif isinstance(parent, nodes.Operand) and parent.expr is node and isinstance(grandparent, nodes.Compare):
        chain = [grandparent.expr, *(o.expr for o in grandparent.ops)]
        ops = [o.op for o in grandparent.ops]
        at = 1 + next(i for i, o in enumerate(grandparent.ops) if o is parent)
    else:
        return None
    found = []
    for side, op in ((at - 1, ops[at - 1] if at > 0 else None), (at + 1, ops[at] if at < len(ops) else None)):
        if op is None:
            continue
        value = _number(chain[side])
        if op not in _ORDERING or value is None:
            return None
        found.append(value)
    return found


def compared_fields(trees: Iterable[nodes.Node], uses: Counter) -> dict[Field, tuple[float, ...]]:
    """Fields read only in comparisons with number constants (or ``is none`` tests), with those constants.

    ``uses`` counts every read of each field in the conditions (one per occurrence); a field some read of
    which this does not recognise (a filter, arithmetic, a longer path, another syntax) is left out."""
    parents: dict[int, nodes.Node] = {}
    compared: Counter = Counter()
    cuts: dict[Field, set[float]] = {}
    for tree in trees:
        stack: list[nodes.Node] = [tree]
        while stack:
            node = stack.pop()
            for child in node.iter_child_nodes():
                parents[id(child)] = node
                stack.append(child)
            field = field_of(node)
            if field is None:
                continue
            parent = parents.get(id(node))
            found = _constants(node, parent, parents.get(id(parent)) if parent is not None else None)
            if found is not None:
                compared[field] += 1
                cuts.setdefault(field, set()).update(found)
    return {f: tuple(sorted(values)) for f, values in cuts.items() if compared[f] == uses[f]}


def position(value: Any, cuts: tuple[float, ...]) -> Any:
    """A number's place among ``cuts`` (below, at or above each): numbers with the same place compare
    alike with every one of them. Anything else (``None``, text, a truth value, NaN) is kept as it is."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return value
    return ("cut", tuple((value > c) - (value < c) for c in cuts))

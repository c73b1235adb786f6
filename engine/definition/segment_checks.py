"""Checks of conditions that read the portrait or segments: field names, segment names, no recursion."""

from __future__ import annotations

from typing import Collection

from jinja2 import nodes

from carepath.definition import expression_checks as checks
from carepath.definition.expressions import ExpressionError, compile_condition
from carepath.definition.reach import suggest


def segment_calls(tree: nodes.Template) -> list[tuple[str | None, int]]:
    """``(segment name or None when not a constant, line)`` of every ``patient.in_segment(...)``."""
    found = []
    for call in tree.find_all(nodes.Call):
        callee = call.node
        if isinstance(callee, nodes.Getattr) and callee.attr == "in_segment" and \
                isinstance(callee.node, nodes.Name) and callee.node.name == "patient":
            arg = call.args[0] if call.args else None
            name = arg.value if isinstance(arg, nodes.Const) and isinstance(arg.value, str) else None
            found.append((name, call.lineno))
    return found


def unknown_segments(source: str, known: Collection[str], condition: bool = True) -> list[tuple[str, int]]:
    """``(message, line)`` for every ``patient.in_segment("x")`` naming a segment that does not exist."""
    tree = checks.parse(source, condition)
    if tree is None:
        return []
    out = []
    for name, line in segment_calls(tree):
        if name is None:
            out.append(("patient.in_segment needs a segment name in quotes, e.g. "
                        'patient.in_segment("activity-low")', line))
        elif name not in known:
            out.append((f"unknown segment '{name}'{suggest(name, known)} (see `carepath segments list`)", line))
    return out


def condition_problems(source: str) -> list[str]:
    """Problems of a segment condition: syntax, unknown names and fields, segments used inside segments."""
    from carepath.definition.reach import Scope, check_uses

    try:
        compile_condition(source)
    except ExpressionError as exc:
        return [f"syntax error: {exc}"]
    tree = checks.parse(source, condition=True)
    if tree is None:
        return ["syntax error"]
    problems = [f"'{a}' is private" for a, _ in checks.private_attributes(tree)]
    problems += [m for m, _ in checks.constant_failures(tree, source)]
    if segment_calls(tree):
        problems.append("a segment cannot use patient.in_segment (membership is what segments decide)")
    scope = Scope("a segment condition", (), frozenset(), frozenset())
    for message, _ in check_uses(checks.uses(tree), scope, {}):
        if "unknown name 'event'" in message or "unknown name 'anchors'" in message:
            message = "a segment condition sees only patient and now"
        problems.append(message)
    problems += [f"a segment condition sees only patient and now (not {u.root})" for u in checks.uses(tree)
                 if u.root in ("event", "anchors", "journey")]
    return list(dict.fromkeys(problems))

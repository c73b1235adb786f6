"""What a template or condition reaches for, read from its Jinja syntax tree.

The journey validator uses this to check names against what can reach a step
(:func:`uses`), to refuse private and dunder attributes (:func:`private_attributes`)
and to run the constant parts of an expression under the sandbox's limits
(:func:`constant_failures`), so a template that can only fail is reported
before it is deployed. Nothing here evaluates an expression outside the
bounded sandbox.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Iterator

from jinja2 import TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError

from carepath.definition.sandbox import LimitError, environment, limits

GUARD_FILTERS = {"default", "d"}
# Filters that print a fallback for a missing value when given ``missing=...``.
FALLBACK_FILTERS = {"date", "time", "datetime"}
GUARD_TESTS = {"defined", "undefined", "none"}
# Filters whose string arguments name attributes to read.
ATTRIBUTE_FILTERS = {"attr", "map", "selectattr", "rejectattr", "sort", "groupby", "sum", "unique", "min", "max"}
SAFE_CALLS = {"range", "lipsum", "dict"}
_PRIVATE = re.compile(r"(^|\.)_")
_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}")


@dataclass(frozen=True)
class Use:
    """One variable path an expression reads: ``event.fasting`` is ``Use("event", ("fasting",), ...)``."""

    root: str
    path: tuple[str, ...]
    line: int
    guarded: bool  # under ``| default(...)``, ``is defined`` or ``.get(...)``: a missing value is fine
    #: tested with ``is none`` / ``is not none`` only, not ``is defined``: a missing value is undefined, not none,
    #: so the test is false (``is not none``: true) then (reach.py says so for an anchor that may be unset)
    none_test: bool = False

    @property
    def text(self) -> str:
        return ".".join((self.root, *self.path))


def parse(source: str, condition: bool) -> nodes.Template | None:
    """The syntax tree of a template or condition; None when it does not parse (reported elsewhere)."""
    try:
        return environment().parse("{{ " + source + " }}" if condition else source)
    except TemplateSyntaxError:
        return None


def free_names(tree: nodes.Template) -> set[str]:
    """Names the expression takes from its context (not set or looped over inside it)."""
    return set(meta.find_undeclared_variables(tree))


def _parents(tree: nodes.Node) -> dict[int, nodes.Node]:
    found: dict[int, nodes.Node] = {}
    for parent in tree.find_all(nodes.Node):
        for child in parent.iter_child_nodes():
            found[id(child)] = parent
    for child in tree.iter_child_nodes():
        found[id(child)] = tree
    return found


def _chain(node: nodes.Node) -> tuple[str, tuple[str, ...]] | None:
    """``patient.name`` / ``event['x'].y`` as (root, path); None when not a plain path."""
    path: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            path.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            path.append(node.arg.value)
            node = node.node
        elif isinstance(node, nodes.Name) and node.ctx == "load":
            return node.name, tuple(reversed(path))
        else:
            return None


def _guard(node: nodes.Node, parent: nodes.Node | None) -> str | None:
    """``"default"``, ``"test"`` or ``"none"`` (an ``is none`` test) when ``node`` is guarded against being
    undefined, else None."""
    if isinstance(parent, nodes.Filter) and parent.node is node and parent.name in GUARD_FILTERS:
        return "default"
    if isinstance(parent, nodes.Filter) and parent.node is node and parent.name in FALLBACK_FILTERS \
            and any(kw.key == "missing" for kw in parent.kwargs):
        return "default"
    if isinstance(parent, nodes.Test) and parent.node is node and parent.name in GUARD_TESTS:
        return "none" if parent.name == "none" else "test"
    return None


def uses(tree: nodes.Template) -> list[Use]:
    """Every path read from a context variable, longest form only (``patient.name``, not ``patient``).

    A path is guarded by ``| default(...)`` or ``.get(...)`` where it is used;
    an ``is defined`` test on a path guards every use of it in the expression
    (``{% if event.x is defined %}...{{ event.x }}``).
    """
    names = free_names(tree)
    parents = _parents(tree)
    found: list[tuple[Use, str | None]] = []
    for node in tree.find_all((nodes.Name, nodes.Getattr, nodes.Getitem)):
        parent = parents.get(id(node))
        if isinstance(parent, (nodes.Getattr, nodes.Getitem)) and parent.node is node and _chain(parent):
            continue  # a longer path includes this one
        chain = _chain(node)
        if chain is None or chain[0] not in names:
            continue
        root, path = chain
        guard = _guard(node, parent)
        if path and path[-1] == "get" and isinstance(parent, nodes.Call) and parent.node is node:
            # ``event.get("x")``: reading x, with a missing value allowed
            arg = parent.args[0] if parent.args else None
            path = path[:-1] + ((arg.value,) if isinstance(arg, nodes.Const) and isinstance(arg.value, str) else ())
            guard = "default"
        found.append((Use(root, path, node.lineno, guard is not None), guard))
    tested = {(u.root, u.path[:1]) for u, guard in found if guard in ("test", "none")}
    defined = {(u.root, u.path[:1]) for u, guard in found if guard == "test"}
    return [Use(u.root, u.path, u.line, u.guarded or (u.root, u.path[:1]) in tested,
                guard == "none" and (u.root, u.path[:1]) not in defined) for u, guard in found]


def private_attributes(tree: nodes.Template) -> list[tuple[str, int]]:
    """``(attribute, line)`` for every private or dunder attribute the expression names."""
    found: list[tuple[str, int]] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            found.append((node.attr, node.lineno))
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) \
                and isinstance(node.arg.value, str) and node.arg.value.startswith("_"):
            found.append((node.arg.value, node.lineno))
        elif isinstance(node, nodes.Filter) and node.name in ATTRIBUTE_FILTERS:
            for arg in [*node.args, *(kw.value for kw in node.kwargs)]:
                if isinstance(arg, nodes.Const) and isinstance(arg.value, str) and _PRIVATE.search(arg.value):
                    found.append((arg.value, node.lineno))
    return found


# ------------------------------------------------------------- constant parts


def _closed(node: nodes.Node) -> bool:
    """Whether ``node`` depends on nothing from the context (so it fails or not on every render)."""
    if isinstance(node, nodes.Name):
        return False
    if isinstance(node, nodes.Call):
        callee = node.node
        if isinstance(callee, nodes.Name):
            if callee.name not in SAFE_CALLS:
                return False
        elif not _closed(callee):
            return False
        return all(_closed(c) for c in node.iter_child_nodes() if c is not callee)
    if isinstance(node, (nodes.Const, nodes.TemplateData, nodes.List, nodes.Tuple, nodes.Dict, nodes.Pair,
                         nodes.Keyword, nodes.BinExpr, nodes.UnaryExpr, nodes.Concat, nodes.Compare, nodes.Operand,
                         nodes.CondExpr, nodes.Filter, nodes.Test, nodes.Getattr, nodes.Getitem, nodes.Slice)):
        if isinstance(node, nodes.Filter) and node.node is None:
            return False  # a filter block applies to the rendered body
        return all(_closed(c) for c in node.iter_child_nodes())
    return False


def _worth_running(node: nodes.Node) -> bool:
    return not isinstance(node, (nodes.Const, nodes.TemplateData, nodes.Name)) and not (
        isinstance(node, (nodes.List, nodes.Tuple)) and all(isinstance(i, nodes.Const) for i in node.items))


def _closed_parts(node: nodes.Node) -> Iterator[nodes.Expr]:
    for child in node.iter_child_nodes():
        if isinstance(child, nodes.Expr) and _closed(child):
            if _worth_running(child):
                yield child
        else:
            yield from _closed_parts(child)


def _run(expr: nodes.Expr) -> None:
    env = environment()
    body = nodes.Template([nodes.Assign(nodes.Name("result", "store"), copy.deepcopy(expr))], lineno=1)
    template = env.template_class.from_code(env, env.compile(body), env.make_globals(None), None)
    with limits():
        context = template.new_context({})
        for _ in template.root_render_func(context):
            pass


def constant_failures(tree: nodes.Template, source: str) -> list[tuple[str, int]]:
    """``(message, line)`` for every part of the expression that fails whatever the context.

    Each part runs in the bounded sandbox; a limit or error it hits is what a
    send would hit.
    """
    found: list[tuple[str, int]] = []
    for part in _closed_parts(tree):
        try:
            _run(part)
        except (TemplateSyntaxError, SecurityError):
            continue  # reported as a syntax error or a private attribute
        except LimitError as exc:
            found.append((f"{_quote(source, part)}goes past a limit: {exc}", part.lineno))
        except Exception as exc:  # what every render of it would raise
            found.append((f"{_quote(source, part)}fails on every render: {type(exc).__name__}: {exc}", part.lineno))
    return found


def _quote(source: str, part: nodes.Expr) -> str:
    """The tag holding ``part`` (the one on its line naming all its constants), quoted for a message."""
    lines = source.splitlines() or [source]
    text = lines[min(max(part.lineno, 1), len(lines)) - 1].strip()
    constants = [str(c.value) for c in part.find_all(nodes.Const)]
    tags = [tag for tag in _TAG.findall(text) if all(c in tag for c in constants)]
    shown = tags[0] if tags else text
    return f'"{shown[:80]}" '

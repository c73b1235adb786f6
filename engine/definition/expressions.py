"""The one small expression language: sandboxed Jinja2 for conditions and templates.

Everything runs in the bounded sandbox of :mod:`carepath.definition.sandbox`:
past one of its limits a render raises :class:`LimitError` and a condition is
false with the reason.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Callable

from jinja2 import TemplateSyntaxError
from jinja2.environment import Template

from carepath.definition.sandbox import LimitError, environment, limits

__all__ = ["ExpressionError", "LimitError", "Evaluated", "compile_condition", "compile_template", "environment",
           "evaluate", "render"]


class ExpressionError(ValueError):
    """A condition or template that does not compile; ``column`` is 1-based when known."""

    def __init__(self, message: str, source: str, line: int | None = None, column: int | None = None):
        self.message = message
        self.source = source
        self.line = line
        self.column = column
        where = ""
        if line is not None:
            where = f" at line {line}" + (f", column {column}" if column else "")
        super().__init__(f"{message}{where}")


# ------------------------------------------------------------------ compiling


_QUOTED = re.compile(r"'([^']+)'")


def _column(source: str, exc: TemplateSyntaxError) -> int | None:
    """Best-effort column of the token Jinja complained about."""
    lines = source.splitlines() or [""]
    line = lines[(exc.lineno or 1) - 1] if (exc.lineno or 1) <= len(lines) else lines[-1]
    for token in reversed(_QUOTED.findall(exc.message or "")):
        idx = line.find(token)
        if idx >= 0:
            return idx + 1
    return len(line) + 1  # the parser ran off the end of the expression


def _bounded_call(expression: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(expression)
    def call(**context: Any) -> Any:
        with limits():
            return expression(**context)

    return call


@functools.lru_cache(maxsize=4096)
def compile_condition(source: str) -> Callable[..., Any]:
    """Compile a condition such as ``patient.age >= 65 and patient.has("E11")``."""
    try:
        return _bounded_call(environment().compile_expression(source, undefined_to_none=False))
    except TemplateSyntaxError:
        pass
    # Parsing it as a print statement gives Jinja's more precise messages.
    try:
        environment().parse("{{ " + source + " }}")
    except TemplateSyntaxError as exc:
        message = (exc.message or "syntax error").replace("end of print statement", "end of expression")
        raise ExpressionError(message, source, exc.lineno, _column(source, exc)) from None
    raise ExpressionError("not a single expression", source, 1, None)


@functools.lru_cache(maxsize=4096)
def compile_template(source: str) -> Template:
    """Compile a message template."""
    try:
        return environment().from_string(source)
    except TemplateSyntaxError as exc:
        raise ExpressionError(exc.message or "syntax error", source, exc.lineno, _column(source, exc)) from None


def check_template(source: str, where: str) -> None:
    """Compile ``source`` for a configuration check: a syntax error is a ``ValueError`` led by ``where``
    (the key path, e.g. ``params.name``), so pydantic reports it under that key."""
    try:
        compile_template(source)
    except ExpressionError as exc:
        raise ValueError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class Evaluated:
    value: bool
    error: str | None = None


def evaluate(source: str | None, context: dict[str, Any]) -> Evaluated:
    """Evaluate a condition; a runtime error (undefined name, a limit) is false with the reason."""
    if not source:
        return Evaluated(True)
    try:
        return Evaluated(bool(compile_condition(source)(**context)))
    except ExpressionError:
        raise
    except Exception as exc:  # undefined variables, type errors and limits in user expressions
        return Evaluated(False, f"{type(exc).__name__}: {exc}")


def render(source: str, context: dict[str, Any]) -> str:
    """Render a template in the bounded sandbox; raises :class:`LimitError` past a limit."""
    if "{" not in source:  # plain text: nothing to render
        return source
    return compile_template(source).render(**context)

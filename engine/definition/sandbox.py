"""The bounded Jinja2 sandbox that conditions and templates run in.

The immutable sandbox is *bounded*, so a template can neither hang the dispatcher
nor exhaust its memory:

- operators that build values (``*``, ``**``, ``+``, ``%``, ``~``), ``range``,
  ``lipsum``, the padding and joining filters (``center``, ``indent``,
  ``wordwrap``, ``format``, ``replace``, ``join``, ``batch``, ``tojson``) and
  the padding string methods (``ljust``, ``rjust``, ``zfill``, ``format``...)
  check the size of what they would build *before* building it;
- every loop iteration and every call counts against a per-render budget, and
  the budget carries a deadline checked as it is spent (no threads, no signals);
- every filter's and call's text or list result is checked too, so no chain of
  them (``tojson`` of ``tojson``..., a macro calling itself) grows a value
  past the limit;
- the rendered output has a size limit.

Past a limit a :class:`LimitError` names what was too big. Jinja folds
constant expressions while compiling; the intercepted operators are never
folded and the bounded filters raise before building anything, so compiling
(and therefore ``journeys validate``) never evaluates a user expression
without these limits.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterator

from jinja2 import StrictUndefined, Undefined, nodes, pass_context
from jinja2.runtime import new_context as _new_context
from jinja2.environment import Template
from jinja2.filters import FILTERS
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg, generate_lorem_ipsum

from carepath.definition.sandbox_limits import (  # the limits and size checks, importable from here as before
    MAX_INT_BITS, MAX_LIPSUM_WORDS, MAX_OUTPUT, MAX_RANGE, MAX_STEPS, MAX_VALUE, TIME_LIMIT, LimitError,
    _check_binop, _check_call, _check_join, _check_lines, _check_percent, _check_replace, _check_wrap, _int,
    _sized, _too_big, _width)

#: the limits (the last eight) live in sandbox_limits
__all__ = ["limits", "BoundedEnvironment", "MissingValue", "environment", "MAX_INT_BITS", "MAX_LIPSUM_WORDS",
           "MAX_OUTPUT", "MAX_RANGE", "MAX_STEPS", "MAX_VALUE", "TIME_LIMIT", "LimitError"]


# ------------------------------------------------------------------ budgets


@dataclass
class _Budget:
    deadline: float
    steps: int = 0

    def spend(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise LimitError(f"more than {MAX_STEPS} loop iterations and calls")
        if self.steps % 256 == 0 and time.monotonic() > self.deadline:
            raise LimitError(f"rendering took longer than {TIME_LIMIT:g} s")


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("carepath_render_budget", default=None)


@contextlib.contextmanager
def limits() -> Iterator[_Budget]:
    """A fresh budget for one render or evaluation (an enclosing one is kept)."""
    current = _BUDGET.get()
    if current is not None:
        yield current
        return
    token = _BUDGET.set(_Budget(time.monotonic() + TIME_LIMIT))
    try:
        yield _BUDGET.get()  # type: ignore[misc]
    finally:
        _BUDGET.reset(token)


def _spend() -> None:
    budget = _BUDGET.get()
    if budget is not None:  # render() and evaluate() always open one
        budget.spend()


# ------------------------------------------------------------------ filters


def _bounded_filter(func: Callable, check: Callable[..., None]) -> Callable:
    """``func`` with ``check`` run on the filter's own arguments first."""
    skip = 1 if _PassArg.from_obj(func) is not None else 0

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        check(*args[skip:], **kwargs)
        return func(*args, **kwargs)

    return wrapper


def _bounded_result(name: str, func: Callable) -> Callable:
    """``func`` whose text or list result is checked: no chain of filters grows a value past the limit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = func(*args, **kwargs)
        if _sized(result):
            _too_big(f"the result of the {name} filter", len(result))
        return result

    return wrapper


def _join_filter(func: Callable) -> Callable:
    @functools.wraps(func)
    def wrapper(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
        items = list(value)
        if attribute is None:
            _check_join(str(d), items)
        return func(eval_ctx, items, d, attribute)

    return wrapper


_FILTER_CHECKS: dict[str, Callable[..., None]] = {
    "center": lambda value, width=80: _width("a padded text", width),
    "indent": lambda s, width=4, first=False, blank=False: _check_lines(
        s, len(width) if isinstance(width, str) else width, "the indented text"),
    "wordwrap": lambda s, width=79, break_long_words=True, wrapstring=None, break_on_hyphens=True: _check_wrap(
        str(s), width, wrapstring or "\n"),
    "format": lambda value, *args, **kwargs: _check_percent(str(value), tuple(args) or kwargs),
    "replace": lambda s, old, new, count=None: _check_replace(str(s), str(old), str(new), count),
    "batch": lambda value, linecount, fill_with=None: _width("a batch", linecount),
    "slice": lambda value, slices, fill_with=None: _width("a slice count", slices),
    "tojson": lambda value, indent=None: _too_big("a JSON indent", indent if _int(indent) else 0, 100, "spaces"),
}


@pass_context
def _loop_guard(context: Any, iterable: Any) -> Iterator[Any]:
    """Wraps every ``{% for %}`` iterable: each iteration spends the render budget."""
    for item in iterable:
        _spend()
        yield item


def _concat(parts: list) -> str:
    """``a ~ b``: the joined text within the limit."""
    texts = [str(p) for p in parts]
    _too_big("the joined text", sum(map(len, texts)))
    return "".join(texts)


def _range(*args: int) -> range:
    numbers = range(*args)
    _too_big("range()", len(numbers), MAX_RANGE)
    return numbers


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    _too_big("lipsum()", n * max, MAX_LIPSUM_WORDS, "words long")
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


class _BoundedTemplate(Template):
    """``render`` spends a budget and stops past :data:`MAX_OUTPUT` characters."""

    def new_context(self, vars: dict | None = None, shared: bool = False, locals: Any = None) -> Any:
        """Jinja's, with the template's globals flattened once: Jinja walks their ``ChainMap`` twice per
        render or condition, a third of a short template's time (the environment's globals are set once,
        in :func:`environment`, before any template is compiled)."""
        if shared or locals:
            return super().new_context(vars, shared, locals)
        flat = self.__dict__.get("_flat_globals")
        if flat is None:
            flat = self._flat_globals = dict(self.globals)
        return _new_context(self.environment, self.name, self.blocks, {**flat, **(vars or {})}, True, flat)

    def render(self, *args: Any, **kwargs: Any) -> str:
        with limits():
            ctx = self.new_context(dict(*args, **kwargs))
            out: list[str] = []
            size = 0
            try:
                for piece in self.root_render_func(ctx):
                    size += len(piece)
                    if size > MAX_OUTPUT:
                        raise LimitError(f"the rendered text would be over {MAX_OUTPUT} characters")
                    out.append(piece)
            except Exception:
                self.environment.handle_exception()
            return "".join(out)


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox with bounded operators, calls, loops, filters and output."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    template_class = _BoundedTemplate

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        result = super().call_binop(context, operator, left, right)
        if _sized(result):
            _too_big(f"the result of {operator}", len(result))
        return result

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _spend()
        args = _check_call(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        if _sized(result):
            _too_big(f"the result of {getattr(__obj, '__name__', 'a call')}()", len(result))
        return result

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None,
                  defer_init: bool = False) -> str:
        _bound_tree(source)
        return super()._generate(source, name, filename, defer_init=defer_init)


def _bound_tree(tree: nodes.Node) -> None:
    """Route every loop through the loop guard and every ``~`` through the bounded join."""
    for loop in tree.find_all(nodes.For):
        loop.iter = nodes.Filter(loop.iter, "_loop_guard", [], [], None, None, lineno=loop.lineno)
    for parent in tree.find_all(nodes.Node):
        for field, child in parent.iter_fields():
            if isinstance(child, nodes.Concat):
                setattr(parent, field, _as_join(child))
            elif isinstance(child, list):
                child[:] = [_as_join(c) if isinstance(c, nodes.Concat) else c for c in child]


def _as_join(node: nodes.Concat) -> nodes.Filter:
    return nodes.Filter(nodes.List(node.nodes, lineno=node.lineno), "_concat", [], [], None, None,
                        lineno=node.lineno)


_NO_FALLBACK = object()


class MissingValue(ValueError):
    """A date or time filter was given no value (``None``, an anchor an event cleared)."""


def _date(value: Any, fmt: str = "%Y-%m-%d", missing: Any = _NO_FALLBACK, *, name: str = "date") -> str:
    """Format a date or time; an ISO 8601 string from an event payload is read as one (at its own offset).

    A missing value (``None``, undefined, empty text) fails the render rather than print ``None``:
    a cancellation notice must not say "cancelled None". ``missing=`` gives the text to print instead.
    """
    if isinstance(value, Undefined) or value is None or (isinstance(value, str) and not value.strip()):
        if missing is not _NO_FALLBACK:
            return str(missing)
        if isinstance(value, Undefined):
            str(value)  # strict undefined: its own error names the variable
        raise MissingValue(f"the {name} filter got no value: the time it should print is missing (an anchor the "
                           f"event cleared, or a field it did not carry); print another value, guard it with "
                           f"{{% if ... %}}, or write | {name}(missing='...')")
    if isinstance(value, str) and len(value) <= 64:
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            pass
    return value.strftime(fmt) if hasattr(value, "strftime") else str(value)


def _time(value: Any, missing: Any = _NO_FALLBACK) -> str:
    return _date(value, "%H:%M", missing, name="time")


def _datetime(value: Any, missing: Any = _NO_FALLBACK) -> str:
    return _date(value, "%Y-%m-%d %H:%M", missing, name="datetime")


@functools.lru_cache(maxsize=1)
def environment() -> BoundedEnvironment:
    env = BoundedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    for name, check in _FILTER_CHECKS.items():
        env.filters[name] = _bounded_filter(FILTERS[name], check)
    env.filters["join"] = _join_filter(FILTERS["join"])
    for name, func in list(env.filters.items()):
        env.filters[name] = _bounded_result(name, func)
    env.filters["_loop_guard"] = _loop_guard
    env.filters["_concat"] = _concat
    env.globals["range"] = _range
    env.globals["lipsum"] = _lipsum
    env.filters["date"] = _date
    env.filters["time"] = _time
    env.filters["datetime"] = _datetime
    return env

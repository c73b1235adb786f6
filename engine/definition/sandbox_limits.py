"""The sandbox's limits and the size checks that enforce them before a value is built (an operator, a string
method, a join): a part of :mod:`carepath.definition.sandbox`."""

from __future__ import annotations

import re
import string
from typing import Any, Callable, Iterable

MAX_VALUE = 100_000  # characters of a string, items of a list, built by one operation
MAX_OUTPUT = 100_000  # characters of one rendered template
MAX_INT_BITS = 4096  # an integer built by * or ** (about 1,200 digits)
MAX_RANGE = 10_000  # items of one range()
MAX_STEPS = 20_000  # loop iterations plus calls in one render
TIME_LIMIT = 0.25  # seconds for one render or one condition
MAX_LIPSUM_WORDS = 10_000

class LimitError(Exception):
    """A template or condition went past one of the sandbox's limits."""

def _too_big(what: str, size: int, limit: int = MAX_VALUE, unit: str = "long") -> None:
    if size > limit:
        raise LimitError(f"{what} would be {size} {unit} (limit {limit})")

def _sized(value: Any) -> bool:
    return isinstance(value, (str, bytes, list, tuple))

def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)

def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if _sized(seq) and _int(n):
                _too_big(f"repeating a {type(seq).__name__}", len(seq) * max(n, 0))
        if _int(left) and _int(right):
            _too_big("an integer product", abs(left).bit_length() + abs(right).bit_length(), MAX_INT_BITS,
                     "bits long")
    elif operator == "**" and _int(left) and _int(right) and right > 0 and abs(left) > 1:
        _too_big("a power", right * abs(left).bit_length(), MAX_INT_BITS, "bits long")
    elif operator == "+" and _sized(left) and _sized(right):
        _too_big(f"joining two {type(left).__name__}s", len(left) + len(right))
    elif operator == "%" and isinstance(left, str):
        _check_percent(left, right)

_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_DIGITS = re.compile(r"\d+")

def _width(what: str, width: Any) -> None:
    if _int(width):
        _too_big(what, width)
    elif isinstance(width, str) and width.isdigit():
        _too_big(what, MAX_VALUE + 1 if len(width) > 6 else int(width))

def _longest(values: Iterable[Any]) -> int:
    return max((len(str(v)) for v in values), default=0)

def _check_percent(fmt: str, args: Any) -> None:
    """``'%*d' % (10**9, 1)``, ``'%1000000000s'`` and many fields of long values: within the limit."""
    star = False
    specs = list(_PERCENT.finditer(fmt))
    for match in specs:
        for group in match.groups():
            star = star or group == "*"
            if group and group != "*":
                _width("a formatted field", group)
    values = list(args.values()) if isinstance(args, dict) else list(args) if isinstance(args, tuple) else [args]
    if star:
        for arg in values:
            _width("a formatted field", arg)
    _too_big("the formatted text", len(fmt) + len(specs) * _longest(values))

def _check_braces(fmt: str, args: list[Any]) -> None:
    """``'{:>1000000000}'.format(1)``, nested widths ``'{:{}}'`` and many fields of long values: within the limit."""
    try:
        fields = [f for f in string.Formatter().parse(fmt) if f[1] is not None]
    except ValueError:
        return  # str.format reports the syntax error itself
    for _, _, spec, _ in fields:
        if not spec:
            continue
        for digits in _DIGITS.findall(spec):
            _width("a formatted field", digits)
        if "{" in spec:
            for arg in args:
                _width("a formatted field", arg)
    _too_big("the formatted text", len(fmt) + len(fields) * _longest(args))

def _check_replace(s: Any, old: Any, new: Any, count: Any = None) -> None:
    if not (isinstance(s, str) and isinstance(old, str) and isinstance(new, str)):
        return
    n = len(s) + 1 if old == "" else s.count(old)
    if _int(count) and count >= 0:
        n = min(n, count)
    _too_big("the replaced text", len(s) + n * (len(new) - len(old)))

def _check_lines(s: Any, per_line: int, what: str) -> None:
    text = str(s)
    _too_big(what, len(text) + (text.count("\n") + 1) * max(per_line, 0))

def _check_wrap(s: str, width: Any, wrapstring: str) -> None:
    """Two consecutive wrapped lines hold more than ``width`` characters, so there are at most 2n/width + 1."""
    lines = 2 * len(s) // max(width if _int(width) else 1, 1) + 1
    _too_big("the wrapped text", len(s) + lines * len(wrapstring))

_STR_METHOD_CHECKS: dict[str, Callable[..., None]] = {
    "center": lambda s, width, *_: _width("a padded text", width),
    "ljust": lambda s, width, *_: _width("a padded text", width),
    "rjust": lambda s, width, *_: _width("a padded text", width),
    "zfill": lambda s, width, *_: _width("a padded text", width),
    "expandtabs": lambda s, tabsize=8, *_: _too_big("the expanded text", s.count("\t") * max(tabsize, 0) + len(s)),
    "replace": _check_replace,
    "format": lambda s, *args, **kw: _check_braces(s, [*args, *kw.values()]),
    "format_map": lambda s, mapping=None, *_: _check_braces(s, list((mapping or {}).values())),
}

def _check_call(obj: Any, args: tuple, kwargs: dict) -> tuple:
    """Check a string method call before it runs; returns the arguments to call it with."""
    obj = getattr(obj, "__wrapped__", obj)  # the sandbox wraps str.format
    owner = getattr(obj, "__self__", None)
    check = _STR_METHOD_CHECKS.get(getattr(obj, "__name__", ""))
    if isinstance(owner, str) and check is not None:
        if obj.__name__ in ("format", "format_map"):
            check(owner, *args, **kwargs)
        else:
            check(owner, *args)
    elif isinstance(owner, str) and obj.__name__ == "join" and args:
        return (_check_join(owner, args[0]), *args[1:])  # a generator is consumed once: pass the list on
    return args

def _check_join(separator: str, items: Any) -> list:
    items = list(items)
    _too_big("the joined text", len(separator) * len(items) + sum(len(str(i)) for i in items))
    return items

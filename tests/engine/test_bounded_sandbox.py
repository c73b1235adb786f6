"""The bounded sandbox: hostile templates and conditions stop fast with a clear reason; ordinary ones still work."""

from __future__ import annotations

import re
import time  # process_time: CPU spent here, not the load of other processes on a shared machine

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from carepath.definition.expressions import LimitError, compile_template, evaluate, render
from carepath.definition.sandbox import MAX_OUTPUT

HOSTILE = {
    "{{ 'a' * 10**9 }}": "repeating a str would be 1000000000 long",
    "{{ 10 ** (10 ** 8) }}": "a power would be 400000000 bits long",
    "{{ 'a'|center(10**9) }}": "a padded text would be 1000000000 long",
    "{{ lipsum(n=10**6) }}": "lipsum() would be 100000000 words long",
    "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}": "range() would be 100000 long",
    "{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}": "more than 20000 loop iterations",
    "{{ [1, 2] * 10**9 }}": "repeating a list would be 2000000000 long",
    "{{ ('a' * 99999) + ('b' * 99999) }}": "joining two strs would be 199998 long",
    "{{ ('a' * 99999) ~ ('b' * 99999) }}": "the joined text would be 199998 long",
    "{{ 'a'.rjust(10**9) }}": "a padded text would be 1000000000 long",
    "{{ 'a'.zfill(10**9) }}": "a padded text would be 1000000000 long",
    "{{ '%*s'|format(10**9, 'a') }}": "a formatted field would be 1000000000 long",
    "{{ '%1000000000d' % 1 }}": "a formatted field would be",
    "{{ '{:>1000000000}'.format(1) }}": "a formatted field would be",
    "{{ 'a\nb'|indent(10**9) }}": "the indented text would be",
    "{{ ('a' * 50000)|wordwrap(1, wrapstring='x' * 100) }}": "the wrapped text would be",
    "{{ ('a' * 1000)|replace('a', 'b' * 1000) }}": "the replaced text would be 1000000 long",
    "{{ ('a' * 1000).replace('a', 'b' * 1000) }}": "the replaced text would be 1000000 long",
    "{{ range(10000)|join('a' * 100) }}": "the joined text would be",
    "{{ range(10)|batch(10**9, 'x')|list }}": "a batch would be 1000000000 long",
    "{{ {'a': 1}|tojson(indent=10**9) }}": "a JSON indent",
    "{% for i in range(10000) %}{{ 'x' * 100 }}{% endfor %}": "the rendered text would be over 100000 characters",
    # values grown step by step in a loop: each step's result is checked
    "{% set ns = namespace(s='<a>') %}{% for i in range(60) %}{% set ns.s = ns.s|tojson %}{% endfor %}":
        "the result of the tojson filter would be",
    "{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = [ns.l, ns.l]|sum(start=[]) %}{% endfor %}":
        "the result of the sum filter would be 131072 long",
    "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = '%s%s' % (ns.s, ns.s) %}{% endfor %}":
        "the formatted text would be 131076 long",
    "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = '{0}{0}'.format(ns.s) %}{% endfor %}":
        "the formatted text would be 131078 long",
    "{{ ('%s' * 1000) % (('a' * 99999,) * 1000) }}": "the formatted text would be 100001000 long",
    # 2**40 macro calls: the step budget or the time limit stops it, whichever comes first on this machine
    "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}":
        "more than 20000 loop iterations and calls|rendering took longer than 0.25 s",
}
"""Hostile template -> what its error says (alternatives separated by |)."""


@pytest.mark.parametrize("source", HOSTILE)
def test_hostile_templates_stop_fast_with_a_clear_reason(source):
    started = time.process_time()
    with pytest.raises(LimitError, match="|".join(re.escape(reason) for reason in HOSTILE[source].split("|"))):
        render(source, {})
    assert time.process_time() - started < 0.5


@pytest.mark.parametrize("source", ["{{ 'a'|center(10**9) }}", "{{ 'a'|center(10**5) ~ 'a'|center(10**5) }}",
                                    "{{ 'a' * 10**9 }}", "{{ range(10**9)|list }}"])
def test_compiling_never_builds_a_huge_constant(source):
    """Jinja folds constants while compiling: the bounded filters and operators refuse before building."""
    started = time.process_time()
    compile_template(source)
    assert time.process_time() - started < 0.5


def test_a_hostile_condition_is_false_with_the_reason():
    result = evaluate("'a' * 10**9 == ''", {})
    assert result.value is False and result.error.startswith("LimitError: repeating a str")


def test_the_sandbox_still_refuses_private_attributes():
    with pytest.raises(Exception, match="unsafe"):
        render("{{ ''.__class__.__mro__ }}", {})


def test_ordinary_templates_render_as_before():
    source = ("{{ name|center(6) }}|{{ '%03d'|format(7) }}|{{ '{:>4}'.format(n) }}|{{ items|join(', ') }}|"
              "{% for i in range(3) %}{{ i }}{% endfor %}|{{ 2 ** 10 }}|{{ 'ab' * 2 }}|{{ name ~ '!' }}|"
              "{{ 'a b c'|wordwrap(3) }}|{{ 'x'.ljust(3) }}|{{ '-'.join(items|map('upper')) }}.")
    assert render(source, {"name": "张三", "n": 5, "items": ["a", "b"]}) == \
        "  张三  |007|   5|a, b|012|1024|abab|张三!|a b\nc|x  |A-B."


_LEAVES = st.sampled_from(["'ab'", "[1, 2]", "10", "9", "range(50)", "'x' * 1000", "(2 ** 64)", "ns.v"])
_WRAPS = st.sampled_from(["({} * {})", "({} ** {})", "({} + {})", "({} ~ {})", "('%s%s' % ({}, {}))",
                          "[{}, {}]|sum(start=[])", "'{{}}{{}}'.format({}, {})"])
_FILTERS = st.sampled_from(["", "|center(99999)", "|join(', ')", "|list", "|string", "|tojson", "|replace('a', 'bb')",
                            "|indent(500)", "|wordwrap(3)", "|batch(3)|list"])


@st.composite
def _expressions(draw, depth: int = 3) -> str:
    if depth == 0 or draw(st.booleans()):
        return draw(_LEAVES) + draw(_FILTERS)
    return draw(_WRAPS).format(draw(_expressions(depth - 1)), draw(_expressions(depth - 1))) + draw(_FILTERS)


@hsettings(max_examples=40, deadline=None)
@given(expression=_expressions(), loops=st.integers(0, 3))
def test_any_mix_of_growing_operations_stops_within_the_limits(expression, loops):
    """Values fed back through a namespace in nested loops: every render ends fast, within the output limit."""
    body = "{% set ns.v = " + expression + " %}{{ ns.v }}"
    for _ in range(loops):
        body = "{% for i in range(30) %}" + body + "{% endfor %}"
    source = "{% set ns = namespace(v='ab') %}" + body
    started = time.process_time()
    try:
        out = render(source, {})
    except MemoryError:
        raise
    except Exception:  # a limit, or an ordinary failure of an ill-typed expression (list * str...)
        pass
    else:
        assert len(out) <= MAX_OUTPUT
    assert time.process_time() - started < 1.0

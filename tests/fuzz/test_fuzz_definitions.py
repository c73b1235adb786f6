"""What integrators write and patients type: journey YAML, templates and conditions, inbound texts.

Journey files with mutated text and structure are read into a journey or a list of problems, never an
exception; templates and conditions compile, evaluate and validate without raising anything but a syntax
error (``ExpressionError``); an inbound text's intent is read without raising.

Inbound texts: ``TEXT_PARSERS`` lists every function that reads what a patient wrote. The FAQ patterns of the
conversation feature (not built yet) belong here: add their matcher, ``(text) -> answer or None``, to the list
and it is fuzzed with the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from carepath.definition.context import PatientView, expression_context
from carepath.definition.expressions import ExpressionError, compile_condition, compile_template, evaluate
from carepath.definition.journey_files import read_journey_text
from carepath.definition.model import Journey
from carepath.definition.validation import Problem, validate_journey
from carepath.runtime.unsubscribe import UNSUBSCRIBE, normalized, reply_intent

from tests.fuzz.budget import FUZZ

STOCK = (Path(__file__).resolve().parents[2] / "journeys" / "outpatient-visit.yaml").read_text(encoding="utf-8")
STOCK_DATA = yaml.safe_load(STOCK)

yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=15),
                         st.sampled_from(["1d", "-2h", "25:99", "appointment", "visit.checked_in", "send", "wechat",
                                          "per_key", "{{ patient.name }}", "&a", "*a", "!!python/object:os.system",
                                          "<<", "[", "{", "'", '"', "- x", ": x"]))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)


@st.composite
def journey_texts(draw: st.DrawFn) -> str:
    if draw(st.booleans()):  # structural: a value somewhere in the stock journey replaced
        data = yaml.safe_load(STOCK)
        node, path = data, []
        for _ in range(draw(st.integers(1, 4))):
            if isinstance(node, dict) and node:
                key = draw(st.sampled_from(sorted(node, key=str)))
            elif isinstance(node, list) and node:
                key = draw(st.integers(0, len(node) - 1))
            else:
                break
            path.append((node, key))
            node = node[key]
        if path:
            parent, key = path[-1]
            parent[key] = draw(yaml_values)
        return yaml.safe_dump(data, allow_unicode=True)
    text = STOCK  # textual: characters inserted, lines cut or repeated
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "duplicate-line"]))
        if op == "insert":
            text = text[:at] + draw(st.text(alphabet=":-[]{}&*!|>'\"#% \n\tab1", max_size=8)) + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
        else:
            lines = text.splitlines(keepends=True)
            i = draw(st.integers(0, len(lines) - 1))
            text = "".join(lines[:i] + [lines[i]] * 2 + lines[i + 1:])
    return text


@FUZZ
@given(text=journey_texts())
@example(text="a: &a [" + ", ".join(["*a"] * 3) + "]\n" + STOCK)
@example(text="x: " + "[" * 200 + "]" * 200 + "\n" + STOCK)
@example(text=STOCK.replace("steps:", "steps: !!python/object:os.system x\nold_steps:"))
def test_a_journey_file_is_a_journey_or_problems_never_an_exception(text):
    journey, problems = read_journey_text(text, file="fuzz.yaml", known_channels={"wechat", "sms"})
    assert journey is not None or problems
    assert all(isinstance(p, Problem) and p.message for p in problems)
    if journey is not None:
        assert isinstance(journey, Journey)


PIECES = ["{{", "}}", "{%", "%}", "{#", "#}", " if ", " else ", " endif ", " for x in ", " endfor ", " set y = ",
          "patient.name", "patient.age", "patient.has('E11')", "event.start", "event.nps", "anchors.appointment",
          "journey", "now", " | ", "datetime", "date", "time", "default(", "missing=", "(", ")", "[", "]", "'", '"',
          " ~ ", " * ", " ** ", " + ", " % ", "range(", "lipsum(", "99999999", "-1", "0", ", ", ".", "__class__",
          "_x", "x", "{}", "attr(", "format(", "join(", "replace(", "wordwrap(", "*" * 3, "\n", "张三"]
expressions = st.lists(st.sampled_from(PIECES), max_size=14).map("".join)


def _context() -> dict:
    from datetime import date, datetime, timezone

    patient = PatientView(id=1, name="张三", sex="M", birth_date=date(1950, 1, 1), conditions=("E11.9",), tags=(),
                          tz="Asia/Shanghai", language="zh_CN", today=date(2026, 5, 1))
    return expression_context(patient, event={"start": "2026-05-03T09:30:00+08:00", "nps": 3},
                              anchors={"appointment": None}, journey="fuzz",
                              now=datetime(2026, 5, 1, 1, tzinfo=timezone.utc))


@FUZZ
@given(source=expressions)
@example(source="{{ anchors.appointment | datetime }}")
@example(source="{{ '%s' % ('x' * 99999999) }}")
@example(source="{{ range(99999999) | list }}")
def test_templates_and_conditions_compile_evaluate_and_validate_without_raising(source):
    for compile_fn in (compile_template, compile_condition):
        try:
            compile_fn(source)
        except ExpressionError:
            pass
    try:
        outcome = evaluate(source, _context())
        assert isinstance(outcome.value, bool)
    except ExpressionError:
        pass
    data = dict(STOCK_DATA, templates={**STOCK_DATA["templates"], "fuzz": {"title": "t", "body": source}},
                steps=[*STOCK_DATA["steps"], {"id": "fuzz", "stage": "post_visit", "on": "report.ready",
                                              "send": {"template": "fuzz", "via": ["sms"]}, "when": source}])
    journey, problems = read_journey_text(yaml.safe_dump(data, allow_unicode=True))
    if journey is not None:
        assert all(isinstance(p, Problem) for p in validate_journey(journey, known_templates=set(),
                                                                    known_channels={"wechat", "sms"}))


#: every function that reads what a patient wrote; the conversation feature's FAQ matcher goes here
TEXT_PARSERS: list[tuple[str, Callable[[str], object]]] = [
    ("reply intent", reply_intent),
]


@FUZZ
@given(text=st.one_of(st.text(max_size=60), st.sampled_from(["TD", " 退订。", "td!", "R", "T", "取消订阅", "TD TD",
                                                            "\u3000退订\u3000", "ＴＤ", "退订" * 50])),
       words=st.lists(st.text(max_size=6), min_size=1, max_size=4))
def test_inbound_texts_are_read_without_raising(text, words):
    for name, parse in TEXT_PARSERS:
        parse(text)  # must not raise
    intent = reply_intent(text, words)
    assert intent in (None, UNSUBSCRIBE)
    assert (intent == UNSUBSCRIBE) == (bool(normalized(text)) and normalized(text) in {normalized(w) for w in words})

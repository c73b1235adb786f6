"""A condition on a patient's plain fields is answered once per distinct value of them, and each patient still gets
the answer for their own values."""

from __future__ import annotations

from datetime import date

import pytest

from carepath.definition.context import PatientView
from carepath.runtime.dispatch.message_context import MessageContext, patient_fields_read

TODAY = date(2026, 5, 1)


def _patient(born: int, conditions: tuple[str, ...] = (), sex: str = "F", tags: tuple[str, ...] = ()) -> PatientView:
    return PatientView(id=born, name="张三", sex=sex, birth_date=date(born, 1, 1), conditions=conditions, tags=tags,
                       tz="Asia/Shanghai", language="zh", today=TODAY)


def _answer(condition: str, patient: PatientView) -> bool:
    return MessageContext({"patient": lambda: patient}).evaluate(condition).value


@pytest.mark.parametrize("condition, people, answers", [
    ("patient.age is not none and patient.age >= 65", [_patient(1950), _patient(1951), _patient(1990), _patient(1950)],
     [True, True, False, True]),
    ("patient.has('E11') or patient.has('I10')", [_patient(1950, ("E11.9",)), _patient(1950), _patient(1980, ("I10",))],
     [True, False, True]),
    ("patient.age > 60 if patient.sex == 'F' else patient.age > 65",
     [_patient(1963, sex="F"), _patient(1963, sex="M"), _patient(1955, sex="M")], [True, False, True]),
    ("patient.tagged('vip')", [_patient(1950, tags=("vip",)), _patient(1950)], [True, False]),
])
def test_each_patient_gets_the_answer_for_their_own_fields(condition, people, answers):
    assert [_answer(condition, p) for p in people] == answers
    assert [_answer(condition, p) for p in reversed(people)] == list(reversed(answers)), "asked again, in another order"


def test_an_error_is_still_an_error_with_its_reason():
    result = MessageContext({"patient": lambda: _patient(1950)}).evaluate("patient.age ** 100000 > 1")
    assert not result.value and "LimitError" in result.error


@pytest.mark.parametrize("condition", [
    "event.red_flags", "patient.name == '张三'", "lipsum() == ''", "patient.age | string == '76'",
    "patient.in_segment('elderly')", "patient.portrait.clicks_30d > 0", "patient.has(event.code)",
    "patient.conditions.count('E11') > 0", "now.hour > 8 and patient.age > 1", "1 == 1", "patient.age >"])
def test_conditions_decided_by_anything_else_are_evaluated_every_time(condition):
    assert patient_fields_read(condition) is None

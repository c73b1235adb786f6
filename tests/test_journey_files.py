"""Loading journeys from YAML files, with line numbers, and exporting them back."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from carepath.definition.dsl import (after, after_step, anchor, before, enroll_on, every, exit_on, journey, on, send, step, tag,
                          task, template)
from carepath.definition.journey_files import (JourneyFileError, journey_to_yaml, load_journey_file, read_journey_file,
                                    read_journey_text)
from carepath.definition.catalog import EventType, Payload, build_catalogue
from carepath.definition.model import AfterStep, AnchorOffset, Every, Journey, OnEvent, Send, Tag, Task

DATA = Path(__file__).parent / "data" / "journeys"
SPEC = DATA / "outpatient-visit.yaml"
STOCK_TEMPLATES = {"queue_info", "bp_check"}  # provided by template plugins, not by the file


def dsl_twin() -> Journey:
    """The outpatient-visit journey of the YAML fixture, written with the Python DSL."""
    return journey(
        "outpatient-visit", title="门诊就诊",
        enroll=enroll_on("appointment.booked", when="patient.age >= 18"),
        exit=exit_on("appointment.cancelled", "patient.deceased"),
        reentry="per_key", key="appointment_id",
        anchors={
            "appointment": anchor(["appointment.booked", "appointment.rescheduled"], field="start",
                                  cancelled_by=["appointment.cancelled"]),
            "discharge": anchor(["encounter.discharged"]),
        },
        templates=[template("visit_reminder", "{{ patient.name }}您好，您预约了{{ anchors.appointment | datetime }}的门诊。",
                            title="就诊提醒")],
        steps=[
            step("reminder", "pre_visit", before("appointment", "1d", at="18:00"),
                 send("visit_reminder", via=["wechat", "sms"]), category="transactional", missed="skip"),
            step("queue", "in_visit", on("visit.checked_in"), send("queue_info", via=["wechat"]), category="urgent"),
            step("followup", "post_visit", after("appointment", "3d", at="10:00"),
                 task("call_patient", team="nursing", sla="24h"), when="patient.has('E11')"),
            step("nudge", "post_visit", after_step("followup", "48h", unless="replied"), tag("needs_call")),
            step("bp", "post_visit", every("7d", anchor="discharge", at="09:00", count=4),
                 send("bp_check", via=["sms"])),
        ],
    )


def catalogue_with(*names: str) -> dict[str, EventType]:
    """The built-in event types plus payload-less ``names`` (YAML dialect checks use odd type names)."""
    return build_catalogue([EventType(name, "a test event", Payload) for name in names])


def load(text: str, **known) -> tuple[Journey | None, list]:
    return read_journey_text(text, file="journeys/test.yaml", **known)


def test_spec_yaml_loads_into_the_model():
    j = load_journey_file(SPEC, known_templates=STOCK_TEMPLATES, known_channels={"wechat", "sms"})
    assert (j.name, j.title, j.reentry, j.key) == ("outpatient-visit", "门诊就诊", "per_key", "appointment_id")
    assert j.enroll.condition == "patient.age >= 18"
    assert j.anchors["appointment"].field == "start"
    assert j.templates["visit_reminder"].title == "就诊提醒"
    reminder, queue, followup, nudge, bp = j.steps
    assert reminder.trigger == AnchorOffset(kind="before", anchor="appointment", offset="1d", at="18:00")
    assert reminder.action == Send(template="visit_reminder", via=["wechat", "sms"])
    assert reminder.missed.policy == "skip"
    assert queue.trigger == OnEvent(event="visit.checked_in")
    assert followup.condition == "patient.has('E11')"
    assert followup.action == Task(task="call_patient", team="nursing", sla="24h")
    assert nudge.trigger == AfterStep(step="followup", delay="48h", unless="replied")
    assert nudge.action == Tag(add=["needs_call"])
    assert bp.trigger == Every(interval="7d", anchor="discharge", at=time(9), count=4)


def test_dsl_journey_and_its_yaml_twin_share_the_version():
    loaded = load_journey_file(SPEC)
    assert loaded == dsl_twin()
    assert loaded.version == dsl_twin().version


@pytest.mark.parametrize("original", [
    pytest.param(dsl_twin(), id="outpatient-visit"),
    pytest.param(journey(
        "every-feature", description="all the optional fields",
        enroll=enroll_on("encounter.discharged"), exit=exit_on(when="patient.tagged('moved-away')"),
        anchors={"discharge": anchor(["encounter.discharged"])},
        templates=[template("multi", "第一行 {{ patient.name }}\n第二行\n", title="yes")],
        steps=[
            step("vitals", "post_visit", every("1d", anchor="discharge", start="2h", until="30d"),
                 send("multi", via=["sms"]), missed="send", grace="2h", over_cap="drop", description="on: a colon"),
            step("on", "in_visit", on("on", delay="5m"), tag("a", remove=["b"])),
            step("later", "post_visit", after_step("vitals", "0s", outcome="failed"), task("call", sla="90m")),
        ]), id="every-feature"),
])
def test_journey_to_yaml_round_trips(original: Journey):
    text = journey_to_yaml(original)
    again, problems = load(text, known_templates=None, catalogue=catalogue_with("on"))
    assert problems == []
    assert again == original
    assert again.version == original.version
    assert journey_to_yaml(again) == text


def test_export_uses_the_shorthand():
    text = journey_to_yaml(dsl_twin())
    assert "\n  on: visit.checked_in\n" in text
    assert "missed: skip" in text
    assert "at: '18:00'" in text  # quoted, so YAML 1.1 readers do not see 1080 minutes
    assert "kind:" not in text


def test_yaml_1_1_booleans_and_base_60_numbers_stay_strings():
    j, problems = load("""
name: dialect
enroll: {events: [yes]}
steps:
  - id: s
    stage: in_visit
    on: no
    after: {anchor: enrolled, at: 18:00}
    send: {template: t, via: [on]}
""", known_templates={"t"})
    assert problems[0].message.startswith("a step needs exactly one trigger")  # on and after
    j, problems = load("""
name: dialect
enroll: {events: [yes]}
steps:
  - {id: s, stage: in_visit, on: no, send: {template: t, via: [off]}}
  - {id: t, stage: in_visit, after: {anchor: enrolled, at: 18:00}, tag: x}
""", known_templates={"t"}, catalogue=catalogue_with("yes", "no"))
    assert problems == []
    assert j.enroll.events == ["yes"]
    assert j.steps[0].trigger.event == "no"
    assert j.steps[0].action.via == ["off"]
    assert j.steps[1].trigger.at == time(18)


def test_shorthand_and_long_forms_are_equal():
    short, _ = load("""
name: forms
enroll: {events: [a]}
steps:
  - {id: s, stage: in_visit, on: a, condition: "true", tag: x, missed: skip}
""")
    long, _ = load("""
name: forms
enroll: {events: [a]}
steps:
  - {id: s, stage: in_visit, on: {event: a, delay: 0s}, when: "true", tag: {add: [x]}, missed: {policy: skip}}
""")
    assert short is not None and short == long


def test_broken_yaml_is_a_problem_with_a_line_not_an_exception():
    journey_, problems = read_journey_file(DATA / "broken-syntax.yaml")
    assert journey_ is None
    [problem] = problems
    assert problem.line == 8
    assert problem.file.endswith("broken-syntax.yaml")
    assert "invalid YAML" in problem.message and "line 7" in problem.message
    with pytest.raises(JourneyFileError) as raised:
        load_journey_file(DATA / "broken-syntax.yaml")
    assert raised.value.problems == problems
    assert "broken-syntax.yaml:8: invalid YAML" in str(raised.value)


@pytest.mark.parametrize("text, message", [
    ("", "the file is empty"),
    ("- just\n- a list\n", "must be a mapping"),
    ("name: a\nname: b\nenroll: {events: [x]}\nsteps: []\n", "duplicate key 'name' (first at line 1)"),
    ("a: !!python/object:os.system x\n", "could not determine a constructor"),
    ("a: &x [*x]\nname: a\n", "missing required field 'enroll'"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 64 levels"),  # RecursionError before
])
def test_malformed_documents_are_problems(text: str, message: str):
    j, problems = load(text)
    assert j is None
    assert any(message in p.message for p in problems), problems


def test_unreadable_file_is_a_problem(tmp_path: Path):
    j, problems = read_journey_file(tmp_path / "missing.yaml")
    assert j is None and "cannot read" in problems[0].message


def test_each_bad_step_is_reported_with_its_line():
    j, problems = read_journey_file(DATA / "bad-fields.yaml")
    assert j is None
    rendered = [str(p) for p in problems]
    assert rendered == [
        "%s:5: step 'reminder', field steps[0].stage: Input should be 'pre_visit', 'in_visit' or 'post_visit' "
        "(got 'previsit')" % problems[0].file,
        "%s:6: step 'reminder', field steps[0].before.offset: not a duration: '1x' (write e.g. 30m, 2h30m, 1d or 1w)"
        % problems[0].file,
        "%s:12: step 'two-triggers', field steps[2]: a step needs exactly one trigger among on, before, after, "
        "every, after_step, idle, calendar, reading; found on, after" % problems[0].file,
        "%s:17: step 'two-triggers', field steps[2].colour: unknown step field 'colour'" % problems[0].file,
    ]
    assert not any("pydantic" in r or "http" in r for r in rendered)


def test_pydantic_errors_point_into_the_yaml():
    j, problems = load("""
name: Bad Name
enroll: {events: []}
steps:
  - id: s
    stage: in_visit
    every: {at: "09:00"}
    send: {template: t}
  - id: t
    stage: in_visit
    on: {event: a, delay: soon}
    task: {task: call, sla: 1d, team: [x]}
    missed: [send]
""")
    found = {(p.field, p.line) for p in problems}
    assert ("name", 2) in found
    assert ("enroll.events", 3) in found
    assert ("steps[0].every", 7) in found  # every needs a rhythm
    assert ("steps[0].send.via", 8) in found  # missing: line of the parent
    assert ("steps[1].on.delay", 11) in found
    assert ("steps[1].task.team", 12) in found
    assert ("steps[1].missed", 13) in found
    assert any(p.message == "every takes an interval or an rrule (one of them)" for p in problems)
    assert any(p.message == "missing required field 'via'" for p in problems)


def test_templates_accept_a_plain_body():
    j, problems = load("""
name: tpl
enroll: {events: [appointment.booked]}
templates:
  hello: "Hello {{ patient.name }}"
steps:
  - {id: s, stage: in_visit, on: visit.checked_in, send: {template: hello, via: [sms]}}
""")
    assert problems == []
    assert j.templates["hello"].body == "Hello {{ patient.name }}"


def test_semantic_problems_come_with_the_parse():
    j, problems = read_journey_file(DATA / "bad-semantics.yaml", known_channels={"wechat", "sms"})
    assert j is not None  # it parsed; the problems are semantic
    assert [p.line for p in problems] == sorted(p.line for p in problems)
    assert len(problems) == 9


def test_unknown_step_fields_are_named_with_a_suggestion():
    j, problems = load("""
name: extra
enroll: {events: [a]}
steps:
  - {id: s, stage: in_visit, on: a, tag: x, trigger: {kind: on}, sen: {template: t}}
""")
    assert j is None
    assert [(p.field, p.message) for p in problems] == [
        ("steps[0].trigger", "unknown step field 'trigger'"),
        ("steps[0].sen", "unknown step field 'sen'; did you mean 'send'?"),
    ]

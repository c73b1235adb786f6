"""The validator catches what would fail at run time: names, payload fields, event types, limits."""

from __future__ import annotations

import time  # process_time: CPU spent here, not the load of other processes on a shared machine

import pytest

from carepath.definition.dsl import enroll_on, journey, on, send, step, template
from carepath.definition.journey_files import read_journey_file, read_journey_text
from carepath.definition.validation import Problem, validate_journey
from carepath.journeys import HERE
from carepath.plugins.contracts import Channel

FILE = "journeys/reach.yaml"
BASE = """\
name: reach
enroll: {events: [appointment.booked]}
exit: {events: [appointment.cancelled]}
key: appointment_id
anchors:
  appointment: {set_by: [appointment.booked, appointment.rescheduled], field: start}
  visit_end: {set_by: [encounter.discharged]}
templates:
  guide: {title: 就诊准备, body: "{{ patient.surname }}您好，请到{{ event.department | default('门诊') }}候诊。"}
  report: "您的{{ event.report | default('检查') }}报告已出。"
steps:
  - id: guide
    stage: pre_visit
    before: {anchor: appointment, offset: 1d, at: "18:00"}
    send: {template: guide, via: [sms]}
  - id: report
    stage: in_visit
    on: report.ready
    send: {template: report, via: [sms]}
  - id: recheck
    stage: post_visit
    every: {interval: 7d, anchor: visit_end, count: 4}
    send: {template: guide, via: [sms]}
    when: "patient.has('E11')"
"""


def check(text: str) -> list[Problem]:
    j, problems = read_journey_text(text, file=FILE, known_templates=set(), known_channels={"sms"})
    return problems


def test_the_base_journey_is_valid():
    assert check(BASE) == []


@pytest.mark.parametrize("old, new, step_id, field, line, message", [
    pytest.param("您的{{", "{{ pateint.surname }}：您的{{", "report",
                 "templates.report.body", 10, "unknown name 'pateint'; did you mean 'patient'?", id="misspelt-root"),
    pytest.param("patient.has('E11')", "patient.diabetic", "recheck", "steps[2].when", 24,
                 "patient has no field 'diabetic'", id="no-such-patient-field"),
    pytest.param("patient.has('E11')", "patient.nme == 'x'", "recheck", "steps[2].when", 24,
                 "patient has no field 'nme'; did you mean 'name'?", id="misspelt-patient-field"),
    pytest.param("appointment.booked, appointment.rescheduled]", "appointment.booked, appointment.reschedule]", None,
                 "anchors.appointment.set_by[1]", 6,
                 "unknown event type 'appointment.reschedule'; did you mean 'appointment.rescheduled'?",
                 id="misspelt-set-by"),
    pytest.param("on: report.ready", "on: report.redy", "report", "steps[1].on.event", 18,
                 "unknown event type 'report.redy'; did you mean 'report.ready'?", id="misspelt-on"),
    pytest.param("exit: {events: [appointment.cancelled]}", "exit: {events: [appointment.canceled]}", None,
                 "exit.events[0]", 3, "did you mean 'appointment.cancelled'?", id="misspelt-exit"),
    pytest.param("count: 4}", "count: 4, until: 30d}", "recheck", "steps[2].every.until", 22,
                 "every takes count or until, not both", id="count-and-until"),
    pytest.param("报告已出。", "报告已出。{% if event.abnormal %}请尽快复诊。{% endif %}", "report", "templates.report.body", 10,
                 "payload field 'abnormal' is optional in report.ready, which reaches step 'report' (on report.ready): "
                 "a send fails when it is missing; write `event.abnormal | default(false)`", id="optional-field"),
    pytest.param("{{ event.report | default('检查') }}", "{{ event.reprot }}", "report", "templates.report.body", 10,
                 "whose payload has no field 'reprot'; did you mean 'report'?", id="unknown-payload-field"),
    pytest.param("报告已出。", "报告已出，就诊{{ anchors.apointment }}", "report", "templates.report.body", 10,
                 "unknown anchor 'apointment'; did you mean 'appointment'?", id="unknown-anchor"),
    pytest.param("报告已出。", "报告已出，出院{{ anchors.visit_end }}", "report", "templates.report.body", 10,
                 "anchor 'visit_end' may not be set yet", id="anchor-not-yet-set"),
    pytest.param('at: "18:00"}', 'at: "18:00"}\n    when: "anchors.visit_end is none"', "guide", "steps[0].when", 15,
                 "`anchors.visit_end is none` is false while anchor 'visit_end' is not set, as it may not be "
                 "when step 'guide' (enrolled by appointment.booked) runs", id="anchor-is-none"),
    pytest.param("key: appointment_id", "key: appointmentid", None, "key", 4,
                 "appointment.booked has no payload field 'appointmentid'; did you mean 'appointment_id'?",
                 id="misspelt-key"),
    pytest.param("patient.has('E11')", "patient.has('E11'", "recheck", "steps[2].when", 24,
                 "condition syntax error: unexpected end of expression, expected ')' (line 1, column 18) "
                 "at the end of \"patient.has('E11'\"", id="condition-syntax-names-what-was-written"),
    pytest.param("patient.has('E11')", "patient.age => 65", "recheck", "steps[2].when", 24,
                 "(line 1, column 13) at \"=> 65\"", id="condition-syntax-points-at-the-token"),
])
def test_each_run_time_failure_is_reported_with_file_line_and_step(old, new, step_id, field, line, message):
    assert old in BASE
    problems = check(BASE.replace(old, new, 1))
    assert len(problems) == 1, problems
    [problem] = problems
    assert (problem.file, problem.line, problem.step, problem.field) == (FILE, line, step_id, field)
    assert message in problem.message
    assert str(problem).startswith(f"{FILE}:{line}: ")


def test_a_template_is_checked_for_every_step_that_sends_it():
    problems = check(BASE.replace("{{ event.department | default('门诊') }}", "{{ event.department }}"))
    assert [(p.step, p.field, p.line) for p in problems] == [
        ("guide", "templates.guide.body", 9), ("recheck", "templates.guide.body", 9)]
    assert all("write `event.department | default('')`" in p.message for p in problems)


def test_every_problem_of_a_trigger_is_reported():
    problems = check(BASE.replace('before: {anchor: appointment, offset: 1d, at: "18:00"}',
                                  'before: {anchor: apointment, offset: 400d, at: "25:00"}'))
    assert [(p.step, p.line, p.field) for p in problems] == [
        ("guide", 14, "steps[0].before.at"), ("guide", 14, "steps[0].before.offset"),
        ("guide", 14, "steps[0].before.anchor")]
    assert "did you mean 'appointment'?" in problems[2].message


def test_private_and_dunder_attributes_are_refused():
    problems = check(BASE.replace("您的{{ event.report | default('检查') }}", "{{ ''.__class__.__mro__ }}{{ event['_secret'] }}"
                                  "{{ [patient]|map(attribute='__dict__')|list }}"))
    assert {p.message.split("'")[1] for p in problems} == {"__class__", "__mro__", "_secret", "__dict__"}
    assert all("may not reach for private or dunder attributes" in p.message and p.line == 10 for p in problems)


def test_guards_make_optional_values_safe():
    guarded = ("{{ event.abnormal | default(false) }}{% if event.queue_no is defined %}{{ event.queue_no }}{% endif %}"
               "{{ event.get('doctor') }}{{ anchors.visit_end | default(none) }}")
    assert check(BASE.replace("您的{{ event.report | default('检查') }}", guarded)) == []
    # a default guards only the place it is written
    [problem] = check(BASE.replace("您的{{ event.report | default('检查') }}", "{{ event.abnormal | default(false) }}"
                                   "{% if event.abnormal %}!{% endif %}"))
    assert "write `event.abnormal | default(false)`" in problem.message


def test_enrollment_conditions_see_the_enrolling_payload_and_no_anchors():
    text = BASE.replace("enroll: {events: [appointment.booked]}",
                        'enroll: {events: [appointment.booked], condition: "event.fasting and anchors.appointment"}')
    messages = [p.message for p in check(text)]
    assert any("write `event.fasting | default(false)`" in m for m in messages)
    assert any("the enrollment condition sees no anchors" in m for m in messages)


def test_multi_line_templates_name_the_line_inside_the_template():
    text = BASE.replace('report: "您的{{ event.report | default(\'检查\') }}报告已出。"',
                        'report: "第一行\\n{{ patient.nickname }}"')
    [problem] = check(text)
    assert problem.message.startswith("line 2 of the template: patient has no field 'nickname'")


HOSTILE = [
    "{{ 'a' * 10**9 }}",
    "{{ 10 ** (10 ** 8) }}",
    "{{ 'a'|center(10**9) }}",
    "{{ lipsum(n=10**6) }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "{{ [1, 2] * 10**9 }}",
    "{{ 'a'.ljust(10**9) }}",
    "{{ '%*s'|format(10**9, 'a') }}",
    "{{ 'a\\nb'|indent(10**9) }}",
    "{{ 'a b'|wordwrap(1, wrapstring='x' * 99999) }}",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_expressions_are_reported_fast_at_validation(hostile):
    started = time.process_time()
    problems = check(BASE.replace("您的{{ event.report | default('检查') }}", hostile.replace('"', '\\"')))
    assert time.process_time() - started < 1.0
    assert problems and all("goes past a limit" in p.message for p in problems), problems
    assert {(p.file, p.line, p.field) for p in problems} == {(FILE, 10, "templates.report.body")}


def test_a_limit_problem_quotes_the_expression_the_author_wrote():
    [problem] = check(BASE.replace("您的{{ event.report | default('检查') }}",
                                   "{{ patient.name }}{{ 'a' * 10**9 }}{{ event.report_id | default('') }}"))
    assert problem.message == ("\"{{ 'a' * 10**9 }}\" goes past a limit: repeating a str would be 1000000000 long "
                               "(limit 100000)")


def test_hostile_condition_is_reported_fast():
    started = time.process_time()
    [problem] = check(BASE.replace("patient.has('E11')", "'a' * 10**9 == patient.name"))
    assert time.process_time() - started < 1.0
    assert problem.step == "recheck" and "repeating a str would be 1000000000 long" in problem.message


def test_the_stock_journey_passes_the_stricter_validator():
    j, problems = read_journey_file(HERE / "outpatient-visit.yaml", known_channels={"wechat", "sms"})
    assert j is not None and problems == []


class MappedSms(Channel):
    """An SMS channel that can send only the provider templates mapped to it."""

    type_name = "mapped-sms"
    address_kind = "phone"

    def unmapped_templates(self, names):
        return [n for n in names if n != "t"]


def test_templates_a_configured_channel_cannot_send_are_reported():
    j = journey("dsl", enroll=enroll_on("appointment.booked"), templates=[template("t", "好"), template("u", "好")],
                steps=[step("s", "in_visit", on("visit.checked_in"), send("t", via=["sms"])),
                       step("v", "in_visit", on("visit.checked_in"), send("u", via=["wechat", "sms"]))])
    problems = validate_journey(j, known_templates=set(), known_channels={"sms", "wechat"},
                                channels={"sms": MappedSms("sms")})
    assert [str(p) for p in problems] == [
        "step 'v', field steps[1].send.via[1]: channel 'sms' cannot send template 'u': map it to a provider "
        "template under [connectors.sms.templates.u] in carepath.toml"]


def test_templates_from_plugins_are_checked_against_the_steps_that_send_them():
    text = BASE.replace("send: {template: report, via: [sms]}", "send: {template: acme_report, via: [sms]}")
    acme = template("acme_report", "{{ event.report_id }}{{ event.abnormal | default(false) }}",
                    title="{{ patient.nme }}")
    provided = {"acme_report": acme}
    j, problems = read_journey_text(text, file=FILE, known_templates=provided, known_channels={"sms"})
    assert [(p.line, p.step, p.field) for p in problems] == [(19, "report", "steps[1].send.template")] * 2
    assert problems[0].message.startswith("plugin template 'acme_report' title: patient has no field 'nme'; did you "
                                          "mean 'name'?")
    assert problems[1].message.startswith("plugin template 'acme_report' body: payload field 'report_id' is optional")


def test_cli_reports_run_time_failures_with_file_line_and_step(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from carepath.cli import journeys as cli_journeys

    monkeypatch.setattr(cli_journeys, "known_template_names", lambda: set())
    monkeypatch.setattr(cli_journeys, "_channels_to_check", lambda given, config: ({"sms"}, {"sms": MappedSms("sms")}))
    path = tmp_path / "reach.yaml"
    path.write_text(BASE.replace("您的{{ event.report | default('检查') }}", "{{ pateint.surname }}"), encoding="utf-8")
    result = CliRunner().invoke(cli_journeys.app, ["validate", str(path)])
    assert result.exit_code == 1 and "4 problem(s) found" in result.output  # the name, 3 steps on sms
    assert (f"{path}:10: step 'report', field templates.report.body: unknown name 'pateint'; did you mean "
            "'patient'?") in result.output
    assert f"{path}:15: step 'guide', field steps[0].send.via[0]: channel 'sms' cannot send template 'guide'" \
        in result.output


def test_a_survey_invitation_sees_the_survey_link():
    text = BASE.replace("send: {template: report, via: [sms]}",
                        "survey: {survey: outpatient-satisfaction, template: invite, via: [sms]}")
    text = text.replace('  report: "', '  invite: "请评价：{{ survey.link }} {{ survey.lnk }}"\n  report: "', 1)
    problems = check(text)
    assert [(p.step, p.field, p.line) for p in problems] == [("report", "templates.invite.body", 10)]
    assert problems[0].message.startswith("survey has no field 'lnk'; did you mean 'link'?")
    # a template no survey step sends has no survey to show
    elsewhere = check(BASE.replace("您的{{ event.report | default('检查') }}", "{{ survey.link }}"))
    assert [p.message.split(";")[0] for p in elsewhere] == ["unknown name 'survey'"]


def guide_when(condition: str) -> str:
    """The base journey with ``condition`` on its guide step (before the appointment: visit_end may be unset)."""
    return BASE.replace('at: "18:00"}', f'at: "18:00"}}\n    when: "{condition}"', 1)


def test_an_is_none_test_on_an_anchor_not_yet_set_is_explained_with_the_fix():
    """``anchors.X is none`` is false, not an error, while X was never set: the validator says so and the test it
    suggests is true then, as it is for an anchor that was set and cancelled."""
    from carepath.definition.expressions import evaluate

    [problem] = check(guide_when("anchors.visit_end is none"))
    assert (problem.step, problem.line) == ("guide", 15)
    assert "write `(anchors.visit_end | default(none)) is none`" in problem.message
    assert evaluate("anchors.visit_end is none", {"anchors": {}}).value is False  # what the author did not mean
    for anchors in ({}, {"visit_end": None}):
        assert evaluate("(anchors.visit_end | default(none)) is none", {"anchors": anchors}).value is True
    assert check(guide_when("(anchors.visit_end | default(none)) is none")) == []
    assert check(guide_when("anchors.visit_end is not defined")) == []
    assert check(guide_when("anchors.appointment is not none")) == []  # set by the enrolling event: no hint


def test_cli_names_the_file_and_step_of_an_is_none_test_on_an_unset_anchor(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from carepath.cli import journeys as cli_journeys

    monkeypatch.setattr(cli_journeys, "known_template_names", lambda: set())
    monkeypatch.setattr(cli_journeys, "_channels_to_check", lambda given, config: ({"sms"}, {}))
    path = tmp_path / "reach.yaml"
    path.write_text(guide_when("anchors.visit_end is not none"), encoding="utf-8")
    result = CliRunner().invoke(cli_journeys.app, ["validate", str(path)])
    assert result.exit_code == 1 and "1 problem(s) found" in result.output
    assert (f"{path}:15: step 'guide', field steps[0].when: `anchors.visit_end is none` is false while anchor "
            "'visit_end' is not set") in result.output

"""Semantic checks on journeys, and the ``carepath journeys validate`` command."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from carepath.cli import journeys as cli_journeys
from carepath.definition.dsl import after, after_step, anchor, before, enroll_on, every, journey, on, send, step, tag
from carepath.definition.journey_files import read_journey_text
from carepath.definition.validation import Problem, validate_journey

DATA = Path(__file__).parent / "data" / "journeys"
FILE = "journeys/check.yaml"
CHANNELS = {"wechat", "sms"}

BASE = """\
name: check
enroll: {events: [appointment.booked], condition: "patient.age >= 18"}
anchors:
  appointment: {set_by: [appointment.booked], field: start}
templates:
  reminder_text: {title: 提醒, body: "{{ patient.name }}您好"}
steps:
  - id: reminder
    stage: pre_visit
    before: {anchor: appointment, offset: 1d, at: "18:00"}
    send: {template: reminder_text, via: [wechat, sms]}
    missed: {policy: send, grace: 2h}
  - id: followup
    stage: post_visit
    after_step: {step: reminder, delay: 48h, unless: replied}
    when: "patient.has('E11')"
    tag: needs_call
  - id: vitals
    stage: post_visit
    every: {interval: 7d, anchor: appointment, count: 4}
    send: {template: reminder_text, via: [sms]}
"""


def check(text: str, **known) -> list[Problem]:
    """Problems of a YAML journey, which must parse."""
    known = {"known_templates": set(), "known_channels": CHANNELS, **known}
    j, problems = read_journey_text(text, file=FILE, **known)
    assert j is not None, problems
    return problems


def only_problem(old: str, new: str, **known) -> Problem:
    assert old in BASE
    problems = check(BASE.replace(old, new, 1), **known)
    assert len(problems) == 1, problems
    return problems[0]


def test_the_base_journey_is_valid():
    assert check(BASE) == []


@pytest.mark.parametrize("old, new, step_id, field, line, message", [
    pytest.param("template: reminder_text, via: [wechat", "template: reminder_txt, via: [wechat", "reminder",
                 "steps[0].send.template", 11, "unknown template 'reminder_txt'; did you mean 'reminder_text'?",
                 id="unknown-template"),
    pytest.param("via: [wechat, sms]", "via: [wechat, pigeon]", "reminder", "steps[0].send.via[1]", 11,
                 "unknown channel 'pigeon' (known channels: sms, wechat)", id="unknown-channel"),
    pytest.param("anchor: appointment, count", "anchor: discharge, count", "vitals", "steps[2].every.anchor", 20,
                 "no event sets anchor 'discharge'", id="anchor-never-set"),
    pytest.param("patient.has('E11')", "patient.has('E11') and", "followup", "steps[1].when", 16,
                 "condition syntax error: unexpected 'end of expression' (line 1, column 23)",
                 id="condition-syntax"),
    pytest.param("offset: 1d", "offset: 367d", "reminder", "steps[0].before.offset", 10,
                 "367d is out of range: must be between 0s and 366d", id="offset-too-far"),
    pytest.param("offset: 1d", "offset: -1d", "reminder", "steps[0].before.offset", 10,
                 "a negative 'before' offset is an 'after'", id="negative-before"),
    pytest.param("delay: 48h", "delay: 400d", "followup", "steps[1].after_step.delay", 15,
                 "400d is out of range", id="delay-too-long"),
    pytest.param("interval: 7d", "interval: 30m", "vitals", "steps[2].every.interval", 20,
                 "30m is out of range: must be between 1h and 366d", id="interval-too-short"),
    pytest.param("count: 4", "count: 1001", "vitals", "steps[2].every.count", 20,
                 "count 1001 is out of range: must be between 1 and 1000", id="count-too-big"),
    pytest.param("count: 4", "count: 0", "vitals", "steps[2].every.count", 20,
                 "count 0 is out of range", id="count-zero"),
    pytest.param("count: 4", "until: 1096d", "vitals", "steps[2].every.until", 20,
                 "1096d is out of range: must be between 0s and 1095d", id="until-too-far"),
    pytest.param("grace: 2h", "grace: 31d", "reminder", "steps[0].missed.grace", 12,
                 "31d is out of range: must be between 0s and 30d", id="grace-too-long"),
    pytest.param("- id: vitals", "- id: reminder", "reminder", "steps[2].id", 18,
                 "duplicate step id 'reminder'", id="duplicate-step-id"),
    pytest.param("step: reminder", "step: remindr", "followup", "steps[1].after_step.step", 15,
                 "after_step names unknown step 'remindr'; did you mean 'reminder'?", id="after-unknown-step"),
    pytest.param("step: reminder", "step: followup", "followup", "steps[1].after_step.step", 15,
                 "after_step names the step itself", id="after-itself"),
])
def test_each_bad_input_names_file_step_field_and_line(old, new, step_id, field, line, message):
    problem = only_problem(old, new)
    assert (problem.file, problem.step, problem.field, problem.line) == (FILE, step_id, field, line)
    assert message in problem.message
    assert str(problem).startswith(f"{FILE}:{line}: step '{step_id}', field {field}: ")


@pytest.mark.parametrize("old, new, field, line, message", [
    pytest.param('condition: "patient.age >= 18"', 'condition: "patient.age >= "', "enroll.condition", 2,
                 "condition syntax error: unexpected 'end of expression' (line 1, column 16)", id="enroll-condition"),
    pytest.param("enroll: {", 'exit: {condition: "a ++ b)"}\nenroll: {', "exit.condition", 2,
                 "condition syntax error: unexpected ')' (line 1, column 7)", id="exit-condition"),
    pytest.param('body: "{{ patient.name }}您好"', 'body: "{{ patient.name }您好"', "templates.reminder_text.body", 6,
                 "template syntax error", id="template-body"),
    pytest.param("title: 提醒", 'title: "{% if %}"', "templates.reminder_text.title", 6,
                 "template syntax error", id="template-title"),
    pytest.param("name: check", "name: check\nreentry: per_key", "reentry", 2,
                 "reentry 'per_key' needs a key", id="per-key-without-key"),
])
def test_journey_level_problems(old, new, field, line, message):
    problem = only_problem(old, new)
    assert (problem.file, problem.step, problem.field, problem.line) == (FILE, None, field, line)
    assert message in problem.message


def test_anchor_with_empty_set_by_is_never_set():
    problems = check(BASE.replace("appointment: {set_by: [appointment.booked]", "appointment: {set_by: []"))
    assert [(p.step, p.field, p.line) for p in problems] == [
        ("reminder", "steps[0].before.anchor", 10), ("vitals", "steps[2].every.anchor", 20)]
    assert all(p.message == "no event sets anchor 'appointment': its set_by list is empty" for p in problems)


def test_multi_line_template_error_gives_its_line_and_column():
    problem = only_problem('body: "{{ patient.name }}您好"', 'body: "第一行\\n{{ patient.name | }}"')
    assert "(line 2, column" in problem.message


def test_per_key_with_key_and_key_without_per_key_are_fine():
    assert check(BASE.replace("name: check", "name: check\nreentry: per_key\nkey: appointment_id")) == []
    assert check(BASE.replace("name: check", "name: check\nkey: appointment_id")) == []


def test_condition_key_is_reported_as_written():
    problem = only_problem("when: \"patient.has('E11')\"", 'condition: "patient.has("')
    assert problem.field == "steps[1].condition"


def test_none_skips_the_template_and_channel_checks():
    text = BASE.replace("reminder_text, via: [wechat", "elsewhere, via: [pigeon")
    assert check(text, known_templates=None, known_channels=None) == []
    assert len(check(text, known_templates={"elsewhere"})) == 1
    assert len(check(text, known_channels=CHANNELS | {"pigeon"})) == 1


def test_all_problems_are_reported_at_once():
    problems = check(BASE.replace("offset: 1d", "offset: 400d").replace("- id: vitals", "- id: reminder")
                     .replace("count: 4", "count: 0"))
    assert len(problems) == 3


def test_python_journeys_are_validated_without_lines():
    j = journey("dsl", enroll=enroll_on("appointment.booked"), steps=[
        step("s", "in_visit", on("visit.checked_in"), send("t", via=["fax"])),
        step("u", "post_visit", after("surgery", "1d"), tag("x")),
        step("v", "post_visit", every("1d", count=2), tag("y")),  # the built-in 'enrolled' anchor
        step("w", "pre_visit", before("visit", "-1h"), tag("z")),
    ], anchors={"visit": anchor(["appointment.booked"])})
    problems = validate_journey(j, known_templates={"t"}, known_channels={"sms"})
    assert [str(p) for p in problems] == [
        "step 's', field steps[0].send.via[0]: unknown channel 'fax' (known channels: sms)",
        "step 'u', field steps[1].after.anchor: no event sets anchor 'surgery': declare it under anchors with "
        "set_by events",
        "step 'w', field steps[3].before.offset: -1h is out of range: must be between 0s and 366d "
        "(a negative 'before' offset is an 'after')",
    ]


def test_problem_str_omits_missing_parts():
    assert str(Problem("boom")) == "boom"
    assert str(Problem("boom", file="x.yaml")) == "x.yaml: boom"
    assert str(Problem("boom", file="x.yaml", line=3, field="name")) == "x.yaml:3: field name: boom"
    assert str(Problem("boom", step="s")) == "step 's': boom"


def test_after_step_survives_the_dsl():
    j = journey("dsl", enroll=enroll_on("appointment.booked"), steps=[
        step("s", "in_visit", on("visit.checked_in"), tag("x")),
        step("t", "in_visit", after_step("s", "1h"), tag("y")),
    ])
    assert validate_journey(j, known_templates=set(), known_channels=None) == []


# ------------------------------------------------------------------------ CLI


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """The installation's templates (without loading plugins), in a folder without carepath.toml: the
    channels are the installed channel types (wechat, console, sms ...)."""
    monkeypatch.setattr(cli_journeys, "known_template_names", lambda: {"queue_info", "bp_check"})
    monkeypatch.delenv("CAREPATH_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def run(*args: str):
    return CliRunner().invoke(cli_journeys.app, ["validate", *map(str, args)])


def test_cli_summarises_a_valid_file(registry):
    result = run(DATA / "outpatient-visit.yaml")
    assert result.exit_code == 0, result.output
    assert "outpatient-visit (门诊就诊) version " in result.output
    assert "5 steps (pre_visit 1, in_visit 1, post_visit 3)" in result.output
    assert "anchors: appointment, discharge; channels: sms, wechat" in result.output
    assert "1 journey file(s) valid" in result.output


def test_cli_reports_every_problem_and_exits_1(registry):
    result = run(DATA / "bad-semantics.yaml")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if "bad-semantics.yaml:" in line]
    assert len(lines) == 9
    assert "bad-semantics.yaml:12: step 'reminder', field steps[0].send.via[1]: unknown channel 'pigeon'" \
        in result.output
    assert "9 problem(s) found" in result.output


def test_cli_channel_option_replaces_the_installed_channels(registry):
    result = run(DATA / "outpatient-visit.yaml", "--channel", "wechat")
    assert result.exit_code == 1
    assert "unknown channel 'sms' (known channels: wechat)" in result.output


def test_cli_walks_folders_and_reports_missing_paths(registry, tmp_path: Path):
    (tmp_path / "a.yml").write_text((DATA / "outpatient-visit.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a journey")
    assert run(tmp_path).exit_code == 0
    result = run(tmp_path, tmp_path / "missing.yaml", DATA / "broken-syntax.yaml")
    assert result.exit_code == 1
    assert "missing.yaml: no such file or folder" in result.output
    assert "broken-syntax.yaml:8: invalid YAML" in result.output
    assert "a.yml: outpatient-visit" in result.output


CANCEL_NOTICE = """\
name: visit
enroll: {events: [appointment.booked]}
exit: {events: [appointment.cancelled]}
anchors:
  appointment: {set_by: [appointment.booked], field: start, cancelled_by: [appointment.cancelled]}
templates:
  cancelled: {title: 已取消, body: "CANCELLED {{ anchors.appointment | datetime }}"}
steps:
  - id: notice
    stage: pre_visit
    on: appointment.cancelled
    send: {template: cancelled, via: [sms]}
    category: transactional
"""


def test_a_step_triggered_by_the_event_that_clears_its_anchor_is_reported():
    [problem] = check(CANCEL_NOTICE)
    assert (problem.step, problem.field, problem.line) == ("notice", "templates.cancelled.body", 7)
    assert problem.message.startswith("anchor 'appointment' is cleared by appointment.cancelled, the event that "
                                      "triggers step 'notice' (on appointment.cancelled): it has no value")
    # the fixes the message offers are accepted
    assert check(CANCEL_NOTICE.replace("anchors.appointment | datetime", "event.start | datetime(missing='')")) == []
    assert check(CANCEL_NOTICE.replace("anchors.appointment | datetime",
                                       "anchors.appointment | datetime(missing='原定时间')")) == []
    # a step on another event still reads the anchor freely
    assert check(CANCEL_NOTICE.replace("on: appointment.cancelled", "on: appointment.booked")) == []

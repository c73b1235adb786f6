"""Issue 19.7: journey files with check-ins and readings are checked, each problem named with its place."""

from __future__ import annotations

from carepath.definition.journey_files import read_journey_text

HEAD = """
name: camp
enroll: {events: [visit.checked_in]}
templates:
  prompt: "请打卡"
  nudge: "还没打卡"
steps:
"""


def problems(steps: str) -> list[str]:
    journey, found = read_journey_text(HEAD + steps, known_channels={"sms"})
    return [str(p) for p in found]


def test_a_threshold_without_a_unit_or_with_a_wrong_one_is_named():
    found = problems("""
  - id: bp
    stage: post_visit
    reading: {any: ["systolic_bp >= 140"], count: 3, within: 7d}
    task: {task: call_patient}
  - id: sugar
    stage: post_visit
    reading: {any: [{measure: glucose, op: "<", value: 3.9, unit: mmHg}]}
    task: {task: call_patient}
  - id: nonsense
    stage: post_visit
    reading: {any: ["cholesterol > 5 mmol/L"]}
    task: {task: call_patient}
""")
    text = "\n".join(found)
    assert "threshold 'systolic_bp >= 140' has no unit: write e.g. 'systolic_bp >= 140 mmHg'" in text
    assert "unit 'mmHg' is not a unit of glucose (use mmol/L, mg/dL)" in text
    assert "unknown measure 'cholesterol'" in text
    assert "step 'bp', field steps[0].reading.any" in text and "step 'sugar'" in text and "step 'nonsense'" in text


def test_readings_must_reach_a_person_and_windows_are_bounded():
    found = problems("""
  - id: bp
    stage: post_visit
    reading: {any: ["systolic_bp >= 140 mmHg"], count: 3, within: 200d}
    send: {template: nudge, via: [sms]}
""")
    text = "\n".join(found)
    assert "must reach a person: give one reading step a task action" in text
    assert "reading window 200d is out of range" in text


def test_a_nudge_unless_checked_in_must_follow_a_check_in_and_check_ins_need_a_way_to_answer():
    found = problems("""
  - id: hello
    stage: post_visit
    every: {interval: 1d, at: "08:00"}
    send: {template: prompt, via: [sms]}
  - id: nudge
    stage: post_visit
    after_step: {step: hello, delay: 4h, unless: checked_in}
    send: {template: nudge, via: [sms]}
  - id: plain
    stage: post_visit
    every: {interval: 1d, at: "09:00"}
    checkin: {checkin: plain, keywords: ["TD"], template: prompt, via: [sms]}
""")
    text = "\n".join(found)
    assert "step 'nudge', field steps[1].after_step.unless: unless: checked_in follows a check-in prompt, and " \
           "step 'hello' is no checkin step" in text
    assert "step 'plain', field steps[2].checkin.keywords: check-in keyword 'TD' cannot be used" in text
    unknown = "\n".join(problems("""
  - id: weigh
    stage: post_visit
    every: {interval: 1d, at: "08:00"}
    checkin: {checkin: weight, measure: height, template: prompt, via: [sms]}
"""))
    assert "field steps[0].checkin.measure: unknown measure 'height'" in unknown


def test_a_good_camp_has_no_problems():
    assert problems("""
  - id: glucose
    stage: post_visit
    every: {interval: 1d, at: "07:30"}
    checkin: {checkin: glucose, measure: glucose, template: prompt, via: [sms]}
  - id: nudge
    stage: post_visit
    after_step: {step: glucose, delay: 4h, unless: checked_in}
    send: {template: nudge, via: [sms]}
  - id: low
    stage: post_visit
    category: urgent
    reading: {any: ["glucose < 3.9 mmol/L"]}
    task: {task: call_patient, sla: 1h, priority: urgent}
""") == []


def test_the_examples_in_the_docs_validate_and_their_maps_show_every_step():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "journeys.md").read_text(encoding="utf-8")
    section = text[text.index("## Check-ins and readings"):text.index("## Programmes: care that lasts")]
    blocks = re.findall(r"```(yaml|mermaid)\n(.*?)```", section, re.S)
    assert [kind for kind, _ in blocks] == ["yaml", "mermaid", "yaml", "mermaid"]
    for (_, source), (_, chart) in zip(blocks[::2], blocks[1::2]):
        journey, found = read_journey_text(source, known_channels={"wechat", "sms"})
        assert found == [], found
        assert chart.startswith("flowchart TD\n")
        for step in journey.steps:
            assert step.id in chart, f"the map of {journey.name} does not show step {step.id}"


def test_the_python_dsl_builds_the_same_steps_as_yaml():
    from carepath.definition import dsl

    prompt = dsl.step("glucose", "post_visit", dsl.every("1d", at="07:30"),
                      dsl.checkin("glucose", ["sms"], template="prompt", measure="glucose"))
    alert = dsl.step("bp", "post_visit", dsl.reading("systolic_bp >= 140 mmHg", count=3), dsl.task("call_patient"))
    yaml_journey, found = read_journey_text(HEAD + """
  - id: glucose
    stage: post_visit
    every: {interval: 1d, at: "07:30"}
    checkin: {checkin: glucose, measure: glucose, template: prompt, via: [sms]}
  - id: bp
    stage: post_visit
    reading: {any: ["systolic_bp >= 140 mmHg"], count: 3}
    task: {task: call_patient}
""", known_channels={"sms"})
    assert found == []
    assert [prompt, alert] == yaml_journey.steps

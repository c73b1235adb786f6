"""Validation of send.to (issue 19): what it may say, where no guardian can exist, what templates may read of the
recipient; every problem names the step, the field and the line."""

from __future__ import annotations

from pathlib import Path

from carepath.definition.journey_files import read_journey_text

EXAMPLE = Path(__file__).parents[1] / "data" / "journeys" / "family-inpatient-update.yaml"

JOURNEY = """\
name: adults
enroll: {events: [encounter.admitted], condition: "patient.age >= 18 and patient.has('I10')"}
templates:
  note: {body: "{{ recipient.name }}您好"}
steps:
  - id: update
    stage: in_visit
    after: {anchor: enrolled, offset: 1h}
    send: {template: note, via: [sms], to: TO}
"""


def _problems(text: str) -> list[str]:
    _, problems = read_journey_text(text, file="adults.yaml")
    return [str(p) for p in problems]


def test_the_example_family_journey_is_valid():
    journey, problems = read_journey_text(EXAMPLE.read_text(), file=EXAMPLE.name)
    assert problems == [] and [s.action.to for s in journey.steps] == ["patient+family", "guardian", None]


def test_to_guardian_in_a_journey_only_adults_enter_names_the_step_and_line():
    [problem] = _problems(JOURNEY.replace("TO", "guardian"))
    assert problem.startswith("adults.yaml:9: step 'update', field steps[0].send.to: to: guardian in a journey "
                              "only adults enter (enroll condition 'patient.age >= 18')")
    assert _problems(JOURNEY.replace("TO", "family")) == []
    assert _problems(JOURNEY.replace("TO", "guardian").replace(">= 18", ">= 6")) == []  # children may enter
    assert _problems(JOURNEY.replace("TO", "guardian").replace(" and ", " or ")) == []  # not adults only


def test_an_unknown_audience_is_refused_with_the_choices():
    [problem] = _problems(JOURNEY.replace("TO", "parents"))
    assert "steps[0].send.to" in problem and "'patient', 'guardian', 'family' or 'patient+family'" in problem


def test_a_template_reading_an_unknown_recipient_field_is_refused():
    text = JOURNEY.replace("TO", "family").replace("recipient.name", "recipient.nmae")
    [problem] = _problems(text)
    assert "recipient has no field 'nmae'; did you mean 'name'?" in problem


def test_the_family_example_in_the_docs_validates_and_its_map_shows_every_step():
    import re

    text = (Path(__file__).parents[2] / "docs" / "journeys.md").read_text(encoding="utf-8")
    section = text[text.index("## Family and guardians"):text.index("## Moved anchors")]
    [(_, source), (_, chart)] = re.findall(r"```(yaml|mermaid)\n(.*?)```", section, re.S)
    journey, problems = read_journey_text(source, known_channels={"sms"})
    assert problems == []
    assert chart.startswith("flowchart TD\n") and all(step.id in chart for step in journey.steps)

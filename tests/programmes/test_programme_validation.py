"""Issue 19.7 (points 1 and 2): journeys validate what programmes add, naming file, line, step and field."""

from __future__ import annotations

from carepath.definition import preferences
from carepath.definition.journey_files import read_journey_text, journey_to_yaml
from carepath.definition.model import Journey
from tests.portrait.helpers import loaded_config

HEAD = """name: programme
enroll: {events: [visit.checked_in]}
templates: {t: "您好"}
steps:
"""


def _problems(steps: str, head: str = HEAD) -> list[str]:
    _, problems = read_journey_text(head + steps, file="programme.yaml", known_channels={"sms"})
    return [str(p) for p in problems]


def test_unknown_preferences_bad_rrules_and_festival_names_are_reported_where_they_are():
    found = _problems("""  - id: pill
    stage: post_visit
    every: {interval: 1d, at: patient.preferences.medicine_time}
    send: {template: t, via: [sms]}
  - id: recheck
    stage: post_visit
    every: {rrule: "FREQ=MONTHLY;BYDAY=1XX"}
    send: {template: t, via: [sms]}
  - id: festival
    stage: post_visit
    calendar: 中球
    send: {template: t, via: [sms]}
  - id: leap-day
    stage: post_visit
    calendar: {date: "02-29"}
    send: {template: t, via: [sms]}
  - id: anchored
    stage: post_visit
    after: {anchor: enrolled, offset: 1d, at: patient.preferences.medication_time}
    send: {template: t, via: [sms]}
""")
    assert ("programme.yaml:7: step 'pill', field steps[0].every.at: unknown preference 'medicine_time'; "
            "did you mean 'medication_time'?") in "\n".join(found), found
    assert any(m.startswith("programme.yaml:11: step 'recheck', field steps[1].every.rrule:") and
               "not a valid RFC 5545 rule: invalid 'BYDAY': 1XX" in m for m in found), found
    assert any(m.startswith("programme.yaml:15: step 'festival', field steps[2].calendar.moment:") and
               "unknown calendar moment '中球'; did you mean '中秋'?" in m for m in found), found
    assert any("steps[3].calendar.date" in m and "a day every year has" in m for m in found), found
    assert any("steps[4].after.at" in m and "works on every and calendar triggers" in m for m in found), found


def test_pauses_need_a_resume_and_known_events_greetings_cannot_be_urgent():
    found = _problems("""  - id: greeting
    stage: post_visit
    calendar: {moment: birthday}
    category: urgent
    send: {template: t, via: [sms]}
""", head=HEAD.replace("templates:", "pause_on: [encounter.admited]\nhorizon: 120d\ntemplates:"))
    text = "\n".join(found)
    assert "field pause_on: pause_on needs resume_on" in text
    assert "unknown event type 'encounter.admited'" in text and "encounter.admitted" in text
    assert "horizon 120d is out of range" in text
    assert "a calendar moment (a greeting) cannot be urgent" in text
    assert _problems("""  - id: rhythm
    stage: post_visit
    every: {interval: 1d, rrule: "FREQ=DAILY"}
    send: {template: t, via: [sms]}
""") == ["programme.yaml:7: step 'rhythm', field steps[0].every: every takes an interval or an rrule (one of them)"]


def test_a_hospital_declares_its_own_preferences_in_carepath_toml(tmp_path, monkeypatch):
    config = loaded_config(tmp_path, """
[preferences.exercise_time]
default = "18:30"
description = "when the patient prefers an exercise reminder"
""")
    assert config.preferences["exercise_time"].default == "18:30"
    monkeypatch.setattr(preferences, "_configured", lambda: config.preferences)
    assert _problems("""  - id: walk
    stage: post_visit
    every: {interval: 1d, at: patient.preferences.exercise_time}
    send: {template: t, via: [sms]}
""") == []
    from carepath.config import ConfigError

    try:
        loaded_config(tmp_path, '[preferences.Bad-Name]\ndefault = "7"\n')
    except ConfigError as exc:
        text = str(exc)
    else:  # pragma: no cover - the assertion below says what was expected
        text = ""
    assert "preferences.Bad-Name.default: '7' is not a time of day: write HH:MM" in text
    assert "preferences.Bad-Name: a preference name is lowercase" in text


def test_programme_journeys_round_trip_and_old_journeys_keep_their_version():
    text = HEAD.replace("templates:", "pause_on: [encounter.admitted]\nresume_on: [encounter.discharged]\n"
                                      "horizon: 21d\ntemplates:") + """  - id: pill
    stage: post_visit
    every: {interval: 1d, at: patient.preferences.medication_time}
    workdays_only: true
    send: {template: t, via: [sms]}
  - id: recheck
    stage: post_visit
    every: {rrule: "FREQ=MONTHLY;BYDAY=1MO", at: "09:00", until: 1y}
    send: {template: t, via: [sms]}
  - {id: mid-autumn, stage: post_visit, calendar: 中秋, send: {template: t, via: [sms]}}
"""
    journey, problems = read_journey_text(text, known_channels={"sms"})
    assert problems == []
    assert journey.step("mid-autumn").category.value == "marketing"  # greetings default to marketing
    again, problems = read_journey_text(journey_to_yaml(journey), known_channels={"sms"})
    assert problems == [] and again == journey and again.version == journey.version
    assert Journey.model_validate(journey.to_json()).version == journey.version
    # a journey written before programmes existed hashes as it did (the version pinned enrollments carry)
    old, _ = read_journey_text(HEAD + """  - id: weekly
    stage: post_visit
    every: {interval: 7d, anchor: enrolled, at: "09:00", count: 4}
    send: {template: t, via: [sms]}
""", known_channels={"sms"})
    assert old.version == "e478775c22c0"  # its hash before issue 19


def test_the_journey_maps_in_the_docs_show_examples_that_validate():
    """docs/journeys.md: each programme example validates, and its Mermaid map shows every one of its steps."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "journeys.md").read_text(encoding="utf-8")
    section = text[text.index("### Journey maps"):text.index("## Events as hospitals send them")]
    blocks = re.findall(r"```(yaml|mermaid)\n(.*?)```", section, re.S)
    assert [kind for kind, _ in blocks] == ["yaml", "mermaid", "yaml", "mermaid"]
    for (_, source), (_, chart) in zip(blocks[::2], blocks[1::2]):
        journey, problems = read_journey_text(source, known_channels={"wechat", "sms"})
        assert problems == [], problems
        assert chart.startswith("flowchart TD\n")
        for step in journey.steps:
            assert step.id in chart, f"the map of {journey.name} does not show step {step.id}"
        for name in (journey.pause_on or []) + (journey.resume_on or []) + journey.enroll.events:
            assert name in chart, f"the map of {journey.name} does not show {name}"

"""Issue 23.3: check-in participation against a clinical target, per arm of an experiment.

Patients join a glucose programme whose coaching message is an experiment (an arm and a holdout); their
fasting-glucose check-ins are replies to the real prompts. The report counts, per arm, the patients whose
latest check-in is inside the target the check-in step declares.
"""

from __future__ import annotations

from datetime import date, timedelta

from carepath.definition.journey_files import read_journey_text
from carepath.definition.validation import validate_journey
from carepath.definition.events import PatientIn
from carepath.outcomes_report import outcomes_report
from tests.engine import helpers as h
from tests.experiments.test_experiments import arms
from tests.programmes.conftest import at_local

TRIAL = """
name: glucose-trial
enroll: {events: [program.joined]}
templates:
  prompt: "今天的空腹血糖是多少？回复数值（如 6.1）。"
  coach: "控糖小课堂：今晚8点直播，欢迎参加。"
steps:
  - id: coaching
    stage: post_visit
    after: {anchor: enrolled, offset: 1m}
    send: {template: coach, via: [sms]}
    category: marketing
    experiment: {variants: [{name: coached}], holdout: 0.5}
  - id: glucose
    stage: post_visit
    every: {interval: 1d, at: "08:00", count: 3}
    checkin: {checkin: fasting-glucose, measure: glucose, template: prompt, via: [sms],
              target: ["glucose >= 4.4 mmol/L", "glucose <= 7.0 mmol/L"]}
"""
DAY1 = date(2026, 5, 2)


def trial():
    journey, problems = read_journey_text(TRIAL, known_channels={"sms"})
    assert problems == [], problems
    return journey


def test_the_report_counts_patients_whose_latest_check_in_is_on_target_per_arm(database_url, settings, clock):
    clock.set(at_local(DAY1 - timedelta(days=1), 10))
    eng = h.make_engine(database_url, settings, clock, [trial()], {"sms": h.RecordingChannel("sms")})
    try:
        mrn_of = {}
        for i in range(120):
            mrn = f"G{i:04d}"
            mrn_of[eng.upsert_patient(PatientIn(mrn=mrn, name="赵六", phone=f"137{i:08d}"))] = mrn
            eng.ingest(h.Events(clock, mrn)("program.joined"))
        clock.advance(timedelta(minutes=2))
        eng.dispatch_due()
        assigned = arms(eng)
        assert set(assigned.values()) == {"coached", "holdout"} and len(assigned) == 120
        members: dict[str, list[int]] = {}
        for pid, arm in sorted(assigned.items()):
            members.setdefault(arm, []).append(pid)
        on_target_share = {"coached": 0.8, "holdout": 0.4}
        never = set()
        for arm, pids in members.items():
            good = set(pids[:round(on_target_share[arm] * len(pids))])
            never |= set(pids[-3:]) - good  # a few never check in: not in the target's denominator
            for day in (DAY1, DAY1 + timedelta(days=1)):
                clock.set(at_local(day, 8, 1))
                eng.dispatch_due()
                clock.set(at_local(day, 9))
                for pid in pids:
                    if pid in never:
                        continue
                    # the first day everyone is high; the latest value is what counts
                    value = "9.6" if day == DAY1 or pid not in good else "6.2"
                    eng.ingest(h.Events(clock, mrn_of[pid])("message.replied", {"text": value, "channel": "sms"}))
        with eng.db.connect() as conn:
            report = outcomes_report(conn, "glucose-trial", clock.now() - timedelta(days=10), clock.now(),
                                     clock.now(), eng.cipher)
            without_key = outcomes_report(conn, "glucose-trial", clock.now() - timedelta(days=10), clock.now(),
                                          clock.now())
    finally:
        eng.close()
    (exp,) = report.experiments
    key = "on_target:glucose"
    assert "glucose >= 4.4 mmol/L and glucose <= 7 mmol/L" in report.labels[key]
    for arm in exp.arms:
        pids = members[arm.name]
        rate = arm.rates[key]
        checked = [p for p in pids if p not in never]
        assert rate.n == len(checked)  # only patients with a check-in count
        assert rate.count == round(on_target_share[arm.name] * len(pids))
        assert rate.low <= 100 * rate.count / rate.n <= rate.high
    comparison = next(c for c in exp.comparisons if c.measure == key)
    assert comparison.arm == "coached" and comparison.versus == "holdout" and comparison.shown
    assert comparison.text.startswith("coached: on target at the latest check-in of glucose")
    # without the store's key the values cannot be read: the target is left out, not guessed
    assert key not in without_key.experiments[0].arms[0].rates


def test_a_target_must_name_the_check_ins_measure():
    wrong = TRIAL.replace('target: ["glucose >= 4.4 mmol/L", "glucose <= 7.0 mmol/L"]',
                          'target: ["systolic_bp < 140 mmHg"]')
    journey, problems = read_journey_text(wrong, known_channels={"sms"})
    problems = problems or validate_journey(journey, known_templates=None, known_channels={"sms"},
                                            file="trial.yaml")
    assert len(problems) == 1
    text = str(problems[0])
    assert "step 'glucose'" in text and "checkin.target" in text
    assert "systolic_bp" in text and "asks for glucose" in text

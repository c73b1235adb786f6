"""Issue 23: experiments on a marketing step (variants and a holdout) and the outcomes report.

Patients are enrolled, assigned and sent through the real engine (ingest, planner, dispatcher);
the outcomes are HIS visit events ingested after assignment, with a known effect per arm.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from carepath.definition.dsl import after, enroll_on, exit_on, journey, send, step, template
from carepath.definition.events import PatientIn
from carepath.definition.validation import validate_journey
from carepath.outcomes_report import outcomes_report
from carepath.store.schema_experiments import ExperimentAssignment
from tests.engine import helpers as h

HELD_OUT = "skipped: held out (experiment)"


def promo(variants=({"name": "a", "template": "ta"}, {"name": "b", "template": "tb"}), holdout=0.1,
          category="marketing", **experiment):
    return journey("promo", enroll=enroll_on("program.joined"), exit=exit_on("visit.no_show"),
                   templates=[template("ta", "A: 欢迎参加健康讲座"), template("tb", "B: 名额有限，快来报名"),
                              template("t", "讲座通知")],
                   steps=[step("offer", "post_visit", after("enrolled"), send("t", ["sms"]), category=category,
                               experiment={"variants": list(variants), "holdout": holdout, **experiment})])


def population(eng, clock, n: int) -> dict[int, str]:
    """``n`` patients with marketing consent, enrolled now: their MRNs by patient id."""
    mrns = {}
    for i in range(n):
        mrn = f"P{i:04d}"
        mrns[eng.upsert_patient(PatientIn(mrn=mrn, name="王五", phone=f"139{i:08d}"))] = mrn
        eng.ingest(h.Events(clock, mrn)("consent.changed", {"purpose": "marketing", "granted": True}))
        eng.ingest(h.Events(clock, mrn)("program.joined"))
    return mrns


def arms(eng) -> dict[int, str]:
    with eng.db.connect() as conn:
        return dict(conn.execute(select(ExperimentAssignment.patient_id, ExperimentAssignment.arm)).all())


def sent_bodies(sms: h.RecordingChannel) -> dict[str, str]:
    return {m.idempotency_key.rsplit(":", 1)[0]: m.body for m in sms.messages}


def test_two_variants_and_a_holdout_assign_stably_and_survive_a_new_version(database_url, settings, clock):
    sms = h.RecordingChannel("sms")
    eng = h.make_engine(database_url, settings, clock, [promo()], {"sms": sms})
    try:
        population(eng, clock, 200)
        eng.dispatch_due()
        first = arms(eng)
        tps = {tp.patient_id: tp for tp in h.touchpoints(eng)}
    finally:
        eng.close()
    counts = Counter(first.values())
    assert set(counts) == {"a", "b", "holdout"} and sum(counts.values()) == 200
    assert 8 <= counts["holdout"] <= 35 and counts["a"] > 60 and counts["b"] > 60  # 10 % held out, the rest halved
    bodies = sent_bodies(sms)
    for pid, arm in first.items():
        tp = tps[pid]
        if arm == "holdout":  # receives nothing, recorded as held out
            assert (tp.status, tp.reason) == ("skipped", HELD_OUT) and tp.idempotency_key not in bodies
        else:
            assert tp.status == "sent" and bodies[tp.idempotency_key].startswith(arm.upper() + ":")

    # a new version with other weights and a larger holdout: everyone already assigned keeps their arm
    sms2 = h.RecordingChannel("sms")
    changed = promo(variants=({"name": "a", "template": "ta", "weight": 1}, {"name": "b", "template": "tb",
                                                                            "weight": 9}), holdout=0.5)
    assert changed.version != promo().version
    eng = h.make_engine(database_url, settings, clock, [changed], {"sms": sms2})
    try:
        clock.advance(timedelta(hours=1))
        for i in range(200):  # leave and join again: a new enrollment on the new version
            eng.ingest(h.Events(clock, f"P{i:04d}")("visit.no_show"))
            eng.ingest(h.Events(clock, f"P{i:04d}")("program.joined"))
        eng.dispatch_due()
        assert arms(eng) == first
        new = {e.id for e in h.enrollments(eng, version=changed.version)}
        again = [tp for tp in h.touchpoints(eng) if tp.enrollment_id in new]
    finally:
        eng.close()
    assert len(again) == 200
    bodies = sent_bodies(sms2)
    for tp in again:
        arm = first[tp.patient_id]
        assert (tp.reason == HELD_OUT) == (arm == "holdout")
        if arm != "holdout":
            assert bodies[tp.idempotency_key].startswith(arm.upper() + ":")


def test_a_variant_can_change_the_channel(database_url, settings, clock):
    sms, wechat = h.RecordingChannel("sms"), h.RecordingChannel("wechat", address_kind="phone")
    j = promo(variants=({"name": "texted"}, {"name": "wechat", "via": ["wechat"]}), holdout=0)
    eng = h.make_engine(database_url, settings, clock, [j], {"sms": sms, "wechat": wechat})
    try:
        population(eng, clock, 40)
        eng.dispatch_due()
        by_arm = Counter(arms(eng).values())
        channels = {tp.patient_id: tp.channel for tp in h.touchpoints(eng)}
        assigned = arms(eng)
    finally:
        eng.close()
    assert set(by_arm) == {"texted", "wechat"}
    assert all(channels[pid] == ("wechat" if arm == "wechat" else "sms") for pid, arm in assigned.items())


def test_a_holdout_on_a_clinical_reminder_is_refused():
    problems = validate_journey(promo(category="clinical"), known_templates=None, known_channels=None,
                                file="promo.yaml")
    assert len(problems) == 1
    text = str(problems[0])
    assert text.startswith("promo.yaml") and "step 'offer'" in text and "experiment.holdout" in text
    assert "only allowed on marketing steps" in text
    assert validate_journey(promo(), known_templates=None, known_channels=None) == []
    # non-clinical education: a transactional step that says so
    assert validate_journey(promo(category="transactional", education=True), known_templates=None,
                            known_channels=None) == []
    assert validate_journey(promo(category="transactional"), known_templates=None, known_channels=None) != []
    # variants without a holdout are fine on a clinical step
    assert validate_journey(promo(category="clinical", holdout=0), known_templates=None, known_channels=None) == []


def seeded(database_url, settings, clock, n: int, revisit: dict[str, float]):
    """``n`` patients through the experiment; a share ``revisit[arm]`` of each arm books an appointment 5 days
    after assignment. Returns the engine's database and the clock 100 days later."""
    eng = h.make_engine(database_url, settings, clock, [promo()], {"sms": h.RecordingChannel("sms")})
    try:
        mrn_of = population(eng, clock, n)
        eng.dispatch_due()
        assigned = arms(eng)
        clock.advance(timedelta(days=5))
        members: dict[str, list[int]] = {}
        for pid, arm in sorted(assigned.items()):
            members.setdefault(arm, []).append(pid)
        for arm, pids in members.items():
            for pid in pids[:round(revisit[arm] * len(pids))]:
                eng.ingest(h.Events(clock, mrn_of[pid])("appointment.booked",
                                                         {"appointment_id": f"A{pid}",
                                                          "start": (clock.now() + timedelta(days=3)).isoformat()}))
        clock.advance(timedelta(days=95))
        with eng.db.connect() as conn:
            report = outcomes_report(conn, "promo", clock.now() - timedelta(days=200), clock.now(), clock.now())
        return report, members
    finally:
        eng.close()


def test_the_report_recovers_a_known_effect_inside_its_interval(database_url, settings, clock):
    report, members = seeded(database_url, settings, clock, 400, {"holdout": 0.3, "a": 0.3, "b": 0.6})
    (exp,) = report.experiments
    assert exp.experiment == "offer" and [a.name for a in exp.arms] == ["a", "b", "holdout"]
    figures = {a.name: a for a in exp.arms}
    for arm, pids in members.items():
        rate = figures[arm].rates["revisit_30d"]
        assert rate.n == len(pids) == figures[arm].patients
        assert rate.low <= 100 * rate.count / rate.n <= rate.high
    b = next(c for c in exp.comparisons if c.arm == "b" and c.measure == "revisit_30d")
    true_effect = 100 * (figures["b"].rates["revisit_30d"].count / figures["b"].patients
                         - figures["holdout"].rates["revisit_30d"].count / figures["holdout"].patients)
    assert 25 <= true_effect <= 35 and b.low <= true_effect <= b.high and b.low > 0 and b.shown
    assert b.text.startswith("b: re-visit within 30 days 6") and "vs holdout 3" in b.text and "95 % CI +" in b.text
    a = next(c for c in exp.comparisons if c.arm == "a" and c.measure == "revisit_30d")
    assert not a.shown and a.low < 0 < a.high and "no difference shown" in a.text
    assert not exp.warnings
    assert json.loads(json.dumps(report.as_dict()))["experiments"][0]["arms"][0]["rates"]["revisit_90d"]["n"] > 0


def test_equal_groups_show_no_difference_and_small_groups_are_flagged(database_url, settings, clock):
    report, _ = seeded(database_url, settings, clock, 24, {"holdout": 0.5, "a": 0.5, "b": 0.5})
    (exp,) = report.experiments
    revisits = [c for c in exp.comparisons if c.measure == "revisit_90d"]
    assert revisits and all(not c.shown and "no difference shown" in c.text for c in revisits)
    assert all(c.too_small and "too few patients to conclude" in c.text for c in revisits)
    assert any("too few to conclude" in w for w in exp.warnings)


@pytest.fixture
def cli_env(monkeypatch, settings, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CAREPATH_HOME", str(settings.home))
    monkeypatch.setenv("COLUMNS", "160")
    for name in ("CAREPATH_SECRET_KEY", "CAREPATH_KEY_FILE", "CAREPATH_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)


def test_cli_report_outcomes_prints_json_a_table_and_a_chart(database_url, settings, clock, cli_env, tmp_path):
    from typer.testing import CliRunner

    from carepath.cli import _mount_optional, app

    # fewer patients than the test above: this one is about what the command prints, not the statistics
    seeded(database_url, settings, clock, 120, {"holdout": 0.3, "a": 0.3, "b": 0.6})
    _mount_optional()
    days = ["--since", "2026-04-01", "--until", "2026-06-01", "--db", database_url]
    run = CliRunner().invoke(app, ["report", "outcomes", "promo", *days, "--json"])
    assert run.exit_code == 0, run.output
    data = json.loads(run.stdout)
    assert {a["name"] for a in data["experiments"][0]["arms"]} == {"a", "b", "holdout"}
    chart = tmp_path / "outcomes.png"
    run = CliRunner().invoke(app, ["report", "outcomes", "promo", *days, "--chart", str(chart)])
    assert run.exit_code == 0, run.output
    assert "b: re-visit within 30 days" in run.stdout and "a: re-visit within 30 days" in run.stdout
    assert "no difference shown" in run.stdout
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = CliRunner().invoke(app, ["report", "outcomes", "nothing-here", *days])
    assert missing.exit_code == 3 and "no patient was assigned" in missing.stderr and "Traceback" not in missing.output


def test_a_variant_can_send_later_in_the_day(database_url, settings, clock):
    from tests.programmes.conftest import at_local, local

    sms = h.RecordingChannel("sms")
    j = journey("promo", enroll=enroll_on("program.joined"), templates=[template("t", "讲座通知")],
                steps=[step("offer", "post_visit", after("enrolled", "1d", at="09:00"), send("t", ["sms"]),
                            category="marketing",
                            experiment={"variants": [{"name": "morning"}, {"name": "evening", "at": "19:00"}]})])
    assert validate_journey(j, known_templates=None, known_channels=None) == []
    eng = h.make_engine(database_url, settings, clock, [j], {"sms": sms})
    try:
        day = local(clock.now()).date()
        population(eng, clock, 60)
        sent_at: dict[str, object] = {}
        for hh in range(8, 22):  # the next day, hour by hour, as the dispatcher's schedule runs
            clock.set(at_local(day + timedelta(days=1), hh, 1))
            eng.dispatch_due()
            for m in sms.messages:
                sent_at.setdefault(m.idempotency_key.rsplit(":", 1)[0], local(clock.now()).hour)
        assigned = arms(eng)
        tps = {tp.patient_id: tp for tp in h.touchpoints(eng)}
    finally:
        eng.close()
    assert set(assigned.values()) == {"morning", "evening"}
    for pid, arm in assigned.items():
        tp = tps[pid]
        assert tp.status == "sent"
        assert sent_at[tp.idempotency_key] == (19 if arm == "evening" else 9), (arm, sent_at[tp.idempotency_key])
    assert len(sms.messages) == 60  # waiting for the arm's time sends nothing twice


def test_a_variant_time_must_come_after_the_steps_own():
    def with_time(trigger, at):
        j = journey("promo", enroll=enroll_on("program.joined"), templates=[template("t", "讲座通知")],
                    steps=[step("offer", "post_visit", trigger, send("t", ["sms"]), category="marketing",
                                experiment={"variants": [{"name": "a"}, {"name": "b", "at": at}]})])
        return [str(p) for p in validate_journey(j, known_templates=None, known_channels=None, file="p.yaml")]

    [earlier] = with_time(after("enrolled", "1d", at="19:00"), "09:00")
    assert "step 'offer'" in earlier and "variants[1].at" in earlier and "not after the step's 19:00" in earlier
    [no_time] = with_time(after("enrolled", "1d"), "19:00")
    assert "needs a step planned at a fixed time of day" in no_time
    assert with_time(after("enrolled", "1d", at="09:00"), "19:00") == []


def test_an_unconfirmed_message_falls_back_along_its_arms_own_channels(database_url, settings, clock):
    from carepath.runtime.fallback import unconfirmed_fallback
    from carepath.store.schema import StaffTask

    sms, wechat = h.RecordingChannel("sms"), h.RecordingChannel("wechat", address_kind="phone")
    j = journey("promo", enroll=enroll_on("program.joined"), templates=[template("t", "复诊提醒")],
                steps=[step("offer", "post_visit", after("enrolled"), send("t", ["sms"]), confirm_within="30m",
                            experiment={"variants": [{"name": "texted"}, {"name": "both", "via": ["wechat", "sms"]}]})])
    eng = h.make_engine(database_url, settings, clock, [j], {"sms": sms, "wechat": wechat})
    try:
        population(eng, clock, 30)
        eng.dispatch_due()
        clock.advance(timedelta(minutes=31))  # no receipt within the step's window
        unconfirmed_fallback(eng)
        eng.dispatch_due()
        assigned = arms(eng)
        tps = {tp.patient_id: tp for tp in h.touchpoints(eng)}
        tasks = {t.patient_id for t in h._rows(eng, StaffTask)}
    finally:
        eng.close()
    assert set(assigned.values()) == {"texted", "both"}
    for pid, arm in assigned.items():
        if arm == "both":  # WeChat first, then the arm's next channel: SMS
            assert (tps[pid].channel, tps[pid].status) == ("sms", "sent") and pid not in tasks
        else:  # its one channel unconfirmed: a person calls
            assert tps[pid].status == "failed" and pid in tasks


WARM = ({"name": "plain"}, {"name": "warm", "templates": {"hello": "hello_warm", "tip": "tip_warm"}})


def moments(holdout=0.2, category="marketing", variants=WARM):
    """Two greetings under one journey-wide experiment: a warm arm with its own templates, a plain arm."""
    return journey("moments", enroll=enroll_on("program.joined"),
                   templates=[template("hello", "问候"), template("hello_warm", "暖心问候"),
                              template("tip", "健康小贴士"), template("tip_warm", "暖心小贴士")],
                   experiment={"id": "tone-2026", "holdout": holdout, "variants": list(variants)},
                   steps=[step("hello", "post_visit", after("enrolled"), send("hello", ["sms"]), category="marketing"),
                          step("tip", "post_visit", after("enrolled", "1h"), send("tip", ["sms"]),
                               category=category)])


def test_a_journey_wide_experiment_keeps_each_patient_in_one_arm_for_every_message(database_url, settings, clock):
    sms = h.RecordingChannel("sms")
    j = moments()
    assert validate_journey(j, known_templates=None, known_channels=None) == []
    eng = h.make_engine(database_url, settings, clock, [j], {"sms": sms})
    try:
        population(eng, clock, 100)
        eng.dispatch_due()
        clock.advance(timedelta(hours=2))
        eng.dispatch_due()
        with eng.db.connect() as conn:
            rows = conn.execute(select(ExperimentAssignment.patient_id, ExperimentAssignment.experiment,
                                       ExperimentAssignment.arm)).all()
        tps = h.touchpoints(eng)
    finally:
        eng.close()
    assert {r.experiment for r in rows} == {"tone-2026"} and len(rows) == 100  # one arm per patient
    arm = {r.patient_id: r.arm for r in rows}
    assert set(arm.values()) == {"plain", "warm", "holdout"}
    bodies = sent_bodies(sms)
    assert len(tps) == 200
    for tp in tps:
        if arm[tp.patient_id] == "holdout":  # nothing at all
            assert (tp.status, tp.reason) == ("skipped", HELD_OUT)
        else:
            warm = arm[tp.patient_id] == "warm"
            expected = {"hello": "暖心问候" if warm else "问候", "tip": "暖心小贴士" if warm else "健康小贴士"}
            assert tp.status == "sent" and bodies[tp.idempotency_key] == expected[tp.step]


def test_a_journey_wide_holdout_is_refused_when_one_message_is_clinical():
    problems = [str(p) for p in validate_journey(moments(category="clinical"), known_templates=None,
                                                 known_channels=None, file="moments.yaml")]
    assert len(problems) == 1
    assert "experiment.holdout" in problems[0] and "step 'tip'" in problems[0] and "clinical" in problems[0]
    # variants alone are fine on clinical messages; a replaced template must be one a step sends
    assert validate_journey(moments(holdout=0, category="clinical"), known_templates=None, known_channels=None) == []
    odd = moments(variants=[{"name": "x", "templates": {"nothing": "tip_warm"}}])
    [problem] = [str(p) for p in validate_journey(odd, known_templates=None, known_channels=None)]
    assert "template 'nothing' is sent by no step" in problem


def test_a_server_reloading_its_journeys_for_weeks_keeps_the_arm_memo_bounded():
    from carepath.runtime import experiments

    # each reload parses new step objects; the memo of what each arm sends must not keep every old one alive
    written = promo().steps[0]
    for _ in range(experiments._MEMO_LIMIT + 50):
        copy = written.model_copy()
        assert experiments.arm_step(copy, "b").action.template == "tb"
        assert len(experiments._VARIANTS) <= experiments._MEMO_LIMIT
    assert experiments.arm_step(written, "a").action.template == "ta" and written.action.template == "t"

"""Stock journey paediatrics: re-check and growth check reminders, to the guardians only, over three months."""

from __future__ import annotations

from datetime import date

from carepath.runtime.work_queue import close
from tests.engine import helpers as h
from tests.stock.story import story

CHILD, MOTHER, FATHER, GRANDMA = "13100000021", "13900000022", "13700000023", "13600000024"
BABY, BABY_MOTHER = "13100000031", "13900000032"
ALONE = "13100000041"


def test_reminders_by_condition_and_age_reach_the_guardians_only(database_url, settings, clock):
    with story(database_url, settings, clock, "paediatrics") as s:  # day 0: Friday 1 May 2026
        # a six-year-old with asthma and allergic rhinitis, two parents and a grandmother (not a guardian)
        s.patient("K1", name="李小明", phone=CHILD, birth_date=date(2019, 6, 15), conditions=["J45.9", "J30.1"])
        s.relative("K1", "m", "mother", MOTHER, "王芳", guardian=True)
        s.relative("K1", "f", "father", FATHER, "李强", guardian=True)
        s.relative("K1", "g", "grandparent", GRANDMA, "赵兰")
        # a baby born in January, and a child with asthma and no guardian on record
        s.patient("K2", name="周小宝", phone=BABY, birth_date=date(2026, 1, 10))
        s.relative("K2", "m", "mother", BABY_MOTHER, "陈丽", guardian=True)
        s.patient("K3", name="孙小雨", phone=ALONE, birth_date=date(2015, 9, 1), conditions=["J45"])
        for mrn in ("K1", "K2", "K3"):
            s.event(mrn, "visit.checked_in", {"department": "儿科"})
        s.run_until(s.when(100, 12))

        days = s.days()
        # day 45 (15 June): K1's birthday, the yearly growth check, to each parent
        assert days[45] == [("birthday_growth_check", FATHER), ("birthday_growth_check", MOTHER)]
        # day 92 (1 August): K1's asthma re-check (3 months) and the rhinitis re-check before the autumn season,
        # and the baby's growth check (every 3 months in the first year)
        assert sorted(days[92]) == sorted([("asthma_recheck", FATHER), ("asthma_recheck", MOTHER),
                                           ("rhinitis_recheck", FATHER), ("rhinitis_recheck", MOTHER),
                                           ("growth_check", BABY_MOTHER)])
        assert set(days) == {45, 92}
        sent = s.messages()
        assert {x.address for x in sent}.isdisjoint({CHILD, BABY, ALONE, GRANDMA})  # never the child or others
        assert {x.at for x in sent} == {"10:00"}
        asthma = next(x.body for x in sent if x.template == "asthma_recheck" and x.address == MOTHER)
        assert asthma.startswith("王芳您好，李小明的哮喘复查") and "不要自行停药或改量" in asthma
        # K3 has no guardian on record: her reminder is skipped, not sent to her own phone
        skipped = {r.patient_id: r.reason for r in h.touchpoints(s.engine, step="asthma-recheck", status="skipped")}
        assert skipped == {2: "skipped: condition false", 3: "skipped: no guardian on record"}
        # K3's skipped reminder asks the paediatrics team to record her guardian (day 92); nobody answered K1's
        # asthma reminder within 7 days: a nurse calls the guardians (day 99)
        tasks = [(t["day"], t["kind"], t["team"], t["sla_hours"]) for t in s.task_log()]
        assert tasks == [(92, "record_guardian", "paediatrics", 24.0), (99, "call_patient", "nursing", 48.0)]


def test_an_adult_visit_ends_the_programme(database_url, settings, clock):
    with story(database_url, settings, clock, "paediatrics") as s:
        s.patient("K4", name="吴小军", phone=CHILD, birth_date=date(2008, 5, 10), conditions=["J45"])
        s.relative("K4", "m", "mother", MOTHER, "吴芳", guardian=True)
        s.event("K4", "visit.checked_in", {"department": "儿科"})
        s.run_until(s.when(10, 12))  # 10 May: he turns 18
        s.event("K4", "visit.checked_in", {"department": "呼吸内科"})
        assert [e.status for e in h.enrollments(s.engine)] == ["exited"]
        s.run_until(s.when(95, 12))
        assert s.messages() == []


def test_a_child_without_a_guardian_gets_one_task_to_record_one(database_url, settings, clock):
    with story(database_url, settings, clock, "paediatrics") as s:  # day 0: Friday 1 May 2026
        # asthma and allergic rhinitis, no guardian on record: two reminders skipped on 1 August (day 92)
        s.patient("K5", name="郑小雪", phone=ALONE, birth_date=date(2016, 10, 1), conditions=["J45", "J30"])
        s.event("K5", "visit.checked_in", {"department": "儿科"})
        s.run_until(s.when(93, 12))
        skipped = [r.step for r in h.touchpoints(s.engine, status="skipped") if r.reason == "skipped: no guardian on record"]
        assert sorted(skipped) == ["asthma-recheck", "rhinitis-autumn"]
        assert s.messages() == []
        # one task for the child, not one per message
        [task] = s.task_log()
        assert (task["day"], task["kind"], task["team"], task["sla_hours"], task["status"]) == (
            92, "record_guardian", "paediatrics", 24.0, "open")
        assert task["detail"].startswith("no guardian on record: please record the child's guardian")
        # the mother is recorded: the task is done, and the next reminder goes to her
        s.relative("K5", "m", "mother", MOTHER, "郑芳", guardian=True)
        assert [(t["kind"], t["status"]) for t in s.task_log()] == [("record_guardian", "done")]
        s.run_until(s.when(192, 12))
        # her 10th birthday (1 October, day 153) and the asthma re-check 6 months after enrolment (1 November)
        assert s.days() == {153: [("birthday_growth_check", MOTHER)], 184: [("asthma_recheck", MOTHER)]}
        assert [(t["day"], t["kind"]) for t in s.task_log()] == [(92, "record_guardian"), (191, "call_patient")]


def test_a_closed_guardian_task_opens_again_only_for_a_later_skipped_message(database_url, settings, clock):
    with story(database_url, settings, clock, "paediatrics") as s:
        s.patient("K6", name="钱小川", phone=ALONE, birth_date=date(2017, 12, 1), conditions=["J45"])
        s.event("K6", "visit.checked_in", {"department": "儿科"})
        s.run_until(s.when(93, 12))
        [first] = s.task_log()
        # staff could not reach the family and closed it; the old skip opens nothing more
        close(s.engine, h.staff_tasks(s.engine)[0].id, "zhang-hua", "家长电话未接通")
        s.run_until(s.when(120, 12))
        assert [t["status"] for t in s.task_log()] == ["done"]
        # the next reminder (1 November, day 184) is skipped again: a new task, still one open
        s.run_until(s.when(186, 12))
        assert [(t["day"], t["kind"], t["status"]) for t in s.task_log()] == [
            (92, "record_guardian", "done"), (184, "record_guardian", "open")]
        assert first["day"] == 92

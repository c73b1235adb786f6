"""Stock journey inpatient-stay: a week in hospital and the first days at home, day by day."""

from __future__ import annotations

from datetime import date

from tests.engine import helpers as h
from tests.stock.story import story

PATIENT, SPOUSE, DAUGHTER = "13100000001", "13600000002", "13500000003"


def test_admission_family_notes_discharge_medication_and_the_day7_call(database_url, settings, clock):
    with story(database_url, settings, clock, "inpatient-stay") as s:  # day 0 is Friday 1 May 2026
        s.patient("P1", name="张伟", phone=PATIENT, birth_date=date(1958, 3, 2))
        s.relative("P1", "rp-1", "spouse", SPOUSE, "李梅")
        s.relative("P1", "rp-2", "child", DAUGHTER, "张晓")
        s.run_until(s.when(0, 10))
        s.event("P1", "encounter.admitted", {"encounter_id": "E1", "patient_class": "inpatient",
                                              "ward": "心内科一病区", "bed": "12"})
        s.run_until(s.when(3, 10))
        s.event("P1", "encounter.discharged", {"encounter_id": "E1", "disposition": "home"})
        s.run_until(s.when(3, 12))
        s.event("P1", "patient.preferences_updated", {"medication_time": "20:00"})
        s.run_until(s.when(11, 12))

        days = s.days()
        # the guide to the patient at admission; a note to each family member at 18:00 while admitted, never to
        # the patient, and none on the day of discharge
        assert days[0] == [("admission_guide", PATIENT)]
        for day in (1, 2):
            assert days[day] == [("family_update", DAUGHTER), ("family_update", SPOUSE)]
        assert days[3] == [("discharge_instructions", PATIENT)]
        assert [r.status for r in h.touchpoints(s.engine, step="family-update") if r.status != "sent"] and all(
            r.status == "cancelled" for r in h.touchpoints(s.engine, step="family-update") if r.status != "sent")
        # the medication reminder every day after discharge, at the time the patient chose
        for day in range(4, 11):
            assert ("medication_reminder", PATIENT) in days[day]
        meds = [x for x in s.messages() if x.template == "medication_reminder"]
        assert {x.at for x in meds} == {"20:00"} and len(meds) == 7
        # what the messages say: the ward and bed, no clinical judgement, whom to ask
        guide = next(x.body for x in s.messages() if x.template == "admission_guide")
        assert "心内科一病区12床" in guide
        note = next(x.body for x in s.messages() if x.template == "family_update" and x.address == SPOUSE)
        assert note.startswith("李梅您好") and "张伟" in note and "以主管医生" in note
        # the nurse's call task on day 7 after discharge (day 10, Monday 11 May), due within a day
        [task] = s.task_log()
        assert (task["day"], task["kind"], task["team"], task["sla_hours"], task["status"]) == (
            10, "call_patient", "nursing", 24.0, "open")


def test_an_outpatient_encounter_enrolls_nothing_and_a_reversed_admission_ends_the_stay(database_url, settings,
                                                                                        clock):
    with story(database_url, settings, clock, "inpatient-stay") as s:
        s.patient("P2", name="王芳", phone=PATIENT, birth_date=date(1970, 1, 1))
        s.relative("P2", "rp-1", "spouse", SPOUSE, "赵强")
        s.event("P2", "encounter.admitted", {"encounter_id": "O1", "patient_class": "outpatient"})
        assert h.enrollments(s.engine) == []
        s.event("P2", "encounter.admitted", {"encounter_id": "E2"})  # no class: an inpatient stay
        s.run_until(s.when(0, 12))
        s.event("P2", "encounter.admission_cancelled", {"encounter_id": "E2"})
        s.run_until(s.when(3, 12))
        assert s.days() == {0: [("admission_guide", PATIENT)]}
        assert [e.status for e in h.enrollments(s.engine)] == ["exited"]

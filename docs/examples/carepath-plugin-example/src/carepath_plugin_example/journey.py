"""A post-discharge follow-up journey that uses the ``webhook`` channel instance."""

from carepath.definition.dsl import after, anchor, enroll_on, journey, send, step, template

followup_journey = journey(
    "webhook-followup",
    title="出院随访（webhook）",
    description="The day after discharge, at 10:00 patient time, a follow-up message through the webhook channel.",
    enroll=enroll_on("encounter.discharged"),
    anchors={"discharge": anchor(set_by=["encounter.discharged"])},
    steps=[
        step("day-one-followup", "post_visit", after("discharge", "1d", at="10:00"),
             send("webhook_followup", via=["webhook"]), category="clinical"),
    ],
    templates=[
        template("webhook_followup", title="出院随访",
                 body="{{ patient.surname }}先生/女士，出院后第一天感觉如何？请按医嘱服药，如有不适请及时就医。"),
    ],
)

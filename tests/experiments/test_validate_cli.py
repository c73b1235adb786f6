"""Issue 23: ``carepath journeys validate`` refuses a holdout on a clinical reminder, naming the file and step."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Cli, cli, hospital, workdir  # noqa: F401  (the command-line fixtures)

REMINDER = """\
name: reminders
enroll: {events: [appointment.booked]}
templates:
  reminder: {body: "明天上午请按时复诊。"}
  reminder_short: {body: "明天复诊。"}
steps:
  - id: visit-reminder
    stage: pre_visit
    on: appointment.booked
    send: {template: reminder, via: [sms]}
    experiment:
      variants:
        - {name: long}
        - {name: short, template: reminder_short}
      holdout: {holdout}
"""


def test_a_holdout_on_a_clinical_reminder_is_refused_naming_file_and_step(hospital: Path, cli: Cli) -> None:
    path = hospital / "journeys" / "reminders.yaml"
    path.write_text(REMINDER.replace("{holdout}", "0.1"), encoding="utf-8")
    refused = cli("journeys", "validate", "journeys/reminders.yaml")
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "reminders.yaml" in refused.output and "step 'visit-reminder'" in refused.output
    assert "holdouts are only allowed on marketing steps" in refused.output
    path.write_text(REMINDER.replace("{holdout}", "0"), encoding="utf-8")  # variants alone are fine
    assert cli("journeys", "validate", "journeys/reminders.yaml").exit_code == 0
    path.write_text(REMINDER.replace("{holdout}", "0.1").replace("    send:", "    category: marketing\n    send:"),
                    encoding="utf-8")
    assert cli("journeys", "validate", "journeys/reminders.yaml").exit_code == 0

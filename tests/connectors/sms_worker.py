"""A dispatcher worker in its own process, for the crash tests: ``python -m tests.connectors.sms_worker JSON``.

JSON: ``{"database_url", "home", "type", "options"}``; it dispatches what is due once and exits.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta

from carepath.definition.dsl import enroll_on, journey, on, send, step, template
from carepath.definition.model import Journey
from carepath.engine import Engine
from carepath.plugins.manager import get_plugin_manager
from carepath.settings import Settings

BODY = "{{ patient.surname }}先生/女士您好，出院后请按医嘱服药，如有不适请及时复诊。"


def urgent_journey() -> Journey:
    """An urgent message on discharge: no quiet hours, so the test runs at any wall-clock time."""
    return journey("sms-urgent", enroll=enroll_on("encounter.discharged"),
                   steps=[step("notice", "post_visit", on("encounter.discharged"), send("sms_followup", via=["sms"]),
                               category="urgent")],
                   templates=[template("sms_followup", body=BODY)])


def main(order: dict) -> None:
    channel = get_plugin_manager().connector_types()[order["type"]].from_options("sms", order["options"])
    engine = Engine(order["database_url"], journeys=[urgent_journey()], channels={"sms": channel}, templates={},
                    settings=Settings(home=order["home"]), lease=timedelta(seconds=1), migrate=False)
    report = engine.dispatch_due()
    print(json.dumps(dict(report.outcomes)), flush=True)
    engine.close()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))

"""``carepath report surveys`` on a known set of answers: NPS and its shares, response rate, task SLAs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime

import requests

from carepath.survey_report import survey_report
from tests.surveys.conftest import SH


def test_report_gives_the_nps_of_known_answers(visit, live, settings, database_url):
    scores = [10, 9, 9, 7, 3]
    tokens = [visit.invite(mrn=f"MRN-R{n}", appointment=f"R{n}") for n in range(len(scores) + 1)]
    for token, nps in zip(tokens, scores):  # the last patient never answers
        assert requests.post(f"{live.url}/s/{token}", data={"nps": str(nps), "satisfaction": "4"},
                             timeout=10).status_code == 200
    since, until = datetime(2026, 5, 1, tzinfo=SH), datetime(2026, 6, 1, tzinfo=SH)
    with visit.engine.db.connect() as conn:
        report = survey_report(conn, visit.engine.journeys.values(), since, until)
    line = report.total.as_dict()
    assert (line["invited"], line["responses"]) == (6, 5)
    assert line["response_rate"] == 83.3
    assert (line["promoters"], line["passives"], line["detractors"]) == (60.0, 20.0, 20.0)
    assert line["nps"] == 40.0 and line["satisfaction"] == 4.0
    assert [(x.journey, x.step) for x in report.lines] == [("outpatient-visit", "survey-day1")]

    env = {**os.environ, "CAREPATH_DATABASE_URL": database_url, "CAREPATH_HOME": str(settings.home),
           "COLUMNS": "120", "CAREPATH_CONFIG": ""}  # no carepath.toml: the installed journeys
    run = subprocess.run([sys.executable, "-m", "carepath.cli", "report", "surveys", "--since", "2026-05-01",
                          "--until", "2026-06-01", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    printed = json.loads(run.stdout)
    assert printed["total"]["nps"] == 40.0
    table = subprocess.run([sys.executable, "-m", "carepath.cli", "report", "surveys", "--since", "2026-05-01",
                            "--until", "2026-06-01"], capture_output=True, text=True, env=env, timeout=120)
    assert "+40" in table.stdout and "survey-day1" in table.stdout

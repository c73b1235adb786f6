"""``carepath bench --simulate N``: the simulation figure reports what the run did, with its load (no timing asserted)."""

from __future__ import annotations

import json

from carepath.bench.simulate import simulate_figure


def test_the_simulation_figure_reports_the_runs_events_and_messages(cli) -> None:
    figure = simulate_figure(12, days=4, seed=3)
    result = cli("simulate", "outpatient-visit", "--patients", "12", "--days", "4", "--seed", "3", "--json")
    assert result.exit_code == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figure["messages"] == figures["totals"]["messages"] > 0
    assert figure["events"] == figures["run"]["events"] + figures["run"]["patient_events"]
    assert (figure["patients"], figure["days"], figure["workers"]) == (12, 4, 1)
    assert figure["cpu_s"] > 0 and figure["wall_s"] > 0 and len(figure["load"]) == 3

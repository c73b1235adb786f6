"""`carepath bench` counts messages where they arrive and puts every figure next to the floor of the same run."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from carepath.cli import app


def test_bench_counts_messages_sent_and_each_figure_against_the_same_runs_floor(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--sizes", "40", "--postgres", "", "--json", "--out", str(out),
                                        "--portrait-events", "300"])
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    [run] = figures["runs"]
    assert run["database"] == "sqlite" and run["touchpoints_planned"] == 240
    [d] = run["dispatch"]
    # messages are outbox rows: fewer than claims (deferrals are claimed again, tasks and skips send nothing)
    assert 0 < d["messages"] < d["claims"] and d["messages_per_s"] < d["claims_per_s"]
    floor = (run["floor"]["before"]["dispatch_messages_per_s"] + run["floor"]["after"]["dispatch_messages_per_s"]) / 2
    assert abs(d["ratio_to_floor"] - d["messages_per_s"] / floor) < 0.01
    assert run["planning"]["ratio_to_floor"] > 0 and run["planning"]["cost_vs_smallest"] == 1.0
    for figure in (d, run["planning"], run["floor"]["before"], run["floor"]["after"]):
        assert len(figure["load"]) == 3  # the load average goes with every figure
    assert figures["machine"]["cpus"] >= 1 and figures["settings"]["batch"] == 500
    # the portrait upkeep figure (issue 20): seconds for that many events, with the load it ran under
    assert figures["portrait_updates"]["events"] == 300 and figures["portrait_updates"]["seconds"] >= 0
    assert len(figures["portrait_updates"]["load"]) == 3

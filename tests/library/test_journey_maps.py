"""Journey maps: the terminal tree and the Mermaid flowchart, rendered by mermaid.js in headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel
from rich.console import Console
from typer.testing import CliRunner

from carepath.cli import journeys as cli_journeys
from carepath.definition.journey_map import journey_map
from carepath.definition.model import Journey
from carepath.definition.render_mermaid import mermaid_flowchart
from carepath.definition.render_terminal import journey_tree
from tests.browser import MermaidPage, chromium, mermaid_js
from tests.library.journeys import ALL, DOCS, STOCK, STOCK_FOLDER, TEST_JOURNEYS, ids, load

FENCED_MERMAID = re.compile(r"```mermaid\n(.*?)```", re.S)


@pytest.fixture(scope="module")
def mermaid_page(tmp_path_factory: pytest.TempPathFactory):
    script = mermaid_js()
    browser = chromium()
    driver = next(browser)
    try:
        yield MermaidPage(driver, script, tmp_path_factory.mktemp("mermaid"))
    finally:
        browser.close()


def test_the_test_journeys_have_every_kind_of_step():
    journeys = [load(p) for p in ALL]
    steps = [s for j in journeys for s in j.steps]
    assert {s.trigger.kind for s in steps} >= {"on", "before", "after", "every", "after_step", "idle", "calendar"}
    assert {s.action.kind for s in steps} >= {"send", "survey", "task", "tag"}
    assert any(s.trigger.kind == "every" and s.trigger.rrule for s in steps)
    assert any(j.pause_on and j.resume_on for j in journeys)


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_mermaid_map_renders_with_every_step(path: Path, mermaid_page: MermaidPage):
    journey = load(path)
    result = mermaid_page.render(mermaid_flowchart(journey))
    assert "error" not in result, result.get("error")
    nodes = result["nodes"]
    for step in journey.steps:
        assert any(text.startswith(step.id) for text in nodes), f"step {step.id} has no node in the drawn map"
    for stage in {s.stage.value for s in journey.steps}:
        assert stage in result["svg"]


@pytest.mark.parametrize("path", STOCK, ids=ids(STOCK))
def test_the_docs_page_map_renders(path: Path, mermaid_page: MermaidPage):
    journey = load(path)
    [block] = FENCED_MERMAID.findall((DOCS / f"{journey.name}.md").read_text(encoding="utf-8"))
    result = mermaid_page.render(block)
    assert "error" not in result, result.get("error")
    for step in journey.steps:
        assert any(text.startswith(step.id) for text in result["nodes"]), step.id


def test_a_broken_diagram_is_reported(mermaid_page: MermaidPage):
    """The check above can fail: mermaid refuses what it cannot parse."""
    result = mermaid_page.render('flowchart TD\n    a["unclosed --> b\n')
    assert "error" in result and "Parse error" in result["error"]


def test_labels_are_escaped():
    journey = load(TEST_JOURNEYS[1])  # greetings-test: a condition full of Mermaid syntax
    text = mermaid_flowchart(journey)
    line = next(line for line in text.splitlines() if '["end<br/>' in line)
    assert "#lt; 18" in line and "#gt;= 65" in line and "#quot;[#35;1]#quot;" in line
    assert not re.search(r"^\s+end\s*\[", text, re.M)  # a step named end is a label, never a node id


def _terminal(journey: Journey) -> str:
    console = Console(record=True, width=250, color_system=None)
    console.print(journey_tree(journey))
    return console.export_text()


def test_terminal_tree_by_stage_with_follow_ups_under_their_step():
    journey = load(next(p for p in STOCK if p.stem == "outpatient-visit"))  # a journey with every stage
    lines = _terminal(journey).splitlines()
    stages = [i for i, line in enumerate(lines) if re.match(r"^[├└]── (pre_visit|in_visit|post_visit)$", line)]
    assert [lines[i][4:] for i in stages] == ["pre_visit", "in_visit", "post_visit"]
    for step in journey.steps:
        [line] = [line for line in lines if re.search(rf"── {re.escape(step.id)} ", line)]
        stage_line = max(i for i in stages if i < lines.index(line))
        assert lines[stage_line].endswith(step.stage.value)
    follow = next(l for l in lines if "── nurse-call " in l)
    leader = next(l for l in lines if "── followup-day3 " in l)
    assert follow.index("nurse-call") > leader.index("followup-day3")  # hangs under the step it follows
    assert "2d after sent, unless replied → task call_patient → nursing, SLA 1d" in follow


class Streak(BaseModel):
    """A trigger kind this carepath does not know (as a later one might add)."""

    kind: Literal["streak"] = "streak"
    anchor: str = "enrolled"
    days: int = 7


class Poll(BaseModel):
    kind: Literal["poll"] = "poll"
    question: str


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")  # the version hash dumps the pretend kinds
def test_unknown_step_kinds_render_as_generic_nodes(mermaid_page: MermaidPage):
    journey = load(TEST_JOURNEYS[0])
    odd = journey.steps[0].model_copy(update={"id": "odd-one", "trigger": Streak(days=5),
                                              "action": Poll(question="还好吗?")})
    journey = journey.model_copy(update={"steps": [*journey.steps, odd]})
    [mapped] = [s for s in journey_map(journey).steps if s.id == "odd-one"]
    assert (mapped.when, mapped.action, mapped.source.kind) == ("streak days=5", "poll question=还好吗?", "start")
    assert "odd-one  streak days=5 → poll question=还好吗?" in _terminal(journey)
    result = mermaid_page.render(mermaid_flowchart(journey))
    assert "error" not in result, result.get("error")
    assert any(text.startswith("odd-onepoll question=还好吗?") for text in result["nodes"])


def test_show_command_draws_the_map_and_the_mermaid_text(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("CAREPATH_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no carepath.toml, no ./journeys: names are stock journeys
    runner = CliRunner()
    shown = runner.invoke(cli_journeys.app, ["show", str(TEST_JOURNEYS[0])], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    journey = load(TEST_JOURNEYS[0])
    for step in journey.steps:
        assert f" {step.id}  " in shown.output
    mermaid = runner.invoke(cli_journeys.app, ["show", str(TEST_JOURNEYS[0]), "--format", "mermaid"])
    assert mermaid.exit_code == 0
    assert mermaid.output == mermaid_flowchart(journey)
    missing = runner.invoke(cli_journeys.app, ["show", "no-such-journey"])
    assert missing.exit_code == 3
    assert "no journey 'no-such-journey'" in missing.output and "outpatient-visit" in missing.output

"""The generated journey pages: one per stock journey, up to date with its file."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from carepath.cli import journeys as cli_journeys
from carepath.definition.doc_figures import (figures_path, figures_record, figures_section, population_path,
                                             read_figures, simulate_command)
from carepath.definition.journey_files import JourneyFileError, load_journey_file
from carepath.definition.render_docs import ADAPT_HEADING, journey_page, opening_comment
from carepath.definition.render_mermaid import mermaid_flowchart
from tests.library.journeys import DOCS, STOCK, TEST_JOURNEYS, ids, load

REGENERATE = "run: carepath journeys doc --out docs/journeys"
SIMULATE = "run: carepath journeys doc NAME --simulate --out docs/journeys"


@pytest.fixture
def no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CAREPATH_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("path", STOCK, ids=ids(STOCK))
def test_the_committed_page_is_up_to_date(path: Path):
    journey = load(path)
    page = DOCS / f"{journey.name}.md"
    assert page.exists(), f"no page for {journey.name}: {REGENERATE}"
    expected = journey_page(journey, source_text=path.read_text(encoding="utf-8"), source_name=f"journeys/{path.name}",
                            figures=read_figures(path, journey.name))
    assert page.read_text(encoding="utf-8") == expected, REGENERATE


@pytest.mark.parametrize("path", STOCK, ids=ids(STOCK))
def test_every_stock_page_has_its_simulated_load_and_what_to_adapt(path: Path):
    """Per 1,000 patients a month, simulated for the journey as it is now; and what a hospital adapts."""
    journey = load(path)
    record = read_figures(path, journey.name)
    assert record is not None, f"{journey.name} was never simulated for its page: {SIMULATE}"
    assert record["version"] == journey.version, f"{journey.name} changed since its figures: {SIMULATE}"
    own = population_path(path, journey.name)  # the journey's own kind of patients, when it has a file
    assert record.get("population") == (f"journeys/simulated/{own.name}" if own.is_file() else None)
    assert record["command"] == simulate_command(journey.name, record["patients"], record["days"], record["seed"],
                                                 record.get("population"))
    page = (DOCS / f"{journey.name}.md").read_text(encoding="utf-8")
    section = page.split("## Simulated load\n", 1)[1].split("\n## ", 1)[0]
    assert f"`{record['command']}` run on {record['run_on']}" in section
    assert "| channel | messages |" in section and "| **all** |" in section
    for channel in record["messages"]:
        assert f"| {channel} | " in section
    for team in record["tasks"]:
        assert f"| {team} | " in section
    assert ("| team | staff tasks |" in section) == bool(record["tasks"])
    adapt = page.split(ADAPT_HEADING + "\n", 1)[1].split("\n## ", 1)[0]
    assert journey.adapt is not None and len(journey.adapt.topics()) >= 6
    for topic in ("Timings", "Teams", "SLAs", "Wording", "Who enrolls", "Conditions"):
        assert f"- **{topic}" in adapt


def test_figures_are_scaled_to_1000_patients_a_month():
    journey = load(STOCK[0])
    simulated = {"messages_per_day": {"2026-03-02": {"sms": 3, "wechat": 10}, "2026-03-03": {"wechat": 2}},
                 "staff_tasks": {"teams": {"nursing": {"total": 4, "peak_day": "2026-03-03", "peak": 3,
                                                       "kinds": {"call_patient": 4}}}},
                 "totals": {"enrollments": 50}, "run": {"start": "2026-03-02"}}
    record = figures_record(journey, simulated, patients=250, days=15, seed=3, run_on=__import__("datetime").date(
        2026, 12, 7))
    lines = figures_section(journey, record)
    text = "\n".join(lines)
    assert "Simulated with 250 patients over 15 days and scaled to 1,000 patients and 30 days." in text
    assert "| sms | 24 |" in text and "| wechat | 96 |" in text and "| **all** | 120 |" in text  # x 4 x 2
    assert "| nursing | 32 | call_patient 32 | 2026-03-03 | 24 |" in text
    assert "Enrollments: 400 (" in text
    stale = figures_section(journey, {**record, "version": "000000000000"})
    assert any("the journey is now version" in line for line in stale)
    assert "Not simulated yet" in figures_section(journey, None)[2]


def test_adapt_notes_name_known_topics_only(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(STOCK[0].read_text(encoding="utf-8").replace("adapt:\n", "adapt:\n  budget: \"less\"\n", 1),
                   encoding="utf-8")
    with pytest.raises(JourneyFileError, match="budget"):
        load_journey_file(bad)


def test_doc_simulate_records_the_figures_it_shows(no_config, tmp_path: Path):
    """``--simulate`` runs the simulation, keeps its figures next to the journey file, and the page shows them."""
    source = tmp_path / "programme.yaml"
    source.write_text(TEST_JOURNEYS[0].read_text(encoding="utf-8"), encoding="utf-8")
    result = CliRunner().invoke(cli_journeys.app, ["doc", str(source), "--simulate", "--patients", "40", "--days",
                                                   "3", "--seed", "2", "--out", str(tmp_path / "pages")])
    assert result.exit_code == 0, result.output
    journey = load(source)
    record = read_figures(source, journey.name)
    assert figures_path(source, journey.name).parent == tmp_path / "simulated"
    assert (record["patients"], record["days"], record["seed"], record["version"]) == (40, 3, 2, journey.version)
    page = (tmp_path / "pages" / f"{journey.name}.md").read_text(encoding="utf-8")
    assert f"`carepath simulate {journey.name} --patients 40 --days 3 --seed 2` run on {record['run_on']}" in page
    assert "scaled to 1,000 patients and 30 days" in page


def test_every_page_belongs_to_a_stock_journey():
    names = {load(path).name for path in STOCK}
    assert {page.stem for page in DOCS.glob("*.md")} == names


def test_a_page_has_the_purpose_the_map_and_every_step():
    path = TEST_JOURNEYS[0]
    text = path.read_text(encoding="utf-8")
    journey = load(path)
    page = journey_page(journey, source_text=text, source_name="programme.yaml")
    purpose = opening_comment(text)
    assert purpose[0].startswith("A test programme with every trigger") and not any("yaml-language-server" in line
                                                                                    for line in purpose)
    assert "\n".join(purpose) in page
    assert f"```mermaid\n{mermaid_flowchart(journey)}```" in page
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    for step in journey.steps:
        assert any(row.startswith(f"| `{step.id}` | {step.stage.value} |") for row in rows)
    assert "| `hba1c-unanswered` | post_visit | 3d after hba1c sent, unless replied | task call_patient → nursing, " \
           "SLA 1d |" in page
    assert "`{{ patient.surname }}" not in page and "{{ patient.surname }}先生/女士，该服药了。" in page


def test_table_cells_escape_pipes():
    journey = load(TEST_JOURNEYS[1])  # greetings-test: a condition with 'x|y'
    page = journey_page(journey)
    [row] = [line for line in page.splitlines() if line.startswith("| `end` |")]
    assert "'x\\|y'" in row and row.count(" | ") == 6


def test_doc_command_writes_the_pages(no_config, tmp_path: Path):
    out = tmp_path / "pages"
    result = CliRunner().invoke(cli_journeys.app, ["doc", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for path in STOCK:
        name = load(path).name
        assert (out / f"{name}.md").read_text(encoding="utf-8") == (DOCS / f"{name}.md").read_text(encoding="utf-8")
    one = CliRunner().invoke(cli_journeys.app, ["doc", str(TEST_JOURNEYS[0])])
    assert one.exit_code == 0 and one.output.startswith("<!-- generated by") and "# diabetes-programme-test" in one.output

"""``carepath journeys new --from STOCK`` and ``journeys diff``: a hospital adapts a stock journey."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carepath.definition.journey_files import load_journey_file
from carepath.definition.journey_schema import SCHEMA_FILE, schema_text

ROOT = Path(__file__).resolve().parents[2]
STOCK = ROOT / "journeys" / "outpatient-visit.yaml"
CONFIG = """\
[connectors.wechat]
type = "outbox"

[connectors.sms]
type = "outbox"
address = "phone"

[journeys]
paths = ["journeys"]
enabled = ["checkup"]
"""


@pytest.fixture
def folder(workdir: Path) -> Path:
    """A hospital's folder: carepath.toml with wechat and sms channels and an empty journeys folder."""
    (workdir / "journeys").mkdir()
    (workdir / "carepath.toml").write_text(CONFIG, encoding="utf-8")
    return workdir


def test_new_copies_the_stock_journey_and_validate_passes(folder: Path, cli):
    result = cli("journeys", "new", "my-outpatient", "--from", "outpatient-visit")
    assert result.exit_code == 0, result.output
    copy = folder / "journeys" / "my-outpatient.yaml"
    stock = load_journey_file(STOCK)
    journey = load_journey_file(copy)
    assert journey.name == "my-outpatient"
    assert (journey.origin.journey, journey.origin.version) == ("outpatient-visit", stock.version)
    assert journey.steps == stock.steps and journey.templates == stock.templates
    text = copy.read_text(encoding="utf-8")
    assert text.startswith(f"# yaml-language-server: $schema={SCHEMA_FILE}\n")
    assert text.count("yaml-language-server") == 1
    assert "# The built-in outpatient journey" in text  # the stock file's comments come along
    questionnaire = folder / "journeys" / "questionnaires" / "outpatient-satisfaction.json"
    assert questionnaire.read_bytes() == (ROOT / "journeys" / "questionnaires" / questionnaire.name).read_bytes()
    assert not (folder / "journeys" / "questionnaires" / "post-discharge-followup.json").exists()  # not used
    assert (folder / "journeys" / SCHEMA_FILE).read_text(encoding="utf-8") == schema_text()
    assert "add 'my-outpatient' there for it to run" in result.output
    checked = cli("journeys", "validate", "journeys/my-outpatient.yaml")
    assert checked.exit_code == 0, checked.output
    assert "1 journey file(s) valid" in checked.output


def test_diff_shows_exactly_the_template_changed_by_hand(folder: Path, cli):
    assert cli("journeys", "new", "my-outpatient", "--from", "outpatient-visit").exit_code == 0
    unchanged = cli("journeys", "diff", "my-outpatient")
    assert unchanged.exit_code == 0, unchanged.output
    assert "against stock outpatient-visit" in unchanged.output and "0 difference(s)" in unchanged.output
    copy = folder / "journeys" / "my-outpatient.yaml"
    old = "提醒：您的门诊时间为{{ anchors.appointment | time }}，请按时到院签到。"
    new = "提醒：您的门诊时间为{{ anchors.appointment | time }}，请提前15分钟到院签到。"
    text = copy.read_text(encoding="utf-8")
    assert text.count(old) == 1
    copy.write_text(text.replace(old, new).replace("# Channels `wechat`", "# Our channels `wechat`"),
                    encoding="utf-8")
    result = cli("journeys", "diff", "my-outpatient", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [(d["what"], d["name"], d["change"]) for d in report["differences"]] == [
        ("template", "visit_reminder", "changed")]
    [difference] = report["differences"]
    assert f"-body: {old}" in difference["lines"] and f"+body: {new}" in difference["lines"]
    shown = cli("journeys", "diff", "journeys/my-outpatient.yaml")
    assert "1 difference(s)" in shown.output and "template visit_reminder: changed" in shown.output
    assert f"+body: {new}" in shown.output
    assert cli("journeys", "validate", "journeys/").exit_code == 0


def test_diff_lists_steps_questionnaires_and_fields_changed(folder: Path, cli):
    assert cli("journeys", "new", "my-outpatient", "--from", "outpatient-visit").exit_code == 0
    copy = folder / "journeys" / "my-outpatient.yaml"
    text = copy.read_text(encoding="utf-8")
    text = text.replace("reentry: per_key", "reentry: after_exit").replace(
        "after: {anchor: visit_end, offset: 14d, at: \"20:30\"}", "after: {anchor: visit_end, offset: 21d, at: \"20:30\"}")
    cut = text.index("  - id: recheck-day30")
    text = text[:cut] + text[text.index("  - id: health-tips"):]
    copy.write_text(text, encoding="utf-8")
    questionnaire = folder / "journeys" / "questionnaires" / "outpatient-satisfaction.json"
    resource = json.loads(questionnaire.read_text(encoding="utf-8"))
    resource["title"] = "我们的满意度调查"
    questionnaire.write_text(json.dumps(resource, ensure_ascii=False), encoding="utf-8")
    result = cli("journeys", "diff", "my-outpatient", "--json")
    report = json.loads(result.stdout)
    assert sorted((d["what"], d["name"], d["change"]) for d in report["differences"]) == [
        ("journey", "reentry", "changed"), ("questionnaire", "outpatient-satisfaction", "changed"),
        ("step", "health-tips", "changed"), ("step", "recheck-day30", "removed")]


def test_new_refuses_a_taken_name_an_unknown_stock_and_a_bad_name(folder: Path, cli):
    assert cli("journeys", "new", "my-outpatient", "--from", "outpatient-visit").exit_code == 0
    copy = folder / "journeys" / "my-outpatient.yaml"
    copy.write_text(copy.read_text(encoding="utf-8") + "# my notes\n", encoding="utf-8")
    again = cli("journeys", "new", "my-outpatient", "--from", "outpatient-visit")
    assert again.exit_code == 1 and "already exists" in again.output
    assert copy.read_text(encoding="utf-8").endswith("# my notes\n")  # nothing overwritten
    unknown = cli("journeys", "new", "mine", "--from", "no-such-stock")
    assert unknown.exit_code == 3 and "no stock journey 'no-such-stock'" in unknown.output
    assert "outpatient-visit" in unknown.output
    bad = cli("journeys", "new", "My Journey", "--from", "outpatient-visit")
    assert bad.exit_code == 2 and "lowercase letters, digits and dashes" in bad.output
    assert sorted(p.name for p in (folder / "journeys").glob("*.yaml")) == ["my-outpatient.yaml"]


def test_diff_of_a_journey_without_origin_needs_from(folder: Path, cli):
    (folder / "journeys" / "own.yaml").write_text(
        STOCK.read_text(encoding="utf-8").replace("name: outpatient-visit", "name: own"), encoding="utf-8")
    result = cli("journeys", "diff", "own")
    assert result.exit_code == 1 and "records no origin" in result.output and "--from STOCK" in result.output
    given = cli("journeys", "diff", "own", "--from", "outpatient-visit")
    assert given.exit_code == 0 and "0 difference(s)" in given.output
    missing = cli("journeys", "diff", "nobody")
    assert missing.exit_code == 3 and "no journey 'nobody'" in missing.output


def test_diff_says_when_the_stock_journey_changed_since_the_copy(folder: Path, cli):
    assert cli("journeys", "new", "my-outpatient", "--from", "outpatient-visit").exit_code == 0
    copy = folder / "journeys" / "my-outpatient.yaml"
    stock_version = load_journey_file(STOCK).version
    copy.write_text(copy.read_text(encoding="utf-8").replace(stock_version, "000000000000"), encoding="utf-8")
    result = cli("journeys", "diff", "my-outpatient")
    assert result.exit_code == 0, result.output
    assert "the stock journey changed since the copy was made from version 000000000000" in result.output
    report = json.loads(cli("journeys", "diff", "my-outpatient", "--json").stdout)
    assert (report["copied_from_version"], report["stock_version"]) == ("000000000000", stock_version)


def test_new_into_a_folder_carepath_toml_does_not_run_says_so(folder: Path, cli):
    result = cli("journeys", "new", "trial", "--from", "outpatient-visit", "--into", "drafts")
    assert result.exit_code == 0, result.output
    assert (folder / "drafts" / "trial.yaml").exists() and not (folder / "journeys" / "trial.yaml").exists()
    assert "drafts is not in [journeys] paths" in result.output
    assert cli("journeys", "diff", "drafts/trial.yaml").exit_code == 0

"""FAQ files: matching rules, and every problem reported with its file and entry (in carepath.toml checks too)."""

from __future__ import annotations

import pytest

from carepath.config import ConfigError, load_config
from carepath.runtime.conversations.faq import FaqError, faq_files, load_faq

from tests.conversations.conftest import FAQ


@pytest.mark.parametrize("text, rule", [
    ("怎么挂号", "faq:booking"), ("请问 怎么挂号?", "faq:booking"), ("想预约下周的专家门诊", "faq:booking"),
    ("我的报告出来了吗", "faq:report"), ("谢谢", "faq:thanks"), ("OK!", "faq:thanks"),
    ("投诉：挂号窗口态度太差", "faq:complaint"), ("谢谢你们，想问下报告出来了吗", "faq:report"),
    ("你好我想问下我妈妈的药", None), ("", None), ("。。。", None),
])
def test_the_matcher_picks_the_most_specific_entry(text, rule):
    found = FAQ.match(text)
    assert (found.rule if found else None) == rule


def _write(tmp_path, name, body):
    folder = tmp_path / "faq"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(body, encoding="utf-8")
    return folder


def test_each_problem_names_the_file_the_entry_and_the_key(tmp_path):
    folder = _write(tmp_path, "a.yaml", """
entries:
  - id: booking
    category: appointments
    patterns: ["挂号"]
  - id: hours
    category: info
    patterns: ["re:(几点"]
    answer: "8:00-17:00"
  - id: bad-answer
    category: info
    patterns: ["停车"]
    answer: "{{ patient.name "
  - id: Booking Two
    category: info
    patterns: ["，。"]
    answer: "x"
    colour: red
""")
    _write(tmp_path, "b.yaml", "entries:\n  - {id: booking, category: x, patterns: [a], answer: b}\n")
    _write(tmp_path, "c.yaml", "- just a list\n")
    with pytest.raises(FaqError) as caught:
        load_faq(faq_files([folder], tmp_path), tmp_path)
    problems = caught.value.problems
    assert any(p.startswith("faq/a.yaml: entries[0] (booking):") and "answer is required" in p for p in problems)
    assert any(p.startswith("faq/a.yaml: entries[1] (hours): patterns:") and "not a valid regular expression" in p
               for p in problems)
    assert any(p.startswith("faq/a.yaml: entries[2] (bad-answer): answer:") for p in problems)
    assert any(p.startswith("faq/a.yaml: entries[3] (Booking Two): id:") for p in problems)
    assert any(p.startswith("faq/a.yaml: entries[3] (Booking Two): patterns:") and "empty" in p for p in problems)
    assert any(p.startswith("faq/a.yaml: entries[3] (Booking Two): colour:") for p in problems)
    assert any(p.startswith("faq/c.yaml:") and "entries" in p for p in problems)


def test_a_duplicate_id_across_files_names_both(tmp_path):
    folder = _write(tmp_path, "a.yaml", "entries:\n  - {id: booking, category: x, patterns: [挂号], answer: y}\n")
    _write(tmp_path, "b.yaml", "entries:\n  - {id: booking, category: x, patterns: [预约], answer: z}\n")
    with pytest.raises(FaqError, match=r"faq/b.yaml: entries\[0\] \(booking\): id 'booking' is already used in "
                                       r"faq/a.yaml"):
        load_faq(faq_files([folder], tmp_path), tmp_path)


def test_carepath_toml_loads_the_faq_and_reports_its_problems_under_conversations(tmp_path):
    _write(tmp_path, "a.yaml", "entries:\n  - {id: booking, category: x, patterns: [挂号], answer: 请点菜单}\n")
    config = tmp_path / "carepath.toml"
    config.write_text('[conversations]\nred_flag_words = ["胸痛", "re:伤口.{0,4}渗血"]\ncare_team = "ward-3"\n'
                      '[complaints]\nresolution_workdays = 5\n', encoding="utf-8")
    loaded = load_config(config)
    assert loaded.faq.match("怎么挂号").rule == "faq:booking"
    assert loaded.conversations.care_team == "ward-3" and loaded.complaints.resolution_workdays == 5
    _write(tmp_path, "b.yaml", "entries:\n  - {id: parking, category: x, patterns: [停车]}\n")
    config.write_text('[conversations]\nred_flag_words = ["re:(("]\nunknown = 1\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    shown = [str(p) for p in caught.value.problems]
    assert any(p.startswith("conversations.red_flag_words:") and "regular expression" in p for p in shown)
    assert any(p.startswith("conversations.unknown: unknown key") for p in shown)
    assert any(p.startswith("conversations.faq_paths: faq/b.yaml: entries[0] (parking):") for p in shown)

"""The journey schema in an editor: yaml-language-server, pointed at it by the modeline, checks, completes
and explains a journey file as it is typed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from carepath.definition.journey_schema import SCHEMA_FILE
from tests.library.journeys import STOCK, STOCK_FOLDER
from tests.lsp import YamlLanguageServer, yaml_language_server


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hospital's journeys folder: the schema and copies of the stock journeys (modeline included)."""
    folder = tmp_path_factory.mktemp("journeys")
    shutil.copy(STOCK_FOLDER / SCHEMA_FILE, folder / SCHEMA_FILE)
    for path in STOCK:
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def editor(folder: Path):
    yield from yaml_language_server(folder)


@pytest.mark.parametrize("path", STOCK, ids=[p.name for p in STOCK])
def test_a_stock_journey_has_no_problems_in_the_editor(path: Path, folder: Path, editor: YamlLanguageServer):
    assert editor.open(folder / path.name) == []


def test_the_editor_marks_an_unknown_step_field_and_a_bad_duration(folder: Path, editor: YamlLanguageServer):
    lines = (folder / "outpatient-visit.yaml").read_text(encoding="utf-8").splitlines()
    misspelt = next(i for i, line in enumerate(lines) if line == "    category: transactional")
    offset = next(i for i, line in enumerate(lines) if "offset: 2h}" in line)
    lines[misspelt] = "    categroy: transactional"
    lines[offset] = lines[offset].replace("offset: 2h}", "offset: soon}")
    edited = folder / "edited.yaml"
    edited.write_text("\n".join(lines) + "\n", encoding="utf-8")
    problems = {(d["range"]["start"]["line"], d["message"].split(" of ")[0]) for d in editor.open(edited)}
    assert (misspelt, "Property categroy is not allowed.") in problems
    assert (offset, "String does not match the pattern") in problems
    assert len(problems) == 2


def test_the_editor_completes_step_keys_and_explains_them(folder: Path, editor: YamlLanguageServer):
    path = folder / "typing.yaml"
    path.write_text(f"# yaml-language-server: $schema={SCHEMA_FILE}\nname: typing\nenroll: {{events: [visit.checked_in]}}\n"
                    "steps:\n  - id: first\n    stage: post_visit\n    \n", encoding="utf-8")
    editor.open(path)
    offered = set(editor.completion(path, 6, 4))
    assert {"on", "before", "after", "every", "after_step", "idle", "calendar"} <= offered  # triggers
    assert {"send", "survey", "task", "tag", "when", "category", "missed"} <= offered
    assert "pre_visit, in_visit or post_visit" in editor.hover(path, 5, 5).replace("\\_", "_")  # markdown

"""Issue 20.6: docs/segments.md documents every portrait field, and its worked examples run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from carepath.definition.portrait import portrait_fields
from carepath.definition.segments import DEFAULTS

DOC = Path(__file__).resolve().parents[2] / "docs" / "segments.md"
EXAMPLE = re.compile(r"<!-- example: runs -->\n```python\n(.*?)```", re.S)


def test_every_portrait_field_and_shipped_segment_is_documented():
    text = DOC.read_text(encoding="utf-8")
    for name, (kind, meaning) in portrait_fields().items():
        assert f"| `{name}` | {kind} | {meaning} |" in text, f"portrait field {name} is not documented as it is"
    for name in DEFAULTS:
        assert f"`{name}`" in text, f"shipped segment {name} is not documented"


EXAMPLES = EXAMPLE.findall(DOC.read_text(encoding="utf-8"))


def test_the_doc_has_worked_examples():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("source", EXAMPLES, ids=[f"example-{i}" for i in range(len(EXAMPLES))])
def test_worked_example_runs(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(source, f"{DOC.name} example", "exec"), {"__name__": "docs_example"})

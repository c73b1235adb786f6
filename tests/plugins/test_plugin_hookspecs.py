"""Every hook is specified with a docstring and documented in docs/plugins.md."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from carepath.plugins import hookspecs
from carepath.plugins.manager import hook_names

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
HOOKS = ["carepath_connectors", "carepath_journeys", "carepath_templates", "carepath_event_types",
         "carepath_segments", "carepath_web_routes", "carepath_before_send", "carepath_event",
         "carepath_staff_directory", "carepath_encryption_keys", "carepath_classify_message"]


def undocumented(doc_text: str, hooks: list[str]) -> list[str]:
    """Hooks that no Markdown heading of ``doc_text`` names."""
    headings = [line for line in doc_text.splitlines() if re.match(r"^#{1,6}\s", line)]
    return [h for h in hooks if not any(re.search(rf"\b{h}\b", line) for line in headings)]


def test_the_hooks_are_specified() -> None:
    assert hook_names() == HOOKS


@pytest.mark.parametrize("name", hook_names())
def test_hook_has_docstring(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name))
    assert doc and len(doc) > 20, f"hook {name} needs a docstring"


def test_every_hook_has_a_section_in_docs() -> None:
    missing = undocumented(DOC.read_text(encoding="utf-8"), hook_names())
    assert not missing, f"docs/plugins.md has no section for: {', '.join(missing)}"


def test_the_check_notices_a_missing_section() -> None:
    text = DOC.read_text(encoding="utf-8").replace("### `carepath_segments()`", "### Segments")
    assert undocumented(text, hook_names()) == ["carepath_segments"]


def test_existing_hook_signatures_kept() -> None:
    for name in ("carepath_connectors", "carepath_journeys", "carepath_templates"):
        assert list(inspect.signature(getattr(hookspecs, name)).parameters) == []
    assert list(inspect.signature(hookspecs.carepath_before_send).parameters) == ["touchpoint", "message"]
    assert list(inspect.signature(hookspecs.carepath_event).parameters) == ["event"]

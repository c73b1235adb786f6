"""The public API (what docs/plugins.md tells people to import) imports, and modules moved in the engine/
regrouping still import under their old names for a release, with a DeprecationWarning naming the new place."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from carepath._moved import MOVED

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _api_table() -> list[tuple[str, list[str]]]:
    """``(module, names)`` rows of the public API table in docs/plugins.md."""
    text = (DOCS / "plugins.md").read_text(encoding="utf-8")
    section = text.split("## What to import: the public API", 1)[1].split("**Moved modules.**", 1)[0]
    rows = re.findall(r"^\| `(carepath[\w.]*)` \| (.*) \|$", section, re.M)
    return [(module, re.findall(r"`(\w+)`", names)) for module, names in rows]


def _named_in_docs() -> set[str]:
    """Every ``carepath.x.y`` the writing guides name, and every ``from carepath... import`` in their code."""
    found: set[str] = set()
    for page in ("plugins.md", "journeys.md"):
        text = (DOCS / page).read_text(encoding="utf-8")
        found.update(m for m in re.findall(r"`(carepath(?:\.\w+)+)", text) if not m.endswith(".toml"))
        for module, names in re.findall(r"^from (carepath(?:\.\w+)*) import ([\w, ]+)$", text, re.M):
            found.update(f"{module}.{name.strip()}" for name in names.split(","))
    return found - {f"carepath.{old.split('.')[1]}" for old in MOVED} - set(MOVED)


def _resolve(dotted: str) -> object:
    """The module or attribute ``dotted`` names (the longest importable module, then attributes)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_the_public_api_table_lists_modules_and_names_that_import_without_warnings() -> None:
    rows = _api_table()
    assert len(rows) >= 10 and all(names or "hookspecs" in module for module, names in rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for module, names in rows:
            imported = importlib.import_module(module)
            for name in names:
                assert hasattr(imported, name), f"docs/plugins.md: {module} has no {name}"


@pytest.mark.parametrize("dotted", sorted(_named_in_docs()))
def test_every_name_the_writing_guides_use_exists(dotted: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        _resolve(dotted)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_a_moved_module_imports_under_its_old_name_with_a_warning_naming_the_new_place(old: str) -> None:
    new = importlib.import_module(MOVED[old])
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=re.escape(f"{old} has moved to {MOVED[old]}")) as caught:
        module = importlib.import_module(old)
    assert module is new
    assert caught[0].filename == __file__, "the warning points at the line that imported the old name"
    public = [name for name in vars(new) if not name.startswith("_")]
    assert public and all(getattr(module, name) is getattr(new, name) for name in public)


def _warned_in_a_fresh_interpreter(script: str, moves: list[tuple[str, str]]) -> None:
    """``script`` runs with every warning shown, and each ``(old, new)`` of ``moves`` was warned of at its line."""
    script = "import warnings\nwarnings.simplefilter('always')\n" + script
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for old, new in moves:
        assert f"<string>:" in result.stderr and f"{old} has moved to {new}" in result.stderr


def test_old_imports_in_a_plugins_code_keep_working() -> None:
    """As an integrator's script would write them before the regrouping, in a fresh interpreter."""
    script = ("from carepath.dsl import journey, enroll_on, step, on, send\n"
              "from carepath.model import Journey\n"
              "from carepath.events import EventIn\n"
              "from carepath.clock import VirtualClock\n"
              "import carepath.definition.model as m, carepath.runtime.clock as c\n"
              "assert Journey is m.Journey and VirtualClock is c.VirtualClock\n"
              "j = journey('x', enroll=enroll_on('appointment.booked'), steps=[step('s', 'pre_visit', "
              "on('appointment.booked'), send('t', via=['sms']))])\n"
              "assert isinstance(j, Journey)\n")
    _warned_in_a_fresh_interpreter(script, [
        ("carepath.dsl", "carepath.definition.dsl"), ("carepath.model", "carepath.definition.model"),
        ("carepath.events", "carepath.definition.events"), ("carepath.clock", "carepath.runtime.clock")])


def test_the_statement_modules_old_names_keep_working_with_a_warning() -> None:
    """``carepath.store.prepared`` and ``carepath.runtime.dispatch.statements`` became ``carepath.store.statements``:
    a plugin importing from the old places, in a fresh interpreter, gets the same functions and a warning each."""
    script = ("from carepath.store.prepared import insert_row, insert_returning, update_by_id\n"
              "from carepath.runtime.dispatch.statements import among, fetch, sql_for\n"
              "import carepath.store.statements as s\n"
              "assert (insert_row, insert_returning, update_by_id, among, fetch, sql_for) == "
              "(s.insert_row, s.insert_returning, s.update_by_id, s.among, s.fetch, s.sql_for)\n")
    _warned_in_a_fresh_interpreter(script, [(old, "carepath.store.statements") for old in (
        "carepath.store.prepared", "carepath.runtime.dispatch.statements")])

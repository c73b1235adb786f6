"""Fixtures for the plugin tests: real (temporary) installed distributions."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path
import pytest
from tests.plugins.plugin_samples import InstallPlugin

_count = itertools.count()


@pytest.fixture(autouse=True)
def _no_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAREPATH_PLUGINS", raising=False)


@pytest.fixture
def install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> InstallPlugin:
    """Install a one-module plugin distribution into a temporary site dir on ``sys.path``.

    ``install_plugin("acme", source)`` writes ``<module>.py`` with ``source`` and a
    ``*.dist-info`` whose entry point ``acme`` (group ``carepath``) names it; returns
    the module name (unique per call, so nothing leaks between tests through
    ``sys.modules``).
    """
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def install(name: str, source: str, *, version: str = "1.0.0", dist: str | None = None) -> str:
        module = f"cp_test_plugin_{name.replace('-', '_')}_{next(_count)}"
        (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        dist = dist or f"carepath-{name}"
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
        (info / "entry_points.txt").write_text(f"[carepath]\n{name} = {module}\n", encoding="utf-8")
        return module

    return install

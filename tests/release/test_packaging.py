"""The built package holds everything the checkout runs: every module, every data file, working entry points.

Editable installs read the checkout, so they hide a package or data file missing from the wheel; these
tests build the wheel the way a release is built and look inside it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from configparser import ConfigParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"engine": "carepath", "plugins": "carepath/plugins", "connectors": "carepath/connectors",
           "journeys": "carepath/journeys"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("dist")
    # from a copy: an in-tree build/ folder left by an earlier build would hide what this one misses
    source = tmp_path_factory.mktemp("source") / "carepath"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info",
                                                                "__pycache__", ".carepath", ".hypothesis"))
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
                         capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        pytest.fail(f"the wheel does not build:\n{run.stdout}\n{run.stderr}")
    (built,) = out.glob("carepath-*.whl")
    return zipfile.ZipFile(built)


def _tracked(folder: str) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", folder], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:  # not a git checkout (an unpacked sdist): every file on disk
        return [p.relative_to(ROOT) for p in (ROOT / folder).rglob("*")
                if p.is_file() and "__pycache__" not in p.parts]
    return [Path(line) for line in listed.stdout.splitlines()]


def test_every_module_and_data_file_of_the_checkout_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    missing = []
    for folder, target in FOLDERS.items():
        for path in _tracked(folder):
            inside = f"{target}/{path.relative_to(folder).as_posix()}"
            if inside not in names:
                missing.append(str(path))
    assert not missing, f"files of the checkout missing from the wheel: {missing}"


def test_the_wheel_installs_no_top_level_package_but_carepath(wheel: zipfile.ZipFile) -> None:
    tops = {name.split("/")[0] for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"carepath"}


def test_entry_points_name_modules_inside_the_wheel(wheel: zipfile.ZipFile) -> None:
    (entry,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    parser = ConfigParser()
    parser.read_string(wheel.read(entry).decode())
    names = set(wheel.namelist())
    targets = [value.split(":")[0] for section in parser.sections() for value in parser[section].values()]
    assert "carepath.cli" in targets
    for module in targets:
        as_path = module.replace(".", "/")
        assert f"{as_path}.py" in names or f"{as_path}/__init__.py" in names, module


def test_the_licence_is_an_spdx_expression(wheel: zipfile.ZipFile) -> None:
    (meta,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    text = wheel.read(meta).decode()
    assert "License-Expression: Apache-2.0" in text

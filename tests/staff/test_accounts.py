"""Staff accounts from carepath.toml, a staff file and the hospital's directory (a plugin), with fixed roles."""

from __future__ import annotations

from pathlib import Path

import pytest

from carepath.config import ConfigError, load_config
from carepath.plugins.hookspecs import hookimpl
from carepath.plugins.manager import load_plugins

TOML = """\
[teams.ward-a]

[accounts]
file = "staff.toml"
session_ttl = "8h"

[staff.wang]
team = "ward-a"
role = "head_nurse"
token = {env = "T_WANG"}
"""

STAFF_FILE = """\
[staff.li]
teams = ["ward-a", "ward-b"]
role = "doctor"
token = {env = "T_LI"}

[staff.zhao]
role = "operations"
token = {env = "T_ZHAO"}
"""


class Directory:
    """The hospital's directory, as a plugin would read it from LDAP or the HR system."""

    def __init__(self, accounts: dict) -> None:
        self.accounts = accounts

    @hookimpl
    def carepath_staff_directory(self):
        return self.accounts


def manager_with(accounts: dict):
    manager = load_plugins()
    manager.pm.register(Directory(accounts), name="hr-directory")
    return manager


@pytest.fixture
def folder(tmp_path: Path, monkeypatch) -> Path:
    for var in ("T_WANG", "T_LI", "T_ZHAO"):
        monkeypatch.setenv(var, f"{var.lower()}-a-long-login-secret")
    (tmp_path / "carepath.toml").write_text(TOML, encoding="utf-8")
    (tmp_path / "staff.toml").write_text(STAFF_FILE, encoding="utf-8")
    return tmp_path


def test_accounts_come_from_the_file_the_staff_file_and_the_directory(folder):
    directory = {"chen": {"team": "ward-b", "role": "health_manager", "token": "chen-directory-secret-1"}}
    config = load_config(folder / "carepath.toml", manager_with(directory))
    assert {n: (a.role, a.member_teams()) for n, a in config.staff.items()} == {
        "wang": ("head_nurse", ("ward-a",)), "li": ("doctor", ("ward-a", "ward-b")), "zhao": ("operations", ()),
        "chen": ("health_manager", ("ward-b",))}
    assert config.staff_origin == {"wang": "carepath.toml", "li": "staff.toml", "zhao": "staff.toml",
                                   "chen": "directory:hr-directory"}
    assert config.accounts.session_ttl.total_seconds() == 8 * 3600


def problems(folder: Path, directory: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(folder / "carepath.toml", manager_with(directory or {}))
    return [str(p) for p in info.value.problems]


def test_a_role_outside_the_fixed_set_is_refused_naming_the_key(folder):
    (folder / "staff.toml").write_text(STAFF_FILE.replace('"doctor"', '"janitor"'), encoding="utf-8")
    [problem] = problems(folder)
    assert problem.startswith("staff.toml: staff.li.role:") and "nurse" in problem and "administrator" in problem


def test_a_care_role_needs_a_team_and_a_name_is_defined_once(folder):
    (folder / "staff.toml").write_text(STAFF_FILE + '\n[staff.wang]\nrole = "nurse"\nteam = "ward-a"\n'
                                                    'token = {env = "T_LI"}\n', encoding="utf-8")
    directory = {"sun": {"role": "nurse", "token": "sun-directory-secret-1"},
                 "li": {"team": "ward-a", "role": "nurse", "token": "li-directory-secret-01"}}
    found = problems(folder, directory)
    assert "staff.toml: staff.wang: already defined in carepath.toml" in found
    assert "directory hr-directory: staff.li: already defined in staff.toml" in found
    assert any(p.startswith("directory hr-directory: staff.sun.") and "needs a team" in p for p in found)


def test_a_missing_staff_file_is_named(folder):
    (folder / "staff.toml").unlink()
    [problem] = problems(folder)
    assert problem.startswith("accounts.file: no such staff file:") and problem.endswith("staff.toml")

"""Where staff accounts come from, and how long a login lasts.

Accounts are ``[staff.NAME]`` tables (team or teams, role, token), read from three places, in order:

1. ``carepath.toml`` itself;
2. the staff file named by ``[accounts] file`` (a TOML file of the same ``[staff.NAME]`` tables,
   relative to ``carepath.toml``): the roster the ward keeps, apart from the engine's configuration;
3. the hospital's directory, through plugins implementing ``carepath_staff_directory``.

A name defined twice is a configuration problem naming both places. ``carepath.toml``::

    [accounts]
    file = "staff.toml"
    session_ttl = "12h"          # a staff page login lasts this long
    max_failures = 5             # refused logins per account within failure_window lock that account ...
    source_max_failures = 20     # ... and per source address, across every account
    failure_window = "15m"       # ... for this long
"""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from carepath.definition.durations import Duration
from carepath.teams import StaffMember


class AccountSettings(BaseModel):
    """``[accounts]``: the staff file, login session lifetime and the refused-login limits."""

    model_config = ConfigDict(extra="forbid")

    file: str | None = Field(None, description="a TOML file of [staff.NAME] tables, relative to carepath.toml")
    session_ttl: Duration = Field(timedelta(hours=12), description="how long a staff page login lasts")
    max_failures: int = Field(5, ge=1, le=100, description="refused logins of one account that lock it")
    source_max_failures: int = Field(20, ge=1, le=1000, description="refused logins from one address that "
                                                                    "lock the address out of every account")
    failure_window: Duration = Field(timedelta(minutes=15), description="how far back refused logins count, "
                                                                        "and how long a lock lasts")


Problem = Callable[[str, str], None]
Tables = Callable[[str, Any, type[BaseModel]], dict[str, Any]]


def staff_file_accounts(settings: AccountSettings, base: Path, tables: Tables, problem: Problem
                        ) -> dict[str, StaffMember]:
    """The accounts of the staff file (``{}`` without one); problems are reported as ``accounts.file`` or
    ``<file>: staff.NAME.key``."""
    if not settings.file:
        return {}
    path = (base / settings.file).resolve()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problem("accounts.file", f"no such staff file: {path}")
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        problem("accounts.file", f"cannot read the staff file {path}: {exc}")
        return {}
    unknown = [key for key in data if key != "staff"]
    if unknown:
        problem(f"{path.name}: {unknown[0]}", "a staff file holds only [staff.NAME] tables")
    return tables(f"{path.name}: staff", data.get("staff", {}), StaffMember)


def directory_accounts(batches: list[tuple[str, Any]], problem: Problem) -> dict[str, tuple[str, StaffMember]]:
    """``name -> (plugin, account)`` from the ``carepath_staff_directory`` results ``(plugin, mapping)``."""
    found: dict[str, tuple[str, StaffMember]] = {}
    for plugin, batch in batches:
        if batch is None:
            continue
        if not isinstance(batch, dict):
            problem(f"directory {plugin}", "carepath_staff_directory must return {name: {team, role, token}}")
            continue
        for name, fields in batch.items():
            try:
                account = fields if isinstance(fields, StaffMember) else StaffMember.model_validate(fields)
            except pydantic.ValidationError as exc:
                for error in exc.errors(include_input=False, include_url=False):
                    where = ".".join(map(str, error["loc"])) or "account"
                    problem(f"directory {plugin}: staff.{name}.{where}", error["msg"])
                continue
            if name in found:
                problem(f"directory {plugin}: staff.{name}", f"also given by plugin {found[name][0]}")
                continue
            found[name] = (plugin, account)
    return found


def merge_accounts(config: dict[str, StaffMember], file: dict[str, StaffMember], file_name: str | None,
                   directory: dict[str, tuple[str, StaffMember]], problem: Problem
                   ) -> tuple[dict[str, StaffMember], dict[str, str]]:
    """Every account once, and where each came from (``carepath.toml``, the file, ``directory:<plugin>``)."""
    accounts = dict(config)
    origin = {name: "carepath.toml" for name in config}
    for name, account in file.items():
        if name in accounts:
            problem(f"{file_name}: staff.{name}", f"already defined in {origin[name]}")
            continue
        accounts[name], origin[name] = account, str(file_name)
    for name, (plugin, account) in directory.items():
        if name in accounts:
            problem(f"directory {plugin}: staff.{name}", f"already defined in {origin[name]}")
            continue
        accounts[name], origin[name] = account, f"directory:{plugin}"
    return accounts, origin

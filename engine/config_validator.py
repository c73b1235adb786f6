"""Checking a parsed ``carepath.toml``: every problem collected with its key path, secrets never shown.

:class:`Validator` walks the document section by section (connectors through their plugin's ``Config``
model, journeys, teams, staff and accounts, segments, preferences, conversations and the FAQ) and
records a :class:`~carepath.config_types.ConfigProblem` per problem instead of stopping at the first;
:func:`plain_message` words a pydantic error for people.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import pydantic

from carepath.config_types import CONNECTOR_NAME, JOURNEY_KEYS, SECTIONS, ConfigProblem, ConnectorSpec
from carepath.definition.preferences import NAME, PreferenceField
from carepath.definition.segments import SegmentError, SegmentSet, build_segment_set
from carepath.plugins.contracts import Connector, connector_kind, secret_fields
from carepath.plugins.manager import PluginManager
from carepath.runtime.conversations.faq import FaqError, FaqSet, faq_files, load_faq
from carepath.runtime.conversations.settings import ConversationSettings
from carepath.staff_accounts import AccountSettings
from carepath.teams import StaffMember

class Validator:
    """Validates the parsed TOML document, collecting problems instead of stopping at the first."""

    def __init__(self, manager: PluginManager, environ: Mapping[str, str]) -> None:
        self.manager = manager
        self.types = manager.connector_types()
        self.environ = environ
        self.problems: list[ConfigProblem] = []
        self.hidden: set[str] = set()  # values that must never appear in a message

    def problem(self, path: str, message: str) -> None:
        self.problems.append(ConfigProblem(path, message))

    def document(self, data: dict[str, Any]) -> tuple[dict[str, ConnectorSpec], list[ConfigProblem]]:
        for key in data:
            if key not in SECTIONS:
                self.problem(key, f"unknown section (known: {', '.join(SECTIONS)})")
        section = data.get("connectors", {})
        if not isinstance(section, dict):
            self.problem("connectors", "must be a table of [connectors.<name>] sections")
            return {}, self.problems
        specs = {}
        for name, table in section.items():
            spec = self.connector(name, table)
            if spec is not None:
                specs[name] = spec
        return specs, self.problems

    def journeys(self, table: Any, base: Path) -> tuple[list[Path], list[str] | None]:
        """The ``[journeys]`` table: paths resolved against the file's folder, and the enabled names."""
        if not isinstance(table, dict):
            self.problem("journeys", "must be a table: [journeys] paths = [...], enabled = [...]")
            return [], None
        for key in table:
            if key not in JOURNEY_KEYS:
                self.problem(f"journeys.{key}", f"unknown key (known: {', '.join(JOURNEY_KEYS)})")
        paths = self._strings(table.get("paths", []), "journeys.paths", "files or folders of YAML journeys")
        enabled = table.get("enabled")
        if enabled is not None:
            enabled = self._strings(enabled, "journeys.enabled", "journey names")
        resolved = []
        for i, raw in enumerate(paths):
            path = (base / raw).resolve()
            if not path.exists():
                self.problem(f"journeys.paths[{i}]", f"no such file or folder: {path}")
            resolved.append(path)
        return resolved, enabled

    def segments(self, table: Any, base: Path) -> SegmentSet:
        """``[segments]``: options, ``[segments.<name>]`` tables and the segment files of ``paths``."""
        if not isinstance(table, dict):
            self.problem("segments", "must be a table: [segments] options and [segments.<name>] segments")
            return build_segment_set()
        try:
            return build_segment_set(table, base, self.manager.segments())
        except SegmentError as exc:
            for text in exc.problems:
                where, _, message = text.partition(": ")
                self.problem(where, message)
            return SegmentSet()

    def accounts(self, staff: dict[str, StaffMember], settings: AccountSettings, base: Path
                 ) -> tuple[dict[str, StaffMember], dict[str, str]]:
        """Staff accounts of carepath.toml, the staff file and the directory plugins, with their origin."""
        from carepath.staff_accounts import directory_accounts, merge_accounts, staff_file_accounts

        file = staff_file_accounts(settings, base, self.tables, self.problem)
        directory = directory_accounts(self.manager.staff_directory(), self.problem)
        return merge_accounts(staff, file, settings.file and Path(settings.file).name, directory, self.problem)

    def preferences(self, table: Any) -> dict[str, PreferenceField]:
        """``[preferences.<name>]``: preferences patients may set, each a lowercase name (issue 19)."""
        found = self.tables("preferences", table, PreferenceField)
        for name in table if isinstance(table, dict) else ():
            if not NAME.match(name):
                self.problem(f"preferences.{name}", "a preference name is lowercase letters, digits and _ "
                                                    "(e.g. exercise_time)")
                found.pop(name, None)
        return found

    def faq(self, conversations: ConversationSettings, base: Path) -> FaqSet:
        """The FAQ files of ``[conversations] faq_paths`` (issue 21); each problem names its file and entry."""
        try:
            return load_faq(faq_files(conversations.faq_paths, base), base)
        except FaqError as exc:
            for text in exc.problems:
                self.problem("conversations.faq_paths", text)
            return FaqSet()

    def _strings(self, value: Any, path: str, what: str) -> list[str]:
        if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
            return value
        self.problem(path, f"must be a list of {what}, e.g. [\"a\", \"b\"]")
        return []

    def tables(self, section: str, data: Any, model: type[pydantic.BaseModel]) -> dict[str, Any]:
        """``[section.<name>]`` tables, each validated by ``model``."""
        if not isinstance(data, dict):
            self.problem(section, f"must be a table of [{section}.<name>] sections")
            return {}
        found = {name: self.table(f"{section}.{name}", table, model) for name, table in data.items()}
        return {name: value for name, value in found.items() if value is not None}

    def table(self, path: str, data: Any, model: type[pydantic.BaseModel]) -> Any:
        """One table validated by ``model``; ``{env = ...}`` resolved, literal secrets refused."""
        if not isinstance(data, dict):
            self.problem(path, "must be a table")
            return None
        resolved, refused = self.options(path, secret_fields(model), data)
        try:
            return model.model_validate(resolved)
        except pydantic.ValidationError as exc:
            for error in exc.errors():
                if error["loc"] and error["loc"][0] in refused:
                    continue  # already reported (a literal secret, an unset variable), not "required key missing"
                where = ".".join([path, *map(str, error["loc"])])
                if error["type"] == "extra_forbidden":
                    self.problem(where, f"unknown key (known: {', '.join(model.model_fields)})")
                elif error["type"] == "missing":
                    self.problem(where, "required key missing")
                else:
                    self.problem(where, plain_message(error))
            return None

    def connector(self, name: str, table: Any) -> ConnectorSpec | None:
        base = f"connectors.{name}"
        if not CONNECTOR_NAME.match(name):
            self.problem(base, "connector names use lower-case letters, digits, '-' and '_'")
        if not isinstance(table, dict):
            self.problem(base, "must be a table with at least `type = \"...\"`")
            return None
        type_name = table.get("type")
        if not isinstance(type_name, str) or not type_name:
            self.problem(f"{base}.type", "required: the connector type, e.g. type = \"console\"")
            return None
        cls = self.types.get(type_name)
        if cls is None:
            self.problem(f"{base}.type", self._unknown_type(type_name))
            return None
        options, refused = self.options(base, secret_fields(cls.Config), {k: v for k, v in table.items() if k != "type"})
        try:
            config = cls.Config.model_validate(options)
        except pydantic.ValidationError as exc:
            secrets = secret_fields(cls.Config)
            # the context holds limits (min_length, le), not the input: plain_message needs it
            for error in exc.errors(include_input=False, include_url=False):
                if error["loc"] and error["loc"][0] in refused:
                    continue  # already reported (a literal secret, an unset variable)
                secret = bool(error["loc"]) and error["loc"][0] in secrets
                self.problem(".".join([base, *map(str, error["loc"])]), self._message(error, cls, secret))
            return None
        if refused:
            return None
        return ConnectorSpec(name=name, type=type_name, kind=connector_kind(cls), cls=cls, config=config)

    def options(self, base: str, secrets: Iterable[str], raw: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
        """Resolve ``{env = "NAME"}`` references and refuse literal secrets of the table at ``base``:
        ``(options, refused keys)``; each refused key is reported once, naming the variable to set."""
        resolved: dict[str, Any] = {}
        refused: set[str] = set()
        for key, value in raw.items():
            path = f"{base}.{key}"
            if _is_env_ref(value):
                var = value["env"]
                if not isinstance(var, str) or not var:
                    self.problem(path, 'an environment reference is {env = "VARIABLE_NAME"}')
                elif var not in self.environ:
                    self.problem(path, f"environment variable {var} is not set")
                else:
                    resolved[key] = self.environ[var]
                    self.hidden.add(self.environ[var])  # any referenced variable may hold a secret
                    continue
                refused.add(key)
            elif key in secrets:
                self.hidden.update(_texts(value))
                suggestion = re.sub(r"[^A-Z0-9]+", "_", f"{base.split('.', 1)[-1]}_{key}".upper())
                self.problem(path, f"is a secret: reference an environment variable, "
                                   f"{key} = {{env = \"{suggestion}\"}}, never a literal value")
                refused.add(key)
            else:
                resolved[key] = value
        return resolved, refused

    def _unknown_type(self, type_name: str) -> str:
        known = ", ".join(sorted(self.types)) or "none"
        message = f"unknown connector type {type_name!r} (known: {known})"
        if self.manager.failures:
            broken = ", ".join(f.name for f in self.manager.failures)
            message += f"; plugins that failed to load: {broken} (see `carepath plugins list`)"
        return message

    def _message(self, error: Any, cls: type[Connector], secret: bool) -> str:
        """Never the input, which may be a secret: pydantic's text for ordinary keys with every
        referenced or secret value blanked out, only the kind of problem for secret keys."""
        if error["type"] == "extra_forbidden":
            known = ", ".join(["type", *cls.Config.model_fields])
            return f"unknown key (known for {cls.type_name}: {known})"
        if error["type"] == "missing":
            return "required key missing"
        if error["type"] in _LENGTH or error["type"] in _BOUND:
            return plain_message(error)  # a length or a bound, never the value
        if secret:
            return f"invalid secret ({error['type'].replace('_', ' ')}; the value is not shown)"
        message = plain_message(error)
        for value in sorted(self.hidden, key=len, reverse=True):
            if len(value) >= 4:
                message = message.replace(value, "****")
        return message


def _texts(value: Any) -> list[str]:
    """Every scalar inside ``value`` as text (a literal secret may be a number or a list)."""
    if isinstance(value, dict):
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return [str(value)]


_LENGTH = {"too_short": "at least {min_length}", "string_too_short": "at least {min_length}",
           "too_long": "at most {max_length}", "string_too_long": "at most {max_length}"}
_BOUND = {"greater_than_equal": "at least {ge}", "greater_than": "more than {gt}",
          "less_than_equal": "at most {le}", "less_than": "less than {lt}"}


def plain_message(error: Mapping[str, Any]) -> str:
    """A pydantic error in plain words ("must be at least 16 characters long")."""
    ctx = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in (error.get("ctx") or {}).items()}
    kind = error["type"] if ctx else ""  # without its limits, pydantic's own words below
    if kind in _LENGTH:
        if ctx.get("field_type") in ("List", "Tuple", "Set", "Dictionary"):
            return f"must have {_LENGTH[kind].format(**ctx)} items"
        return f"must be {_LENGTH[kind].format(**ctx)} characters long"
    if kind in _BOUND:
        return f"must be {_BOUND[kind].format(**ctx)}"
    message = str(error["msg"])
    return message.replace("Input should be", "must be").replace("Value error, ", "")


def _is_env_ref(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"env"}

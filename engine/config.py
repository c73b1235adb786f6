"""``carepath.toml``: the connector instances a hospital configures.

The file is found at ``$CAREPATH_CONFIG``, else ``./carepath.toml``; without
one, the default channels ``console`` and ``outbox`` are used. Each
``[connectors.<name>]`` table declares one connector instance: ``type`` names a
connector type registered by a plugin, every other key goes to that type's
``Config`` model::

    [connectors.wechat]
    type = "wechat"
    appid = "wx1234567890"
    secret = {env = "WECHAT_SECRET"}     # secrets: always an environment reference

``[web] public_url`` is the address patients' links start with (carepath.web.links).

The ``[journeys]`` table says which journeys run::

    [journeys]
    paths = ["journeys"]          # YAML files, or folders of *.yaml/*.yml, relative to this file
    enabled = ["checkup"]         # optional: default, every journey found in paths

Journeys from ``paths`` run unless ``enabled`` lists names, then only those
run; a journey a plugin provides (such as the stock ``outpatient-visit``) runs
only when ``enabled`` names it. Without a ``[journeys]`` table no journey
runs (``carepath demo`` brings its own).

A value ``{env = "NAME"}`` is replaced by the environment variable ``NAME``
(any key may use it). Keys the model marks secret (``SecretStr``) must use it:
a literal there is an error. Everything is checked at load time, and every
problem is reported with its key path (``connectors.wechat.appid: ...``).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import pydantic

from carepath.plugins.contracts import Channel, Connector, ConnectorConfig, connector_kind, secret_fields
from carepath.plugins.manager import PluginManager, get_plugin_manager
from carepath.definition.preferences import NAME, PreferenceField
from carepath.definition.segments import SegmentError, SegmentSet, build_segment_set
from carepath.privacy.retention_config import RetentionSettings
from carepath.runtime.click_settings import ClickSettings
from carepath.staff_accounts import AccountSettings
from carepath.runtime.conversations.faq import FaqError, FaqSet, faq_files, load_faq  # issue 21
from carepath.runtime.conversations.settings import ComplaintSettings, ConversationSettings  # issue 21
from carepath.teams import DEFAULT_TEAM, StaffMember, SurveySettings, TeamConfig
from carepath.web.clients import EventsClient
from carepath.web.links import WebSettings

CONFIG_ENV = "CAREPATH_CONFIG"
DEFAULT_PATH = Path("carepath.toml")
SECTIONS = ("connectors", "journeys", "teams", "staff", "surveys", "web", "events_api", "segments", "clicks",
            "preferences", "accounts", "conversations", "complaints", "retention")
JOURNEY_KEYS = ("paths", "enabled")
DEFAULT_CHANNELS = {"console": "console", "outbox": "outbox"}  # name -> type, used without a file
_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


@dataclass(frozen=True)
class ConfigProblem:
    """One problem, located by its key path (``connectors.wechat.secret``)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(Exception):
    """``carepath.toml`` is not valid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[ConfigProblem], source: Path | None = None, *, missing: bool = False) -> None:
        self.problems = problems
        self.source = source
        self.missing = missing  # the file named does not exist
        where = str(source) if source else "configuration"
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{where}: {len(problems)} problem(s)\n{lines}")


@dataclass(frozen=True)
class ConnectorSpec:
    """One validated ``[connectors.<name>]`` table."""

    name: str
    type: str
    kind: str  # channel | his | survey
    cls: type[Connector]
    config: ConnectorConfig

    def build(self) -> Connector:
        """A new connector instance."""
        return self.cls(self.name, self.config)


@dataclass(frozen=True)
class CarepathConfig:
    """The loaded configuration; ``path`` is ``None`` when no file exists (defaults apply)."""

    path: Path | None = None
    connectors: dict[str, ConnectorSpec] = field(default_factory=dict)
    journey_paths: list[Path] = field(default_factory=list)
    enabled_journeys: list[str] | None = None  # None: every journey found in journey_paths
    teams: dict[str, TeamConfig] = field(default_factory=dict)
    staff: dict[str, StaffMember] = field(default_factory=dict)
    surveys: SurveySettings = field(default_factory=SurveySettings)
    #: the systems that may post to ``POST /events``, each with its own token (``[events_api.<system>]``)
    events_api: dict[str, EventsClient] = field(default_factory=dict)
    segments: SegmentSet = field(default_factory=lambda: _default_segments())  # carepath.definition.segments
    clicks: ClickSettings = field(default_factory=ClickSettings)  # carepath.runtime.clicks
    #: preferences patients may set beyond the built-in ones (``[preferences.<name>]``; issue 19)
    preferences: dict[str, PreferenceField] = field(default_factory=dict)
    web: WebSettings = field(default_factory=WebSettings)
    #: ``[accounts]``: staff file, login session lifetime, refused-login limits (carepath.staff_accounts)
    accounts: AccountSettings = field(default_factory=AccountSettings)
    #: where each staff account came from: carepath.toml, the staff file, directory:<plugin>
    staff_origin: dict[str, str] = field(default_factory=dict)
    #: issue 21: the intent step's rules, the FAQ it answers from, complaint deadlines (carepath.runtime.conversations)
    conversations: ConversationSettings = field(default_factory=ConversationSettings)
    complaints: ComplaintSettings = field(default_factory=ComplaintSettings)
    faq: FaqSet = field(default_factory=FaqSet)
    retention: RetentionSettings = field(default_factory=RetentionSettings)  # issue 22 (carepath.privacy)

    def team(self, name: str) -> TeamConfig:
        """A team's rules (the defaults for a team the file does not declare)."""
        return self.teams.get(name, DEFAULT_TEAM)

    def of_kind(self, kind: str) -> dict[str, ConnectorSpec]:
        """The connector specs of one kind (``channel``, ``his``, ``survey``) by name."""
        return {n: s for n, s in self.connectors.items() if s.kind == kind}


def _default_segments() -> SegmentSet:
    """Without a carepath.toml: the shipped segments and the plugins' (a plugin's broken segment is left out)."""
    try:
        return build_segment_set(plugin_segments=get_plugin_manager().segments())
    except SegmentError:
        return build_segment_set()


def config_path(path: str | Path | None = None) -> Path:
    """The file to read: ``path``, else ``$CAREPATH_CONFIG``, else ``./carepath.toml``."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_PATH)


def load_config(path: str | Path | None = None, manager: PluginManager | None = None, *,
                require: bool = False) -> CarepathConfig:
    """Read and validate ``carepath.toml``; raises :class:`ConfigError` listing every problem.

    No file at ``$CAREPATH_CONFIG`` or ``./carepath.toml`` means the defaults
    (``CarepathConfig(path=None)``); a ``path`` given here must exist, and with
    ``require`` so must a file named by ``$CAREPATH_CONFIG``.
    """
    file = config_path(path)
    if not file.exists():
        if path is not None or (require and os.environ.get(CONFIG_ENV)):
            raise ConfigError([ConfigProblem(str(file), "configuration file does not exist")], missing=True)
        return CarepathConfig()
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(file.name, f"not valid TOML: {exc}")], file) from None
    except OSError as exc:
        raise ConfigError([ConfigProblem(file.name, f"cannot read: {exc.strerror}")], file) from None
    validator = _Validator(manager or get_plugin_manager(), os.environ)
    connectors, problems = validator.document(data)
    paths, enabled = validator.journeys(data.get("journeys", {}), file.resolve().parent)
    teams = validator.tables("teams", data.get("teams", {}), TeamConfig)
    staff = validator.tables("staff", data.get("staff", {}), StaffMember)
    accounts = validator.table("accounts", data.get("accounts", {}), AccountSettings) or AccountSettings()
    staff, staff_origin = validator.accounts(staff, accounts, file.resolve().parent)
    surveys = validator.table("surveys", data.get("surveys", {}), SurveySettings)
    web = validator.table("web", data.get("web", {}), WebSettings)
    events_api = validator.tables("events_api", data.get("events_api", {}), EventsClient)
    clicks = validator.table("clicks", data.get("clicks", {}), ClickSettings)
    segments = validator.segments(data.get("segments", {}), file.resolve().parent)
    preferences = validator.preferences(data.get("preferences", {}))
    conversations = validator.table("conversations", data.get("conversations", {}), ConversationSettings)
    complaints = validator.table("complaints", data.get("complaints", {}), ComplaintSettings)
    faq = validator.faq(conversations or ConversationSettings(), file.resolve().parent)
    retention = validator.table("retention", data.get("retention", {}), RetentionSettings)  # issue 22
    if problems:
        raise ConfigError(problems, file)
    return CarepathConfig(path=file, connectors=connectors, journey_paths=paths, enabled_journeys=enabled,
                          teams=teams, staff=staff, surveys=surveys or SurveySettings(), web=web or WebSettings(),
                          events_api=events_api, segments=segments, clicks=clicks or ClickSettings(),
                          preferences=preferences, accounts=accounts, staff_origin=staff_origin,
                          conversations=conversations or ConversationSettings(),
                          complaints=complaints or ComplaintSettings(), faq=faq,
                          retention=retention or RetentionSettings())


class _Validator:
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
        if not _NAME.match(name):
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


def build_connectors(config: CarepathConfig, kind: str | None = None) -> dict[str, Connector]:
    """New instances of the configured connectors (of one ``kind`` when given), by name."""
    specs = config.of_kind(kind) if kind else config.connectors
    return {name: spec.build() for name, spec in specs.items()}


def build_channels(config: CarepathConfig, manager: PluginManager | None = None) -> dict[str, Channel]:
    """The channel instances by name; without a configuration file, ``console`` and ``outbox``."""
    if config.path is None:
        types = (manager or get_plugin_manager()).connector_types()
        return {name: types[type_name](name) for name, type_name in DEFAULT_CHANNELS.items()}
    return build_connectors(config, "channel")  # type: ignore[return-value]


def installed_channel_names(manager: PluginManager | None = None) -> set[str]:
    """Channel names a journey may use where no carepath.toml names the instances: every installed
    channel type (``console``, ``wechat``, ``aliyun-sms`` ...) and what each one is (``sms``)."""
    names: set[str] = set()
    for type_name, cls in (manager or get_plugin_manager()).connector_types().items():
        if connector_kind(cls) == "channel":
            names.update(n for n in (type_name, getattr(cls, "medium", "")) if n)
    return names


def configured_channel_names(config: CarepathConfig | None = None) -> set[str]:
    """Names journeys may use in ``via=[...]`` (loads the configuration when not given)."""
    config = config if config is not None else load_config()
    return set(DEFAULT_CHANNELS) if config.path is None else set(config.of_kind("channel"))


def unmapped_template_problems(config: CarepathConfig, journeys: Iterable[Any]) -> list[ConfigProblem]:
    """Journey templates a configured channel cannot send (no provider template mapped), per channel."""
    uses: dict[str, dict[str, list[str]]] = {}  # channel -> template -> "journey/step" users
    for journey in journeys:
        for step in journey.steps:
            action = step.action
            for name in getattr(action, "via", ()):
                uses.setdefault(name, {}).setdefault(action.template, []).append(f"{journey.name}/{step.id}")
    problems = []
    for name, spec in sorted(config.of_kind("channel").items()):
        if name not in uses:
            continue
        channel = spec.build()
        for template in channel.unmapped_templates(sorted(uses[name])):  # type: ignore[attr-defined]
            problems.append(ConfigProblem(f"connectors.{name}.templates",
                                          f"no provider template for '{template}' "
                                          f"(used by {', '.join(uses[name][template])})"))
    return problems

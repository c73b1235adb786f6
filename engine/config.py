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
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from carepath.config_types import JOURNEY_KEYS, SECTIONS, ConfigError, ConfigProblem, ConnectorSpec
from carepath.config_validator import Validator, plain_message
from carepath.plugins.contracts import Channel, Connector, connector_kind
from carepath.plugins.manager import PluginManager, get_plugin_manager
from carepath.definition.preferences import PreferenceField
from carepath.definition.segments import SegmentError, SegmentSet, build_segment_set
from carepath.privacy.retention_config import RetentionSettings
from carepath.runtime.click_settings import ClickSettings
from carepath.staff_accounts import AccountSettings
from carepath.runtime.conversations.faq import FaqSet  # issue 21
from carepath.runtime.conversations.settings import ComplaintSettings, ConversationSettings  # issue 21
from carepath.teams import DEFAULT_TEAM, StaffMember, SurveySettings, TeamConfig
from carepath.web.clients import EventsClient
from carepath.web.links import WebSettings

CONFIG_ENV = "CAREPATH_CONFIG"
DEFAULT_PATH = Path("carepath.toml")
__all__ = ["CONFIG_ENV", "DEFAULT_CHANNELS", "JOURNEY_KEYS", "SECTIONS", "CarepathConfig", "ConfigError",
           "ConfigProblem", "ConnectorSpec", "build_channels", "build_connectors", "config_path",
           "configured_channel_names", "installed_channel_names", "load_config", "plain_message",
           "unmapped_template_problems"]
DEFAULT_CHANNELS = {"console": "console", "outbox": "outbox"}  # name -> type, used without a file


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
    validator = Validator(manager or get_plugin_manager(), os.environ)
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

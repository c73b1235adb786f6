"""The plugin manager: built-in modules and the ``carepath`` entry-point group.

Built-ins (:data:`BUILTIN_PLUGINS`) are always registered. Installed plugins
come from the entry-point group ``carepath``; ``CAREPATH_PLUGINS=name,name``
restricts them to an allow-list. A plugin that fails to import or to register
is recorded in :attr:`PluginManager.failures` with its reason and the others
still load.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata as md
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pluggy

from carepath.plugins import hookspecs
from carepath.plugins.contracts import Message, Veto

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "carepath"
ALLOW_LIST_ENV = "CAREPATH_PLUGINS"

BUILTIN_PLUGINS = {
    "console": "carepath.connectors.console",
    "outbox": "carepath.connectors.outbox",
    "sms": "carepath.connectors.sms",
    "his": "carepath.connectors.his",
    "surveys": "carepath.connectors.surveys",
    "device": "carepath.connectors.device",  # issue 19: home devices
    "staff": "carepath.web.staff",
    "wechat": "carepath.connectors.wechat",
    "journeys": "carepath.journeys",
}


@dataclass
class PluginFailure:
    """A plugin that could not be loaded, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class PluginRecord:
    """Where a registered plugin came from."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    builtin: bool


@dataclass
class PluginInfo:
    """What ``carepath plugins list`` shows for one plugin."""

    name: str
    version: str | None
    distribution: str | None
    builtin: bool
    hooks: list[str] = field(default_factory=list)
    connectors: list[str] = field(default_factory=list)
    journeys: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def hook_names() -> list[str]:
    """Names of every hook specification, in declaration order."""
    return [name for name, obj in vars(hookspecs).items()
            if name.startswith("carepath_") and hasattr(obj, f"{hookspecs.PROJECT}_spec")]


@dataclass
class PluginManager:
    """A pluggy manager plus what loading reported, with typed helpers over the hooks."""

    pm: pluggy.PluginManager
    failures: list[PluginFailure] = field(default_factory=list)
    records: dict[str, PluginRecord] = field(default_factory=dict)
    disabled: list[str] = field(default_factory=list)

    @property
    def hook(self) -> Any:
        return self.pm.hook

    # -- calling hooks -------------------------------------------------------------

    def _call_each(self, hook_name: str, plugin: str | None = None, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        """``(plugin name, result)`` for each implementation, in pluggy's call order."""
        caller = getattr(self.pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):
            if plugin is not None and impl.plugin_name != plugin:
                continue
            yield impl.plugin_name, impl.function(*(kwargs[a] for a in impl.argnames))

    def connector_types(self) -> dict[str, type]:
        """Every registered connector class by its ``type_name``."""
        types: dict[str, type] = {}
        for batch in self.hook.carepath_connectors():
            for cls in batch or []:
                types[cls.type_name] = cls
        return types

    def event_types(self) -> list[Any]:
        """Every plugin event type (``EventType`` objects), each marked with the plugin that added it."""
        found: list[Any] = []
        for plugin, batch in self._call_each("carepath_event_types"):
            found.extend(dataclasses.replace(t, source=plugin) for t in batch or [])
        return found

    def segments(self) -> dict[str, Any]:
        """Every plugin segment: name -> condition (or a mapping with ``when``, ``dimension``, ``title``)."""
        found: dict[str, Any] = {}
        for _, batch in self._call_each("carepath_segments"):
            for name, condition in (batch or {}).items():
                found.setdefault(name, condition)
        return found

    def staff_directory(self) -> list[tuple[str, Any]]:
        """``(plugin name, {name: account fields})`` from every ``carepath_staff_directory``."""
        return list(self._call_each("carepath_staff_directory"))

    def web_routers(self) -> list[Any]:
        """Every FastAPI router the plugins provide for inbound callbacks."""
        routers: list[Any] = []
        for _, result in self._call_each("carepath_web_routes"):
            if result is None:
                continue
            routers.extend(result if isinstance(result, (list, tuple)) else [result])
        return routers

    def before_send(self, touchpoint: Any, message: Message) -> Message | Veto:
        """Run ``carepath_before_send`` in turn: the (possibly redacted) message, or the first veto."""
        caller = self.pm.hook.carepath_before_send
        for impl in reversed(caller.get_hookimpls()):
            args = {"touchpoint": touchpoint, "message": message}
            result = impl.function(*(args[a] for a in impl.argnames))
            if isinstance(result, Veto):
                return result
            if isinstance(result, Message):
                message = result
            elif result is not None:
                raise TypeError(f"plugin {impl.plugin_name!r}: carepath_before_send returned "
                                f"{type(result).__name__}, expected None, Message or Veto")
        return message

    def notify_event(self, event: Any) -> None:
        """Give ``event`` to every ``carepath_event`` observer; an observer's exception is logged, not raised."""
        for impl in reversed(self.pm.hook.carepath_event.get_hookimpls()):
            try:
                impl.function(*({"event": event}[a] for a in impl.argnames))
            except Exception:  # an observer must not break ingest
                log.exception("carepath plugin %r: carepath_event observer failed", impl.plugin_name)

    # -- describing ------------------------------------------------------------------

    def describe(self) -> list[PluginInfo]:
        """One :class:`PluginInfo` per registered plugin (sorted: built-ins first)."""
        infos = [self._describe(record) for record in self.records.values()]
        return sorted(infos, key=lambda i: (not i.builtin, i.name))

    def _describe(self, record: PluginRecord) -> PluginInfo:
        info = PluginInfo(record.name, record.version, record.distribution, record.builtin)
        plugin = self.pm.get_plugin(record.name)
        info.hooks = sorted(c.name for c in self.pm.get_hookcallers(plugin) or [])
        collectors = {
            "carepath_connectors": lambda r: info.connectors.extend(c.type_name for c in r or []),
            "carepath_journeys": lambda r: info.journeys.extend(j.name for j in _journeys_of(r)),
            "carepath_templates": lambda r: info.templates.extend(sorted(r or {})),
        }
        for hook_name, collect in collectors.items():
            if hook_name not in info.hooks:
                continue
            try:
                for _, result in self._call_each(hook_name, plugin=record.name):
                    collect(result)
            except Exception as exc:
                info.problems.append(f"{hook_name}: {type(exc).__name__}: {exc}")
        return info


def _journeys_of(batch: Any) -> list[Any]:
    """Journeys from one ``carepath_journeys`` result: objects kept, YAML paths loaded."""
    from carepath.definition.journey_files import load_journey_file

    return [load_journey_file(Path(j)) if isinstance(j, (str, Path)) else j for j in batch or []]



# -- loading -------------------------------------------------------------------------


def _allowed() -> set[str] | None:
    raw = os.environ.get(ALLOW_LIST_ENV, "").strip()
    return {n.strip() for n in raw.split(",") if n.strip()} if raw else None


def _carepath_version() -> str | None:
    try:
        return md.version("carepath")
    except md.PackageNotFoundError:
        return None


def _entry_points() -> list[md.EntryPoint]:
    """Entry points of the group, first one per name (a dist seen twice on sys.path counts once)."""
    seen: dict[str, md.EntryPoint] = {}
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        seen.setdefault(ep.name, ep)
    return list(seen.values())


class _Loader:
    """Registers plugins into one manager, recording failures."""

    def __init__(self, manager: PluginManager) -> None:
        self.manager = manager

    def register(self, name: str, load: Any, record: PluginRecord) -> None:
        pm = self.manager.pm
        try:
            plugin = load()
            pm.register(plugin, name=name)
        except Exception as exc:  # a third-party import error must not take the rest down
            self.fail(name, f"{type(exc).__name__}: {exc}")
            return
        unknown = [c.name for c in pm.get_hookcallers(plugin) or [] if not c.has_spec()]
        if unknown:
            pm.unregister(plugin, name=name)
            self.fail(name, f"implements unknown hook(s) {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(hook_names())})")
            return
        self.manager.records[name] = record

    def fail(self, name: str, reason: str) -> None:
        self.manager.failures.append(PluginFailure(name, reason))
        log.warning("carepath plugin %r failed to load: %s", name, reason)


def load_plugins() -> PluginManager:
    """Register built-ins and installed entry points; a broken plugin is reported, not fatal."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    manager = PluginManager(pm)
    loader = _Loader(manager)
    version = _carepath_version()
    for name, module in BUILTIN_PLUGINS.items():
        loader.register(name, functools.partial(importlib.import_module, module),
                        PluginRecord(name, module, "carepath", version, builtin=True))

    allowed = _allowed()
    entry_points = _entry_points()
    for ep in entry_points:
        if BUILTIN_PLUGINS.get(ep.name) == ep.value:
            continue  # carepath's own distribution declares its built-ins too
        if ep.name in BUILTIN_PLUGINS:
            loader.fail(ep.name, f"entry point {ep.value!r} uses the name of a built-in plugin")
            continue
        if allowed is not None and ep.name not in allowed:
            manager.disabled.append(ep.name)
            continue
        dist = ep.dist
        record = PluginRecord(ep.name, ep.value, dist.metadata["Name"] if dist else None,
                              dist.version if dist else None, builtin=False)
        loader.register(ep.name, ep.load, record)

    if allowed is not None:
        known = set(BUILTIN_PLUGINS) | {ep.name for ep in entry_points}
        for name in sorted(allowed - known):
            loader.fail(name, f"named in {ALLOW_LIST_ENV} but not installed")
    return manager


@functools.lru_cache(maxsize=1)
def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager (loaded once; ``get_plugin_manager.cache_clear()`` reloads)."""
    return load_plugins()

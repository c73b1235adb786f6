"""What plugins provide, gathered once: journeys, templates, channel names."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from carepath.definition.model import Journey, Template


def _manager():
    from carepath.plugins.manager import get_plugin_manager

    return get_plugin_manager()


def _as_template(name: str, value: Any) -> Template:
    if isinstance(value, Template):
        return value
    return Template(name=name, **value)


def plugin_templates() -> dict[str, Template]:
    """Templates from every plugin's ``carepath_templates`` hook."""
    out: dict[str, Template] = {}
    for batch in _manager().hook.carepath_templates():
        for name, value in (batch or {}).items():
            out[name] = _as_template(name, value)
    return out


def plugin_journeys() -> dict[str, Journey]:
    """Journeys from every plugin's ``carepath_journeys`` hook (objects or YAML paths)."""
    from carepath.definition.journey_files import load_journey_file

    out: dict[str, Journey] = {}
    for batch in _manager().hook.carepath_journeys():
        for item in batch or []:
            journey = load_journey_file(Path(item)) if isinstance(item, (str, Path)) else item
            out[journey.name] = journey
    return out


def known_template_names() -> set[str]:
    return set(plugin_templates())


def known_channel_names() -> set[str]:
    """Channel instances this installation has: from carepath.toml, else the defaults."""
    try:
        from carepath.config import configured_channel_names
    except ImportError:  # configuration support not installed yet
        return {"console", "outbox"}
    return set(configured_channel_names())


def configured_channels() -> dict[str, Any]:
    """The configured channel instances (to ask which templates each can send); none if the configuration fails.

    A configuration that does not load is reported by ``carepath config check``, not here.
    """
    try:
        from carepath.config import build_channels, load_config

        return dict(build_channels(load_config()))
    except Exception:  # noqa: BLE001 - validation of journeys goes on without channel instances
        return {}


def enabled_journeys(config=None) -> dict[str, Journey]:  # noqa: ANN001 - a CarepathConfig
    """The journeys this installation runs, chosen by ``[journeys]`` in carepath.toml.

    Journeys found in ``paths`` run unless ``enabled`` lists names; a plugin's
    journey runs only when ``enabled`` names it. Raises ``ConfigError`` listing
    every problem (a bad journey file with its file and line, an unknown name).
    """
    from carepath.config import ConfigError, ConfigProblem, configured_channel_names, load_config
    from carepath.definition.journey_files import read_journey_file

    config = config if config is not None else load_config()
    problems: list[ConfigProblem] = []
    files = [f for p in config.journey_paths
             for f in (sorted(x for x in p.iterdir() if x.suffix in (".yaml", ".yml")) if p.is_dir() else [p])]
    templates, channels = known_template_names(), configured_channel_names(config)
    found: dict[str, Journey] = {}
    for file in files:
        journey, file_problems = read_journey_file(file, known_templates=templates, known_channels=channels)
        problems += [ConfigProblem("journeys", str(p)) for p in file_problems]
        if journey is not None and not file_problems:
            if journey.name in found:
                problems.append(ConfigProblem("journeys.paths", f"two files define the journey {journey.name!r}"))
            found[journey.name] = journey
    chosen = found
    if config.enabled_journeys is not None:
        available = {**plugin_journeys(), **found}  # a hospital's own file wins over a plugin's journey
        for name in config.enabled_journeys:
            if name not in available:
                problems.append(ConfigProblem("journeys.enabled", f"unknown journey {name!r} (available: "
                                                                  f"{', '.join(sorted(available)) or 'none'})"))
        chosen = {n: available[n] for n in config.enabled_journeys if n in available}
    if problems:
        raise ConfigError(problems, config.path)
    return chosen

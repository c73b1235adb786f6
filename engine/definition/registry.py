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

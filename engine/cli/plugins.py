"""``carepath plugins ...`` and ``carepath config ...``: two typer apps the main CLI mounts."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from carepath.config import (CONFIG_ENV, DEFAULT_CHANNELS, ConfigError, config_path, load_config,
                             unmapped_template_problems)
from carepath.plugins.manager import get_plugin_manager

plugins_app = typer.Typer(no_args_is_help=True, add_completion=False)
config_app = typer.Typer(no_args_is_help=True, add_completion=False)


def _console() -> Console:
    """A terminal console; piped output gets 140 columns so tables are not squeezed."""
    return Console(highlight=False) if sys.stdout.isatty() else Console(highlight=False, width=140)


@plugins_app.callback()
def _plugins() -> None:
    """Installed plugins: what each one provides, and which failed to load."""


@plugins_app.command("list")
def list_plugins(as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")) -> None:
    """Each plugin with its version, the hooks it implements and what it provides."""
    manager = get_plugin_manager()
    infos = manager.describe()
    if as_json:
        typer.echo(json.dumps({"plugins": [asdict(i) for i in infos],
                               "failed": [asdict(f) for f in manager.failures],
                               "disabled": manager.disabled}, ensure_ascii=False, indent=2))
        return
    table = Table(title="carepath plugins")
    for column in ("plugin", "version", "hooks", "connectors", "journeys", "templates"):
        table.add_column(column, overflow="fold", no_wrap=column in ("plugin", "version"))
    for info in infos:
        version = info.version or "?"
        if info.distribution and info.distribution != info.name:
            version = f"{info.distribution} {version}"
        hooks = ", ".join(h.removeprefix("carepath_") for h in info.hooks) or "-"
        if info.problems:
            hooks += "\n[red]" + escape("\n".join(info.problems)) + "[/]"
        table.add_row(info.name + (" (built-in)" if info.builtin else ""), version, hooks,
                      ", ".join(info.connectors) or "-", ", ".join(info.journeys) or "-",
                      ", ".join(info.templates) or "-")
    console = _console()
    console.print(table)
    if manager.failures:
        broken = Table(title="plugins that failed to load", title_style="bold red")
        broken.add_column("plugin")
        broken.add_column("reason", overflow="fold")
        for failure in manager.failures:
            broken.add_row(escape(failure.name), escape(failure.reason))
        console.print(broken)
    if manager.disabled:
        console.print(f"not in CAREPATH_PLUGINS (not loaded): {', '.join(manager.disabled)}")


@config_app.callback()
def _config() -> None:
    """carepath.toml: the configured connector instances."""


@config_app.command("check")
def check(path: Optional[Path] = typer.Option(None, "--config", "-c",
                                               help=f"file to check (default: ${CONFIG_ENV} or ./carepath.toml)")
          ) -> None:
    """Validate carepath.toml: list the connectors found, or every problem with its key path."""
    console = _console()
    try:
        config = load_config(path)
    except ConfigError as exc:
        where = exc.source or config_path(path)
        console.print(f"[bold red]{escape(str(where))}: {len(exc.problems)} problem(s)[/]")
        for problem in exc.problems:
            console.print(f"  [red]✗[/] {escape(str(problem))}")
        raise typer.Exit(1) from None
    if config.path is None:
        console.print(f"no {config_path(path)} found: using the default channels "
                      f"{', '.join(DEFAULT_CHANNELS)}")
        return
    table = Table(title=f"{config.path}: {len(config.connectors)} connector(s)")
    for column in ("name", "type", "kind", "plugin class"):
        table.add_column(column, overflow="fold")
    for name, spec in sorted(config.connectors.items()):
        table.add_row(name, spec.type, spec.kind, f"{spec.cls.__module__}.{spec.cls.__qualname__}")
    console.print(table)
    from carepath.definition.registry import plugin_journeys

    unmapped = unmapped_template_problems(config, plugin_journeys().values())
    if unmapped:
        console.print(f"[bold red]{len(unmapped)} template(s) cannot go out by their channel[/]")
        for problem in unmapped:
            console.print(f"  [red]✗[/] {escape(str(problem))}")
        raise typer.Exit(1)
    console.print("[green]OK[/]")

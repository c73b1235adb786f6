"""``carepath plugins ...`` and ``carepath config ...``: two typer apps the main CLI mounts."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from carepath.cli.common import ExitCode, err_console, labelled, out_console
from carepath.config import (CONFIG_ENV, DEFAULT_CHANNELS, ConfigError, config_path, load_config,
                             unmapped_template_problems)
from carepath.plugins.manager import get_plugin_manager

plugins_app = typer.Typer(no_args_is_help=True, add_completion=False)
config_app = typer.Typer(no_args_is_help=True, add_completion=False)




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
    for column in ("plugin", "version", "hooks", "provides"):
        table.add_column(column, overflow="fold", no_wrap=column in ("plugin", "version"))
    for info in infos:
        version = info.version or "?"
        if info.distribution and info.distribution != info.name:
            version = f"{info.distribution} {version}"
        hooks = ", ".join(h.removeprefix("carepath_") for h in info.hooks) or "-"
        if info.problems:
            hooks = Text(hooks + "\n") + Text("\n".join(info.problems), style="red")
        provides = "\n".join(f"{kind}: {', '.join(names)}" for kind, names in (
            ("connectors", info.connectors), ("journeys", info.journeys), ("templates", info.templates)) if names)
        table.add_row(info.name + (" (built-in)" if info.builtin else ""), version, hooks, provides or "-")
    console = out_console()
    console.print(table)
    if manager.failures:
        broken = Table(title="plugins that failed to load", title_style="bold red")
        broken.add_column("plugin")
        broken.add_column("reason", overflow="fold")
        for failure in manager.failures:
            broken.add_row(failure.name, failure.reason)
        console.print(broken)
    if manager.disabled:
        console.print(f"not in CAREPATH_PLUGINS (not loaded): {', '.join(manager.disabled)}")


@config_app.callback()
def _config() -> None:
    """carepath.toml: the configured connector instances."""


@config_app.command("check")
def check(path: Optional[Path] = typer.Option(None, "--config", "-c",
                                               help=f"file to check (default: ${CONFIG_ENV} or ./carepath.toml)"),
          as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables")) -> None:
    """Validate carepath.toml: the connectors and journeys found, or every problem with its key path.

    A file named by --config or $CAREPATH_CONFIG must exist (exit 3).
    """
    from carepath.definition.registry import enabled_journeys

    try:
        config = load_config(path, require=True)
        journeys = enabled_journeys(config)
    except ConfigError as exc:
        where = exc.source or config_path(path)
        if as_json:
            typer.echo(json.dumps({"file": str(where), "ok": False, "problems": [asdict(p) for p in exc.problems]},
                                  ensure_ascii=False, indent=2))
        else:
            errors = err_console()
            errors.print(f"{where}: {len(exc.problems)} problem(s)", style="bold red")
            for problem in exc.problems:
                errors.print(labelled("  ✗", "red", str(problem)))
        raise typer.Exit(int(ExitCode.NOT_FOUND if exc.missing else ExitCode.INVALID)) from None
    from carepath.settings import Settings
    from carepath.web.links import link_warnings, public_base

    unmapped = unmapped_template_problems(config, journeys.values())
    warnings = link_warnings(config, Settings())
    if as_json:
        typer.echo(json.dumps({"file": str(config.path) if config.path else None, "ok": not unmapped,
                               "unmapped_templates": [str(p) for p in unmapped],
                               "public_url": public_base(config, Settings()), "warnings": warnings,
                               "connectors": [{"name": n, "type": s.type, "kind": s.kind}
                                              for n, s in sorted(config.connectors.items())],
                               "journeys": [{"name": j.name, "version": j.version} for j in journeys.values()]},
                              ensure_ascii=False, indent=2))
        if unmapped:
            raise typer.Exit(int(ExitCode.INVALID))
        return
    console = out_console()
    for warning in warnings:
        err_console().print(labelled("warning:", "bold yellow", warning))
    if config.path is None:
        console.print(f"no {config_path(path)} found: using the default channels "
                      f"{', '.join(DEFAULT_CHANNELS)}; no journeys enabled")
        return
    table = Table(title=f"{config.path}: {len(config.connectors)} connector(s)")
    for column in ("name", "type", "kind", "plugin class"):
        table.add_column(column, overflow="fold")
    for name, spec in sorted(config.connectors.items()):
        table.add_row(name, spec.type, spec.kind, f"{spec.cls.__module__}.{spec.cls.__qualname__}")
    console.print(table)
    names = ", ".join(f"{j.name} ({j.version})" for j in journeys.values())
    console.print(f"journeys enabled: {names or 'none (add a [journeys] table)'}", soft_wrap=True)
    console.print(f"patients' links start with: {public_base(config, Settings())}", soft_wrap=True)
    if unmapped:
        errors = err_console()
        errors.print(f"{len(unmapped)} template(s) cannot go out by their channel", style="bold red")
        for problem in unmapped:
            errors.print(labelled("  ✗", "red", str(problem)))
        raise typer.Exit(int(ExitCode.INVALID))
    console.print("OK", style="green")

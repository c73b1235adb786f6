"""``carepath emulator NAME``: run a connector's loopback provider emulator."""

from __future__ import annotations

import importlib
from typing import Callable

import typer
from carepath.cli.common import err_console


def emulators() -> dict[str, str]:
    """Connector type name -> ``"module:function"`` of its emulator, for every installed connector."""
    from carepath.plugins.manager import get_plugin_manager

    return {name: cls.emulator for name, cls in sorted(get_plugin_manager().connector_types().items())
            if getattr(cls, "emulator", None)}


def load_emulator(target: str) -> Callable[[str, int], None]:
    """The callable behind ``"module:function"``."""
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def emulator(name: str = typer.Argument(..., help="connector type, e.g. wechat"),
             host: str = typer.Option("127.0.0.1", help="address to listen on"),
             port: int = typer.Option(0, help="port (0: any free port, printed at start)")) -> None:
    """Run the loopback emulator of a connector's provider until Ctrl-C."""
    known = emulators()
    if name not in known:
        names = ", ".join(known) or "none installed"
        err_console().print(f"no emulator for connector type {name!r} (emulators: {names})", style="red")
        raise typer.Exit(3)  # not found (docs/cli.md)
    try:
        load_emulator(known[name])(host, port)
    except KeyboardInterrupt:
        pass

"""The stock journey library, registered through the ``carepath_journeys`` hook."""

from __future__ import annotations

from pathlib import Path

from carepath.plugins.hookspecs import hookimpl

HERE = Path(__file__).resolve().parent


def journey_files() -> list[Path]:
    """Every stock journey file shipped in this package."""
    return sorted(HERE.glob("*.yaml"))


@hookimpl
def carepath_journeys():
    return journey_files()

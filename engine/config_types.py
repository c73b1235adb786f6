"""The shapes ``carepath.toml`` is read into and its errors: one problem per key path, one error listing them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from carepath.plugins.contracts import Connector, ConnectorConfig

SECTIONS = ("connectors", "journeys", "teams", "staff", "surveys", "web", "events_api", "segments", "clicks",
            "preferences", "accounts", "conversations", "complaints", "retention")
JOURNEY_KEYS = ("paths", "enabled")
CONNECTOR_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")  # a connector, team or client name


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

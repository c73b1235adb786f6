"""What every command shares: output consoles, exit codes, JSON output, opening the store.

Exit codes (docs/cli.md): 0 done; 1 invalid input (a journey, configuration,
event or key that is wrong); 2 usage (an unknown option, a missing
argument); 3 not found (a database, patient, key or file that is not there);
130 interrupted.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import Any, Iterator, NoReturn

import typer
from rich.console import Console
from rich.text import Text

DB_HELP = "database file or URL (default: $CAREPATH_DATABASE_URL or ./.carepath/carepath.db)"
CONFIG_HELP = "carepath.toml (default: $CAREPATH_CONFIG or ./carepath.toml)"
#: ``--db`` and ``--config`` as every command spells them
DB_OPTION = typer.Option(None, "--db", help=DB_HELP, show_default=False)
CONFIG_OPTION = typer.Option(None, "--config", "-c", help=CONFIG_HELP, show_default=False)

PIPED_WIDTH = 100  # tables are laid out to fit this when output is not a terminal and COLUMNS is unset


class ExitCode(IntEnum):
    OK = 0
    INVALID = 1
    USAGE = 2
    NOT_FOUND = 3
    INTERRUPTED = 130


#: what every console prints literally: a user's text, a journey, a file path (``visit.yaml:100:``), a patient's
#: message. Rich would otherwise read ``[bold]`` as markup and ``:100:`` as an emoji; colour comes from ``style=``.
LITERAL = {"markup": False, "emoji": False, "highlight": False}


def out_console(**kwargs: Any) -> Console:
    """Standard output: the terminal's width, else ``COLUMNS``, else 100 columns; text printed as given."""
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else PIPED_WIDTH
    return Console(width=width, **{**LITERAL, **kwargs})


def err_console(**kwargs: Any) -> Console:
    """Standard error, for problems and progress; text printed as given."""
    width = None if sys.stderr.isatty() or os.environ.get("COLUMNS") else PIPED_WIDTH
    return Console(stderr=True, width=width, **{"soft_wrap": True, **LITERAL, **kwargs})


def labelled(label: str, style: str, text: str) -> Text:
    """``label`` in ``style`` followed by ``text`` exactly as given (``error: ...``, ``✗ ...``)."""
    return Text.assemble((label, style), " ", text)


def fail(message: str, code: ExitCode = ExitCode.INVALID) -> NoReturn:
    """Print ``error: message`` on standard error and exit with ``code``."""
    err_console().print(labelled("error:", "bold red", message))
    raise typer.Exit(int(code))


def print_json(data: Any) -> None:
    """Machine-readable output on standard output (dates as ISO 8601)."""
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def database_url(db: str | None) -> str | None:
    """``--db``: a URL as given, a file as a SQLite URL; ``None`` means the settings' database."""
    if db is None or "://" in db:
        return db
    return f"sqlite:///{Path(db).resolve()}"


@contextmanager
def store_errors() -> Iterator[None]:
    """Turn store and key problems into a clean error: not found (3) or invalid (1)."""
    from carepath.store import DatabaseNotFound, KeyError_, KeyNotFound, StoreError

    try:
        yield
    except (DatabaseNotFound, KeyNotFound) as exc:
        fail(str(exc), ExitCode.NOT_FOUND)
    except (StoreError, KeyError_) as exc:
        fail(str(exc), ExitCode.INVALID)


def open_cli_store(db: str | None, *, read_only: bool):
    """The store for a command (read-only commands create no database and no key)."""
    from carepath.settings import Settings
    from carepath.store import open_store

    with store_errors():
        return open_store(Settings(), database_url(db), read_only=read_only)


def config_failed(exc: Any) -> NoReturn:
    """A configuration that does not load: one line per problem, naming the file and the key (and the
    environment variable when one is unset), never a traceback; exit 1, or 3 for a named file that is not there."""
    if exc.missing:
        fail(f"no configuration file at {exc.problems[0].path}", ExitCode.NOT_FOUND)
    errors = err_console()
    where = f"{exc.source}: " if exc.source else ""
    for problem in exc.problems:
        errors.print(labelled("error:", "bold red", f"{where}{problem}"))
    raise typer.Exit(int(ExitCode.INVALID))


def cli_config(path: Path | None = None):
    """carepath.toml for a command; a missing file named by ``--config`` or ``$CAREPATH_CONFIG`` is an error."""
    from carepath.config import ConfigError, load_config

    try:
        return load_config(path, require=True)
    except ConfigError as exc:
        config_failed(exc)


def cli_journeys(config: Any) -> dict[str, Any]:
    """The journeys carepath.toml enables; a journey file or name it gets wrong ends the command
    like any configuration problem."""
    from carepath.config import ConfigError
    from carepath.definition.registry import enabled_journeys

    try:
        return enabled_journeys(config)
    except ConfigError as exc:
        config_failed(exc)


def open_cli_engine(db: str | None, config_file: Path | None = None, *, runs_journeys: bool = True,
                    **options: Any):
    """An :class:`Engine` on the configured journeys and channels, for commands that change state
    (``runs_journeys=False``: a command that needs only the channels says nothing about journeys;
    ``options`` go to the Engine: ``worker_id``, ``lease``)."""
    from carepath.config import build_channels
    from carepath.engine import Engine
    from carepath.settings import Settings

    config = cli_config(config_file)
    journeys = list(cli_journeys(config).values())
    channels = build_channels(config)
    if not journeys and runs_journeys:
        where = config.path or "no carepath.toml"
        err_console().print(f"note: no journey runs ({where}: add [journeys] paths = [...] or enabled = [...])",
                            markup=False)
    with store_errors():
        engine = Engine(database_url(db), journeys=journeys, channels=channels, settings=Settings(), config=config,
                        **options)
    if engine.created_key is not None:
        err_console().print(f"note: new database, so a new encryption key was written to {engine.created_key}; "
                            "keep it (or set CAREPATH_SECRET_KEY): contact data cannot be read without it",
                            markup=False)
    return engine

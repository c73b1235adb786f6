"""Where ``carepath journeys show/doc/new/diff`` find journeys: a file, the hospital's folder, the stock library."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from carepath.cli.common import ExitCode, err_console, fail
from carepath.definition.journey_files import read_journey_text
from carepath.definition.model import Journey

#: the hospital's journeys folder where carepath.toml names none
DEFAULT_FOLDER = Path("journeys")


@dataclass(frozen=True)
class JourneySource:
    """A journey with the file it was read from (its text, for comments) and whether it is a stock journey."""

    journey: Journey
    path: Path
    text: str
    stock: bool = False

    @property
    def shown_path(self) -> str:
        """How pages name the file: ``journeys/NAME.yaml`` for a stock journey (wherever it is installed)."""
        return f"journeys/{self.path.name}" if self.stock else str(self.path)


def read_source(path: Path, *, stock: bool = False) -> JourneySource:
    """The journey in ``path``; its problems end the command (exit 1), a missing file too (exit 3)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}", ExitCode.NOT_FOUND)
    journey, problems = read_journey_text(text, file=str(path), known_templates=None)
    if journey is None:
        errors = err_console()
        for problem in problems:
            errors.print(str(problem), style="red")
        fail(f"{path} is not a valid journey ({len(problems)} problem(s))")
    return JourneySource(journey, path, text, stock)


def hospital_folder(config) -> Path:  # noqa: ANN001 - a CarepathConfig
    """The folder new journeys go to: the first folder of carepath.toml's ``[journeys] paths``, else ./journeys."""
    folders = [p for p in config.journey_paths if p.is_dir()]
    return folders[0] if folders else DEFAULT_FOLDER


def hospital_files(config) -> list[Path]:  # noqa: ANN001 - a CarepathConfig
    """The hospital's journey files: those carepath.toml's ``[journeys] paths`` name, else ./journeys/*.yaml."""
    from carepath.cli.journeys import journey_paths

    paths = list(config.journey_paths) or ([DEFAULT_FOLDER] if DEFAULT_FOLDER.is_dir() else [])
    files, _ = journey_paths(paths)
    return files


def _named(files: list[Path], name: str, *, stock: bool = False) -> JourneySource | None:
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        journey, _ = read_journey_text(text, file=str(path), known_templates=None)
        if journey is not None and journey.name == name:
            return JourneySource(journey, path, text, stock)
    return None


def stock_source(name: str) -> JourneySource:
    """The stock journey ``name``; an unknown name ends the command listing the stock journeys (exit 3)."""
    from carepath.definition.journey_copy import stock_journey_files

    stock = stock_journey_files()
    if name not in stock:
        fail(f"no stock journey {name!r} (stock journeys: {', '.join(sorted(stock)) or 'none'})",
             ExitCode.NOT_FOUND)
    return read_source(stock[name], stock=True)


def find_source(name: str, config) -> JourneySource:  # noqa: ANN001 - a CarepathConfig
    """``name`` as a file path, else a journey of the hospital's folder, else a stock journey."""
    from carepath.definition.journey_copy import stock_journey_files

    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return read_source(path)
    found = _named(hospital_files(config), name)
    if found is not None:
        return found
    stock = stock_journey_files()
    if name in stock:
        return read_source(stock[name], stock=True)
    fail(f"no journey {name!r} in the hospital's journeys ({', '.join(map(str, config.journey_paths)) or DEFAULT_FOLDER})"
         f" nor among the stock journeys ({', '.join(sorted(stock)) or 'none'})", ExitCode.NOT_FOUND)


def find_hospital_source(name: str, config) -> JourneySource:  # noqa: ANN001 - a CarepathConfig
    """``name`` as a file path, else a journey of the hospital's folder (never a stock journey)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return read_source(path)
    found = _named(hospital_files(config), name)
    if found is None:
        fail(f"no journey {name!r} in the hospital's journeys "
             f"({', '.join(map(str, config.journey_paths)) or DEFAULT_FOLDER})", ExitCode.NOT_FOUND)
    return found

"""The journeys the library tests draw, check and document: every stock journey and test journeys that
together have every kind of step."""

from __future__ import annotations

from pathlib import Path

from carepath.definition.journey_files import load_journey_file
from carepath.definition.model import Journey

ROOT = Path(__file__).resolve().parents[2]
STOCK_FOLDER = ROOT / "journeys"
STOCK = sorted(STOCK_FOLDER.glob("*.yaml"))
TEST_JOURNEYS = sorted((ROOT / "tests" / "data" / "journeys" / "maps").glob("*.yaml")) + [
    ROOT / "tests" / "data" / "journeys" / "outpatient-visit.yaml"]
ALL = STOCK + TEST_JOURNEYS
DOCS = ROOT / "docs" / "journeys"


def load(path: Path) -> Journey:
    return load_journey_file(path)


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]

"""The docs mention no command that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

import click
import typer.main

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# a command as a reader would type it: at the start of a shell line (after a prompt or
# environment assignments) or of an inline code span
SHELL_LINE = re.compile(r"^\s*(?:\$ )?(?:[A-Z_]+=\S+ )*carepath ([a-z][a-z0-9-]*)(?: ([a-z][a-z0-9-]*))?", re.M)
SPAN = re.compile(r"`carepath ([a-z][a-z0-9-]*)(?: ([a-z][a-z0-9-]*))?")
FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.S)


def mentions(text: str) -> list[tuple[str, str | None]]:
    found = [m.groups() for block in FENCE.findall(text) for m in SHELL_LINE.finditer(block)]
    return found + [m.groups() for m in SPAN.finditer(FENCE.sub("", text))]


def command_tree() -> click.Group:
    from carepath.cli import _mount_optional, app

    _mount_optional()
    return typer.main.get_command(app)  # type: ignore[return-value]


def test_every_command_the_docs_mention_exists():
    tree = command_tree()
    missing, seen = [], 0
    for path in DOCS:
        for first, second in mentions(path.read_text(encoding="utf-8")):
            seen += 1
            command = tree.commands.get(first)
            if command is None or (isinstance(command, click.Group) and second and second not in command.commands):
                missing.append(f"{path.relative_to(ROOT)}: carepath {first} {second or ''}".rstrip())
    assert seen > 50, "the docs' commands were not found: the patterns above need a look"
    assert missing == []


def test_a_command_that_does_not_exist_is_caught():
    tree = command_tree()
    [(first, second)] = mentions("Run `carepath sandbox` first.")
    assert first not in tree.commands
    assert mentions("```bash\nCAREPATH_HOME=/x carepath journeys nonsense\n```") == [("journeys", "nonsense")]

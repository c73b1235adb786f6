"""The hospital's FAQ (``faq/*.yaml``): patterns, an answer template and a category per entry, and the matcher.

::

    # faq/appointments.yaml
    entries:
      - id: booking
        category: appointments
        patterns: ["怎么挂号", "如何挂号", "挂号", "re:预约.{0,4}(门诊|专家)"]
        answer: "您好，挂号请点公众号菜单「就医服务 → 预约挂号」，或拨打 0571-88888888。"
      - id: thanks
        category: courtesy
        action: ignore             # recorded as ignorable by this rule: nobody is asked to answer
        patterns: ["谢谢", "好的", "收到"]
      - id: complaint
        category: complaint
        action: complaint          # opens a complaint case (carepath.runtime.complaints)
        patterns: ["投诉", "态度太差"]

A pattern is contained in the message (case folded, blanks and punctuation around it removed) unless the entry
says ``match: whole`` (the default for ``action: ignore``: "谢谢" alone is ignorable, "谢谢，我想问下…" is not).
``re:`` starts a regular expression. When several entries match, a ``complaint`` entry wins (a complaint about
booking is a complaint), then the longest matching pattern (the most specific), then the earlier entry.
Every problem is reported with its file and entry (:class:`FaqError`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from carepath.definition.expressions import check_template, render
from carepath.runtime.unsubscribe import normalized

Action = Literal["answer", "ignore", "complaint"]


class FaqError(ValueError):
    """FAQ files that do not load; ``problems`` are ``file: entries[i] (id): key: message`` lines."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("FAQ problems:\n" + "\n".join(f"  {p}" for p in problems))


class FaqEntry(BaseModel):
    """One FAQ entry."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")
    category: str = Field(min_length=1, max_length=32)
    patterns: list[str] = Field(min_length=1)
    action: Action = "answer"
    answer: str | None = None
    match: Literal["contains", "whole"] | None = None

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            if not isinstance(p, str) or not normalized(p[3:] if p.startswith("re:") else p):
                raise ValueError(f"pattern {p!r} is empty once blanks and punctuation are removed")
            if p.startswith("re:"):
                try:
                    re.compile(p[3:])
                except re.error as exc:
                    raise ValueError(f"pattern {p!r} is not a valid regular expression: {exc}") from None
        return patterns

    @field_validator("answer")
    @classmethod
    def _answer(cls, answer: str | None) -> str | None:
        if answer is not None:
            if not answer.strip():
                raise ValueError("an answer is never blank")
            check_template(answer, "template")
        return answer

    def model_post_init(self, _context: Any) -> None:
        if self.action == "answer" and self.answer is None:
            raise ValueError("answer is required for action: answer (the text sent to the patient)")

    @property
    def whole(self) -> bool:
        return (self.match or ("whole" if self.action == "ignore" else "contains")) == "whole"


@dataclass(frozen=True)
class FaqMatch:
    """The entry that matched and the pattern that made it."""

    entry: FaqEntry
    pattern: str
    source: str  # the file it came from

    @property
    def rule(self) -> str:
        return f"faq:{self.entry.id}"

    def answer(self, context: dict[str, Any]) -> str:
        """The answer rendered for this patient (``patient.name``)."""
        return render(self.entry.answer or "", context)


@dataclass(frozen=True)
class FaqSet:
    """Every loaded entry, in file order; :meth:`match` is the default intent matcher."""

    entries: tuple[tuple[FaqEntry, str], ...] = ()

    def get(self, entry_id: str) -> FaqMatch | None:
        for entry, source in self.entries:
            if entry.id == entry_id:
                return FaqMatch(entry, "", source)
        return None

    def match(self, text: str) -> FaqMatch | None:
        """The best entry for ``text`` (complaints first, then the longest matching pattern, then file order)."""
        said = normalized(text)
        if not said:
            return None
        best: tuple[tuple[bool, int], FaqMatch] | None = None
        for entry, source in self.entries:
            for pattern in entry.patterns:
                length = _matched_length(pattern, said, entry.whole)
                rank = (entry.action == "complaint", length)  # a complaint about booking is a complaint
                if length and (best is None or rank > best[0]):
                    best = (rank, FaqMatch(entry, pattern, source))
        return best[1] if best else None


def _matched_length(pattern: str, said: str, whole: bool) -> int:
    if pattern.startswith("re:"):
        found = (re.fullmatch if whole else re.search)(pattern[3:], said)
        return (len(found.group(0)) or 1) if found else 0
    wanted = normalized(pattern)
    hit = said == wanted if whole else wanted in said
    return len(wanted) if hit else 0


def faq_files(paths: Iterable[str | Path], base: Path) -> list[Path]:
    """The YAML files named by ``paths`` (files, or folders of ``*.yaml`` / ``*.yml``), resolved against ``base``;
    a missing default folder is no FAQ at all."""
    found: list[Path] = []
    for raw in paths:
        path = (base / raw).resolve()
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        elif path.exists():
            found.append(path)
    return found


def load_faq(files: Iterable[Path], base: Path | None = None) -> FaqSet:
    """Read and check FAQ files; :class:`FaqError` lists every problem (file, entry, key)."""
    problems: list[str] = []
    entries: list[tuple[FaqEntry, str]] = []
    seen: dict[str, str] = {}
    for file in files:
        name = str(file.relative_to(base)) if base and file.is_relative_to(base) else str(file)
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            problems.append(f"{name}: cannot read: {str(exc).splitlines()[0]}")
            continue
        items = data.get("entries") if isinstance(data, dict) else None
        if not isinstance(items, list):
            problems.append(f"{name}: expected a mapping with an `entries:` list")
            continue
        for i, item in enumerate(items):
            label = f"{name}: entries[{i}]" + (f" ({item.get('id')})" if isinstance(item, dict) and item.get("id")
                                                else "")
            try:
                entry = FaqEntry.model_validate(item)
            except pydantic.ValidationError as exc:
                for error in exc.errors(include_url=False):
                    where = ".".join(map(str, error["loc"]))
                    message = str(error["msg"]).replace("Value error, ", "")
                    problems.append(f"{label}: {where + ': ' if where else ''}{message}")
                continue
            if entry.id in seen:
                problems.append(f"{label}: id {entry.id!r} is already used in {seen[entry.id]}")
                continue
            seen[entry.id] = name
            entries.append((entry, name))
    if problems:
        raise FaqError(problems)
    return FaqSet(tuple(entries))

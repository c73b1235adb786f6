"""Click tracking: links in messages go through a short signed redirect, ``<public base>/c/<token>``.

The token is ``<touchpoint>.<link>.<signature>`` (numbers in base 36): it names the message
and one of the link targets kept in ``tracked_links`` (one row per URL, nothing about the
patient), signed with the store's lookup key. Opening it redirects to the target; it
counts as a click (a ``message.clicked`` event tied to the touchpoint, once per link and
message) only when the signature holds, the message was sent less than ``[clicks]
link_ttl`` ago, the request is a GET and the agent is not a link previewer or bot. A
forged or expired token still reaches the target page; an unknown link gets a page that
says so. Hospitals opt out with ``[clicks] enabled = false``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from carepath.store.schema import Patient, Touchpoint, TrackedLink

if TYPE_CHECKING:
    from carepath.engine import Engine

SOURCE = "carepath-clicks"
_URL = re.compile(r"https?://[^\s<>\"'，。；！？、）】》（【《]+")
_TRAILING = ".,;:!?)]}"
#: user agents of link unfurlers, crawlers and previewers (matched case-insensitively): their fetches are no clicks
PREVIEW_AGENTS = ("bot", "spider", "crawler", "preview", "facebookexternalhit", "whatsapp", "slack", "discord",
                  "telegram", "skypeuripreview", "iframely", "embedly", "linkedin", "pinterest", "vkshare",
                  "qq-urlmanager", "wechatshare", "headless")


def public_base_url(engine: "Engine") -> str:
    """The public address of the web hooks app patients open links on (no trailing slash): ``[web] public_url``,
    else where ``carepath serve`` listens (:func:`carepath.web.links.public_base`)."""
    from carepath.web.links import public_base

    return public_base(engine.config, engine.settings, getattr(engine, "served_at", None))


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def _mac(engine: "Engine", touchpoint_id: int, link_id: int) -> str:
    return engine.cipher.lookup_hash(f"click-link:{touchpoint_id}:{link_id}")[:10]


def click_token(engine: "Engine", touchpoint_id: int, link_id: int) -> str:
    return f"{_b36(touchpoint_id)}.{_b36(link_id)}.{_mac(engine, touchpoint_id, link_id)}"


def link_id(engine: "Engine", url: str) -> int:
    """The id of a link target, stored once per URL (remembered per engine: a template's links repeat)."""
    cache: dict[str, int] = engine.__dict__.setdefault("_tracked_links", {})
    if url not in cache:
        digest = hashlib.sha256(url.encode()).hexdigest()
        with engine.db.begin() as conn:
            found = conn.execute(select(TrackedLink.id).where(TrackedLink.url_hash == digest)).scalar()
            if found is None:
                try:
                    with conn.begin_nested():
                        found = conn.execute(insert(TrackedLink).values(
                            url_hash=digest, url=url, created_at=engine.clock.now()).returning(TrackedLink.id)).scalar()
                except IntegrityError:  # another worker stored it first
                    found = conn.execute(select(TrackedLink.id).where(TrackedLink.url_hash == digest)).scalar()
        cache[url] = int(found)
    return cache[url]


def tracked(engine: "Engine", touchpoint_id: int, body: str) -> str:
    """``body`` with every outside http(s) link replaced by its click redirect (unchanged when tracking is off)."""
    if not engine.config.clicks.enabled or "http" not in body:
        return body
    base = public_base_url(engine)

    def swap(match: re.Match[str]) -> str:
        url = match.group(0)
        tail = ""
        while url and url[-1] in _TRAILING:
            url, tail = url[:-1], url[-1] + tail
        if url.startswith(base + "/"):  # our own pages (survey links) are tracked by what they record
            return url + tail
        return f"{base}/c/{click_token(engine, touchpoint_id, link_id(engine, url))}{tail}"

    return _URL.sub(swap, body)


@dataclass(frozen=True)
class Click:
    """What a click token leads to: the target (``None``: unknown link) and whether the click counts."""

    url: str | None
    touchpoint_id: int | None = None
    link_id: int | None = None
    counts: bool = False
    why: str = ""


def _int36(text: str) -> int | None:
    return int(text, 36) if text.isalnum() and len(text) <= 12 else None


def is_preview(user_agent: str | None) -> bool:
    """An empty agent or a known unfurler, crawler or previewer."""
    agent = (user_agent or "").lower()
    return not agent or any(marker in agent for marker in PREVIEW_AGENTS)


def resolve_click(engine: "Engine", token: str, method: str, user_agent: str | None) -> Click:
    """Where a token goes, and whether opening it counts as a click (see the module docstring)."""
    parts = token.split(".")
    if len(parts) != 3:
        return Click(None, why="malformed")
    tp_id, lk_id = _int36(parts[0]), _int36(parts[1])
    if tp_id is None or lk_id is None:
        return Click(None, why="malformed")
    with engine.db.connect() as conn:
        url = conn.execute(select(TrackedLink.url).where(TrackedLink.id == lk_id)).scalar()
        if url is None:
            return Click(None, why="unknown link")
        if len(parts[2]) != 10 or not engine.cipher.lookup_matches(f"click-link:{tp_id}:{lk_id}", parts[2]):
            return Click(url, why="forged")
        sent_at = conn.execute(select(Touchpoint.sent_at).where(Touchpoint.id == tp_id)).scalar()
    if method.upper() != "GET":
        return Click(url, tp_id, lk_id, why="not a GET")
    if is_preview(user_agent):
        return Click(url, tp_id, lk_id, why="preview agent")
    if sent_at is None or engine.clock.now() > sent_at + engine.config.clicks.link_ttl:
        return Click(url, tp_id, lk_id, why="expired")
    return Click(url, tp_id, lk_id, counts=True)


def record_click(engine: "Engine", click: Click) -> Any:
    """Ingest the ``message.clicked`` event of a counting click (a second click on the same link is a duplicate)."""
    from carepath.definition.events import EventIn

    with engine.db.connect() as conn:
        row = conn.execute(select(Patient.mrn_enc, Touchpoint.journey, Touchpoint.step)
                           .join(Touchpoint, Touchpoint.patient_id == Patient.id)
                           .where(Touchpoint.id == click.touchpoint_id)).first()
    if row is None:
        return None
    return engine.ingest(EventIn(
        type="message.clicked", source=SOURCE, source_id=f"click:{click.touchpoint_id}:{click.link_id}",
        patient_mrn=engine.cipher.decrypt(row.mrn_enc) or "", occurred_at=engine.clock.now(),
        payload={"touchpoint_id": click.touchpoint_id, "link": click.link_id, "journey": row.journey,
                 "step": row.step}))

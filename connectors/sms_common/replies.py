"""Inbound replies (上行): which texts mean "stop sending me SMS"."""

from __future__ import annotations

UNSUBSCRIBE_KEYWORDS = frozenset({"r", "td", "退订"})


def is_unsubscribe(text: str) -> bool:
    """``R``, ``TD`` or ``退订``, ignoring case and surrounding blanks."""
    return (text or "").strip().casefold() in UNSUBSCRIBE_KEYWORDS

"""Masking of contact data for logs, artifacts and CLI output."""

from __future__ import annotations

import re

_DIGIT = "[0-9\uff10-\uff19]"  # ASCII or full-width
_SEP = "[\\s\\-.\u00b7\u2010-\u2015\u2212\u30fb\uff0d\uff0e]{0,3}"  # spaces, dashes, dots, none
# a mainland mobile (1, then 3-9, then nine digits) in any common spelling, optionally after +86 / 0086 / 86
_BODY = (f"(?P<prefix>[(\uff08]?(?:[+\uff0b]|[0\uff10]{{2}})?[8\uff18][6\uff16][)\uff09]?{_SEP})?"
         f"(?P<head>[1\uff11]{_SEP}[3-9\uff13-\uff19]{_SEP}{_DIGIT})"
         f"(?:{_SEP}{_DIGIT}){{4}}"
         f"(?P<tail>{_SEP}{_DIGIT}{_SEP}{_DIGIT}{_SEP}{_DIGIT}{_SEP}{_DIGIT})")
_PHONE = re.compile(f"(?<![0-9\uff10-\uff19]){_BODY}(?![0-9\uff10-\uff19])")
# inside a link a number counts only between the link's own delimiters ("?tel=138...&"), so an opaque token
# that happens to hold eleven digits after a 1 ("/s/1.5723749323d99...") stays a working link
_PHONE_IN_LINK = re.compile(f"(?<![0-9A-Za-z\uff10-\uff19]){_BODY}(?![0-9A-Za-z\uff10-\uff19])")
_LINK = re.compile(r"[A-Za-z][A-Za-z+.\-]*://[^\s<>\"'\u3000-\u303f\uff01-\uff0f\uff1a-\uff20]+")
_ASCII_DIGITS = str.maketrans("\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19", "0123456789")


def _masked(match: re.Match[str]) -> str:
    digits = lambda text: "".join(c for c in text.translate(_ASCII_DIGITS) if c.isdigit())  # noqa: E731
    return f"{match['prefix'] or ''}{digits(match['head'])}****{digits(match['tail'])}"


def _spans(text: str):
    """``(piece, pattern)`` pairs covering ``text``: links with the strict pattern, the rest with the loose one."""
    at = 0
    for link in _LINK.finditer(text):
        yield text[at:link.start()], _PHONE
        yield link.group(), _PHONE_IN_LINK
        at = link.end()
    yield text[at:], _PHONE


def contains_phone(text: str) -> bool:
    """Whether ``text`` holds a mainland mobile number in any spelling :func:`mask_text` masks."""
    return any(pattern.search(piece) is not None for piece, pattern in _spans(text))


def mask_phone(phone: str | None) -> str:
    """``13812341234`` (or ``138 1234 1234``, ``+86-138-1234-1234``) -> ``138****1234``."""
    if not phone:
        return ""
    digits = phone.strip()
    match = _PHONE.fullmatch(digits)
    if match:
        return _masked(match)
    if len(digits) >= 7:
        return digits[:3] + "*" * (len(digits) - 7) + digits[-4:] if len(digits) > 7 else digits[:3] + "****"
    return "*" * len(digits)


def mask_name(name: str | None) -> str:
    """``张三丰`` -> ``张**``."""
    if not name:
        return ""
    return name[0] + "*" * (len(name) - 1)


def mask_openid(openid: str | None) -> str:
    if not openid:
        return ""
    return openid[:4] + "****" + openid[-2:] if len(openid) > 6 else "****"


def mask_address(kind: str, value: str | None) -> str:
    """Mask a channel address according to its kind."""
    if kind == "phone":
        return mask_phone(value)
    if kind == "openid":
        return mask_openid(value)
    return "" if not value else "****"


def mask_text(text: str) -> str:
    """Mask mainland mobile numbers wherever they appear in free text, however they are spelt:
    spaces, dashes or dots between digits, full-width digits, a +86 / 0086 / 86 prefix. Inside a link
    (``scheme://...``) only a number standing between the link's delimiters is masked, so tokens keep working."""
    return "".join(pattern.sub(_masked, piece) for piece, pattern in _spans(text))

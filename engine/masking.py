"""Masking of contact data for logs, artifacts and CLI output."""

from __future__ import annotations

import re

# a mainland mobile, bare or with the country code (+86 / 86, optionally followed by - or a space)
_PHONE = re.compile(r"(?<!\d)((?:\+?86[- ]?)?1\d{2})\d{4}(\d{4})(?!\d)")


def mask_phone(phone: str | None) -> str:
    """``13812341234`` -> ``138****1234``."""
    if not phone:
        return ""
    digits = phone.strip()
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
    """Mask mainland mobile numbers wherever they appear in free text."""
    return _PHONE.sub(r"\1****\2", text)

"""Mainland mobile numbers as the providers want them."""

from __future__ import annotations


def national(phone: str) -> str:
    """``13912345678`` from ``+86 139-1234-5678``, ``8613912345678`` or itself (Aliyun's form)."""
    digits = phone.strip().replace(" ", "").replace("-", "")
    if digits.startswith("+86"):
        return digits[3:]
    if digits.startswith("86") and len(digits) == 13:
        return digits[2:]
    return digits.lstrip("+")


def e164(phone: str) -> str:
    """``+8613912345678`` (Tencent's form); a number already in E.164 is kept."""
    digits = phone.strip().replace(" ", "").replace("-", "")
    return digits if digits.startswith("+") else f"+86{national(digits)}"

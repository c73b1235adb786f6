"""SMS segment counting: what a message costs.

Text made only of GSM-7 characters fits 160 per single segment and 153 per
part when split; anything else (Chinese) is sent as UCS-2: 70 for one
segment, 67 per part when split. Chinese providers count the sign
(``【医院】``) as part of the text.
"""

from __future__ import annotations

import math

_GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = set("^{}\\[~]|€\f")  # each takes two septets


def is_gsm7(text: str) -> bool:
    """Whether ``text`` can be sent in the GSM-7 alphabet."""
    return all(c in _GSM7_BASIC or c in _GSM7_EXTENDED for c in text)


def segment_count(text: str) -> int:
    """How many SMS segments ``text`` takes (at least one)."""
    if is_gsm7(text):
        length = sum(2 if c in _GSM7_EXTENDED else 1 for c in text)
        single, part = 160, 153
    else:
        length = len(text)
        single, part = 70, 67
    if length <= single:
        return 1
    return math.ceil(length / part)


def signed_text(sign_name: str, body: str) -> str:
    """The text as the handset shows it: ``【sign】body``."""
    return f"【{sign_name}】{body}" if sign_name else body

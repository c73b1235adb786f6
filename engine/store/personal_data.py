"""Personal data in stored event payloads: encrypted at rest, readable again by the engine.

A payload value is encrypted, whole, when its dotted path (list items count as
``.0``, ``.1``...) matches one of the configured patterns (``fnmatch``, case-insensitive:
``*`` also crosses dots, so ``*id_card*`` finds ``visit.patient_id_card``), or when it
is text that contains a mainland ID-card number or mobile number in any spelling.
The value is replaced by ``{"$encrypted": "<key id>:<base64>"}`` (AES-GCM under the
store's key, the JSON of the original inside), so :func:`reveal_payload` gives it back.
"""

from __future__ import annotations

import json
import re
from fnmatch import translate
from functools import lru_cache
from typing import Any, Callable, Iterable, Protocol

from carepath.masking import contains_phone, mask_text

ENCRYPTED = "$encrypted"
DEFAULT_PRIVATE_PATHS = (
    "patient", "patient.*", "contact", "contact.*", "guardian", "guardian.*", "name", "patient_name",
    "*id_card*", "*idcard*", "*id_number", "*id_no", "*phone*", "*mobile*",
    "text",  # issue 21: what a patient wrote (message.replied), kept encrypted like its conversation turn
    "value", "systolic_bp", "diastolic_bp",  # issue 19: readings and check-in values (vitals.reading, checkin.recorded)
)
_ID_CARD = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[0-9Xx]"
                      r"(?![0-9A-Za-z])")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


class _Cipher(Protocol):
    def encrypt(self, value: str | None) -> str | None: ...
    def decrypt(self, token: str | None) -> str | None: ...


def contains_id_card(text: str) -> bool:
    """Whether ``text`` holds an 18-character resident ID number with a valid check character."""
    for match in _ID_CARD.finditer(text):
        number = match.group().upper()
        check = "10X98765432"[sum(int(d) * w for d, w in zip(number, _ID_WEIGHTS)) % 11]
        if number[-1] == check:
            return True
    return False


def mask_identifiers(text: str) -> str:
    """``text`` with mainland mobile numbers (``138****1234``) and ID-card numbers (``110105********002X``) masked."""
    return _ID_CARD.sub(lambda m: m.group()[:6] + "*" * 8 + m.group()[-4:], mask_text(text))


def protect_payload(payload: dict[str, Any], cipher: _Cipher, patterns: Iterable[str] = DEFAULT_PRIVATE_PATHS,
                    *, scan_text: bool = True) -> dict[str, Any]:
    """A copy of ``payload`` with personal data encrypted (see the module docstring)."""
    private = _matcher(tuple(patterns))

    def walk(value: Any, path: str) -> Any:
        if path and private(path):
            return _sealed(value, cipher)
        if isinstance(value, dict):
            return {k: walk(v, f"{path}.{k}".lower() if path else k.lower()) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(value)]
        if scan_text and isinstance(value, str) and (contains_id_card(value) or contains_phone(value)):
            return _sealed(value, cipher)
        return value

    return walk(payload, "")


@lru_cache(maxsize=32)
def _matcher(patterns: tuple[str, ...]) -> Callable[[str], Any]:
    """One compiled regular expression for all patterns (paths are matched lower-cased)."""
    if not patterns:
        return lambda path: False
    return re.compile("|".join(f"(?:{translate(p.lower())})" for p in patterns)).match


#: what a patient answered in a questionnaire: every ``answer`` of a FHIR QuestionnaireResponse, at any depth of
#: nested items (free text included); the questions stay readable, the scores are kept in their own columns
SURVEY_ANSWER_PATHS = ("*answer",)


def seal_answers(resource: dict[str, Any], cipher: _Cipher) -> dict[str, Any]:
    """A QuestionnaireResponse with every answer encrypted (:func:`reveal_payload` gives them back)."""
    return protect_payload(resource, cipher, SURVEY_ANSWER_PATHS)


def reveal_payload(payload: Any, cipher: _Cipher) -> Any:
    """The payload with every encrypted value decrypted back (for the engine's own use, never for logs)."""
    if isinstance(payload, dict):
        if set(payload) == {ENCRYPTED} and isinstance(payload[ENCRYPTED], str):
            return json.loads(cipher.decrypt(payload[ENCRYPTED]) or "null")
        return {k: reveal_payload(v, cipher) for k, v in payload.items()}
    if isinstance(payload, list):
        return [reveal_payload(v, cipher) for v in payload]
    return payload


def _sealed(value: Any, cipher: _Cipher) -> Any:
    if value is None:
        return None
    return {ENCRYPTED: cipher.encrypt(json.dumps(value, ensure_ascii=False))}

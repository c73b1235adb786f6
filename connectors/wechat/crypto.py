"""WeChat callback security: SHA-1 signatures, safe-mode AES, and the XML envelope.

- ``signature = sha1("".join(sorted([token, timestamp, nonce])))``; in safe mode
  ``msg_signature`` also sorts in the ``Encrypt`` value.
- Safe mode: AES-256-CBC with ``key = base64decode(EncodingAESKey + "=")``,
  ``IV = key[:16]``, PKCS#7 padding to 32-byte blocks; the plaintext is 16
  random bytes, the 4-byte big-endian length of the XML, the XML, the appid.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
import xml.etree.ElementTree as ET
from typing import Any, Mapping

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32


class CallbackCryptoError(ValueError):
    """A safe-mode payload that does not decrypt to a message for this app."""


def signature(*parts: str) -> str:
    """WeChat's signature: SHA-1 of the sorted parts joined."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def signature_ok(expected_parts: tuple[str, ...], given: str) -> bool:
    """Constant-time comparison of a signature given in a query string."""
    return bool(given) and hmac.compare_digest(signature(*expected_parts), given.lower())


def aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte key behind a 43-character EncodingAESKey."""
    key = base64.b64decode(encoding_aes_key + "=")
    if len(key) != 32:
        raise ValueError("EncodingAESKey must be 43 base64 characters (32 bytes)")
    return key


def encrypt(key: bytes, xml: str, appid: str) -> str:
    """The ``Encrypt`` value carrying ``xml`` for ``appid``."""
    body = xml.encode()
    plain = os.urandom(16) + struct.pack(">I", len(body)) + body + appid.encode()
    pad = BLOCK - len(plain) % BLOCK
    plain += bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def decrypt(key: bytes, encrypted: str, appid: str) -> str:
    """The XML inside an ``Encrypt`` value; raises :class:`CallbackCryptoError` unless it is for ``appid``."""
    try:
        raw = base64.b64decode(encrypted, validate=True)
        if not raw or len(raw) % 16:
            raise ValueError("not whole AES blocks")
        decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
        plain = decryptor.update(raw) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
            raise ValueError("bad padding")
        plain = plain[:-pad]
        (length,) = struct.unpack(">I", plain[16:20])
        xml, tail = plain[20:20 + length], plain[20 + length:]
        if len(xml) != length:
            raise ValueError("length past the end")
        text = xml.decode()
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise CallbackCryptoError(f"safe-mode payload does not decrypt: {exc}") from None
    if not hmac.compare_digest(tail, appid.encode()):
        raise CallbackCryptoError("safe-mode payload is for another appid")
    return text


def parse_xml(body: bytes | str) -> dict[str, Any]:
    """A WeChat XML message as a dict: text of each child; nested ``List`` items as lists of dicts.

    Raises ``ValueError`` when ``body`` is not XML with a root element. Entity
    declarations are refused (no billion laughs on an unauthenticated envelope).
    """
    text = body.decode() if isinstance(body, bytes) else body
    if "<!ENTITY" in text or "<!DOCTYPE" in text:
        raise ValueError("XML with a DOCTYPE or entities is refused")
    try:
        root = ET.fromstring(text)
        return _element(root)
    except ET.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from None
    except RecursionError:
        raise ValueError("XML nested too deeply") from None


def _element(node: ET.Element) -> dict[str, Any]:
    """Text of each child; groups as dicts; ``List`` items as a list. ``ValueError`` for a shape WeChat never sends
    (an element that is text in one place and a group or list in another)."""
    out: dict[str, Any] = {}
    for child in node:
        if len(child):
            item = _element(child)
            # <SubscribeMsgPopupEvent><List>..</List><List>..</List></SubscribeMsgPopupEvent>: every List an item
            if child.tag == "List":
                _slot(out, "List", list).append(item)
            else:
                for key, value in item.items():
                    if key == "List":
                        _slot(out, "List", list).extend(value)
                    else:
                        _slot(out, child.tag, dict)[key] = value
        elif child.tag in out or child.tag == "List":
            raise ValueError(f"<{child.tag}> appears twice, or as text where a group is expected")
        else:
            out[child.tag] = (child.text or "").strip()
    return out


def _slot(out: dict[str, Any], tag: str, kind: type) -> Any:
    value = out.setdefault(tag, kind())
    if not isinstance(value, kind):
        raise ValueError(f"<{tag}> is text in one place and a group in another")
    return value


def to_xml(fields: Mapping[str, Any], root: str = "xml") -> str:
    """WeChat-style XML: text in CDATA, integers bare, a dict nests, a list repeats ``<List>`` items."""
    parts = [f"<{root}>"]
    for key, value in fields.items():
        if isinstance(value, list):
            parts.extend(to_xml(item, "List") for item in value)
        elif isinstance(value, dict):
            parts.append(to_xml(value, key))
        elif isinstance(value, int) and not isinstance(value, bool):
            parts.append(f"<{key}>{value}</{key}>")
        else:
            parts.append(f"<{key}><![CDATA[{value}]]></{key}>")
    parts.append(f"</{root}>")
    return "".join(parts)

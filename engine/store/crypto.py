"""Contact data at rest: AES-GCM with a key id for rotation, keyed hashes for look-ups."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class KeyError_(ValueError):
    """The configured key is unusable."""


class Cipher:
    """Encrypts short strings as ``keyid:base64(nonce|ciphertext)``.

    ``keys`` maps key ids to 32-byte keys in the order they were created; new
    data uses ``current`` and old key ids stay readable, which is what
    rotation needs. Look-up hashes are keyed from the first (oldest) key so
    that patients are still found by MRN or phone after a rotation.
    """

    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        if current not in keys:
            raise KeyError_(f"current key id {current!r} has no key")
        for kid, key in keys.items():
            if len(key) != 32:
                raise KeyError_(f"key {kid!r} must be 32 bytes (base64 of 32 random bytes)")
        self._aead = {kid: AESGCM(key) for kid, key in keys.items()}
        self._hash_key = hashlib.sha256(b"carepath-lookup|" + next(iter(keys.values()))).digest()
        self.current = current

    def encrypt(self, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        nonce = os.urandom(12)
        ct = self._aead[self.current].encrypt(nonce, value.encode(), self.current.encode())
        return f"{self.current}:{base64.b64encode(nonce + ct).decode()}"

    def decrypt(self, token: str | None) -> str | None:
        if not token:
            return None
        kid, _, blob = token.partition(":")
        raw = base64.b64decode(blob)
        return self._aead[kid].decrypt(raw[:12], raw[12:], kid.encode()).decode()

    def lookup_hash(self, value: str | None) -> str | None:
        """A keyed hash, stable for equal inputs, for finding a patient by a contact."""
        if not value:
            return None
        return hmac.new(self._hash_key, value.strip().encode(), hashlib.sha256).hexdigest()


def load_cipher(secret: str | None, key_id: str, key_file: Path) -> Cipher:
    """The cipher from ``CAREPATH_SECRET_KEY`` or, on the embedded default, a key file.

    The key file is created (mode 600) on first use so that ``carepath demo``
    needs no set-up; production sets the environment variable.
    """
    if secret:
        try:
            key = base64.b64decode(secret, validate=True)
        except ValueError as exc:
            raise KeyError_("CAREPATH_SECRET_KEY is not valid base64") from exc
        return Cipher({key_id: key}, key_id)
    if key_file.exists():
        key = base64.b64decode(key_file.read_text().strip())
    else:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key = AESGCM.generate_key(bit_length=256)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.b64encode(key).decode())
    return Cipher({key_id: key}, key_id)

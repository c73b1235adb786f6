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
        self.fingerprint = key_fingerprint(next(iter(keys.values())))

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


class KeyNotFound(KeyError_):
    """No key where the rule says it is (``where`` lists what was looked at)."""


def key_fingerprint(key: bytes) -> str:
    """A short, non-secret identifier of a key, recorded in the store it encrypts."""
    return hashlib.sha256(b"carepath-key-fingerprint|" + key).hexdigest()[:16]


def describe_key_search(secret: str | None, key_file: Path) -> str:
    """Where the key was looked for, in the order of the rule (for error messages)."""
    env = "set" if secret else "not set"
    state = "exists" if key_file.exists() else "does not exist"
    return f"CAREPATH_SECRET_KEY ({env}), then the key file {key_file} ({state})"


def load_cipher(secret: str | None, key_id: str, key_file: Path, *, create: bool = False) -> Cipher:
    """The cipher from ``CAREPATH_SECRET_KEY``, else from ``key_file``.

    With ``create`` a missing key file is generated (mode 600): the caller
    decides that, only for a new, empty store. Otherwise a missing key raises
    :class:`KeyNotFound` naming where it was looked for.
    """
    if secret:
        try:
            key = base64.b64decode(secret, validate=True)
        except ValueError as exc:
            raise KeyError_("CAREPATH_SECRET_KEY is not valid base64") from exc
        return Cipher({key_id: key}, key_id)
    if key_file.exists():
        try:
            key = base64.b64decode(key_file.read_text().strip(), validate=True)
        except (ValueError, OSError) as exc:
            raise KeyError_(f"key file {key_file} is not readable base64: {exc}") from None
    elif create:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key = AESGCM.generate_key(bit_length=256)
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it a moment ago
            return load_cipher(secret, key_id, key_file)
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.b64encode(key).decode())
    else:
        raise KeyNotFound(f"no encryption key: looked in {describe_key_search(secret, key_file)}")
    return Cipher({key_id: key}, key_id)

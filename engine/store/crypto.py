"""Contact data at rest: AES-GCM under a key ring (key id in every value), keyed hashes for look-ups.

A :class:`Cipher` is a key ring: several key ids, one *active* for writing.
Every value carries the id of the key that encrypted it (``keyid:base64``), so
values under any key of the ring stay readable while ``carepath keys rotate``
moves them to a new key. Look-up hashes (MRN, phone, openid) are keyed from
the active key; :meth:`Cipher.lookup_hashes` gives the hash under every key of
the ring so that look-ups find a patient whichever key hashed them meanwhile.
Where the keys come from: :mod:`carepath.store.keyring`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import time
from pathlib import Path
from typing import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)


class KeyError_(ValueError):
    """The configured key is unusable."""


class KeyNotFound(KeyError_):
    """No key where the rule says it is (``where`` lists what was looked at)."""


class UnknownKeyId(KeyError_, KeyError):
    """A value is encrypted under a key id the ring does not hold."""


class Cipher:
    """Encrypts short strings as ``keyid:base64(nonce|ciphertext)`` under the active key of a key ring.

    ``keys`` maps key ids to 32-byte keys; ``current`` is the active key id (new
    values and look-up hashes use it). ``follow`` (optional) names a function
    returning the store's active key id (``store_meta.active_key_id``): it is
    consulted every ``refresh`` seconds, so a running ``serve`` starts writing
    under a new key soon after ``carepath keys rotate`` made it active.
    """

    def __init__(self, keys: dict[str, bytes], current: str, *, follow: Callable[[], str | None] | None = None,
                 refresh: float = 5.0) -> None:
        if current not in keys:
            raise KeyError_(f"current key id {current!r} has no key")
        for kid, key in keys.items():
            if len(key) != 32:
                raise KeyError_(f"key {kid!r} must be 32 bytes (base64 of 32 random bytes)")
            if not kid or ":" in kid or len(kid) > 32:
                raise KeyError_(f"key id {kid!r} must be 1-32 characters without ':'")
        self._aead = {kid: AESGCM(key) for kid, key in keys.items()}
        self._hash_keys = {kid: hashlib.sha256(b"carepath-lookup|" + key).digest() for kid, key in keys.items()}
        self.fingerprints = {kid: key_fingerprint(key) for kid, key in keys.items()}
        self._current = current
        self._follow = follow
        self._refresh = refresh
        self._checked = time.monotonic()

    # -- the ring ----------------------------------------------------------------------

    @property
    def current(self) -> str:
        """The active key id (what new values and look-up hashes use)."""
        if self._follow is not None and time.monotonic() - self._checked >= self._refresh:
            self._checked = time.monotonic()
            self._adopt(self._follow())
        return self._current

    @current.setter
    def current(self, kid: str) -> None:
        if kid not in self._aead:
            raise UnknownKeyId(f"key id {kid!r} is not in the key ring ({', '.join(self.key_ids)})")
        self._current = kid

    def follow(self, source: Callable[[], str | None], refresh: float = 5.0) -> None:
        """Consult ``source`` (the store's active key id) every ``refresh`` seconds from now on."""
        self._follow, self._refresh = source, refresh
        self._checked = time.monotonic() - refresh

    def _adopt(self, kid: str | None) -> None:
        if kid is None or kid == self._current:
            return
        if kid in self._aead:
            self._current = kid
        else:
            log.warning("the store's active key %r is not in this process's key ring: still writing under %r",
                        kid, self._current)

    @property
    def key_ids(self) -> list[str]:
        """The key ids of the ring, the active one first."""
        cur = self.current
        return [cur] + [k for k in self._aead if k != cur]

    @property
    def fingerprint(self) -> str:
        """The active key's fingerprint (non-secret)."""
        return self.fingerprints[self.current]

    def without(self, retired: set[str]) -> None:
        """Drop retired key ids from the ring (never the active one)."""
        for kid in retired:
            if kid != self._current and kid in self._aead:
                del self._aead[kid], self._hash_keys[kid], self.fingerprints[kid]

    # -- values ------------------------------------------------------------------------

    def encrypt(self, value: str | None, *, key_id: str | None = None) -> str | None:
        """``value`` encrypted under ``key_id`` (default: the active key); empty stays ``None``."""
        if value is None or value == "":
            return None
        kid = key_id or self.current
        nonce = os.urandom(12)
        ct = self._aead[kid].encrypt(nonce, value.encode(), kid.encode())
        return f"{kid}:{base64.b64encode(nonce + ct).decode()}"

    def decrypt(self, token: str | None) -> str | None:
        """The plain value of a token under any key of the ring."""
        if not token:
            return None
        kid, _, blob = token.partition(":")
        aead = self._aead.get(kid)
        if aead is None:
            raise UnknownKeyId(f"value encrypted under key id {kid!r}, which is not in the key ring "
                               f"({', '.join(self.key_ids)})")
        raw = base64.b64decode(blob)
        return aead.decrypt(raw[:12], raw[12:], kid.encode()).decode()

    def reencrypt(self, token: str | None, key_id: str) -> str | None:
        """``token`` under ``key_id`` (unchanged when it already is)."""
        if not token or key_id_of(token) == key_id:
            return token
        return self.encrypt(self.decrypt(token), key_id=key_id)

    # -- keyed hashes ------------------------------------------------------------------

    def lookup_hash(self, value: str | None, *, key_id: str | None = None) -> str | None:
        """A keyed hash under the active key (or ``key_id``), stable for equal inputs, for finding a patient."""
        if not value:
            return None
        key = self._hash_keys[key_id or self.current]
        return hmac.new(key, value.strip().encode(), hashlib.sha256).hexdigest()

    def lookup_hashes(self, value: str | None) -> list[str]:
        """The keyed hash of ``value`` under every key of the ring, the active key's first (look-ups use all)."""
        if not value:
            return []
        return [self.lookup_hash(value, key_id=kid) for kid in self.key_ids]

    def lookup_matches(self, value: str, digest: str) -> bool:
        """Whether ``digest`` is (a prefix of) ``value``'s keyed hash under some key of the ring (signed links)."""
        return bool(digest) and any(hmac.compare_digest(digest, h[:len(digest)]) for h in self.lookup_hashes(value))


#: the name the key ring goes by in new code
KeyRing = Cipher


def key_id_of(token: str | None) -> str | None:
    """The key id an encrypted value names (``None`` for no value)."""
    if not token:
        return None
    kid, sep, _ = token.partition(":")
    return kid if sep else None


def key_fingerprint(key: bytes) -> str:
    """A short, non-secret identifier of a key, recorded in the store it encrypts."""
    return hashlib.sha256(b"carepath-key-fingerprint|" + key).hexdigest()[:16]


def decode_key(text: str, where: str) -> bytes:
    """A key from its base64 text; ``where`` names its source in the error."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError as exc:
        raise KeyError_(f"{where} is not valid base64") from exc
    if len(key) != 32:
        raise KeyError_(f"{where} must be 32 bytes (base64 of 32 random bytes), not {len(key)}")
    return key


def describe_key_search(secret: str | None, key_file: Path) -> str:
    """Where the key was looked for, in the order of the rule (for error messages)."""
    env = "set" if secret else "not set"
    state = "exists" if key_file.exists() else "does not exist"
    return f"CAREPATH_SECRET_KEY ({env}), then the key file {key_file} ({state})"


def read_key_file(key_file: Path, *, create: bool = False) -> bytes | None:
    """The key in ``key_file``; with ``create`` a missing file is generated (mode 600); else ``None``."""
    if key_file.exists():
        try:
            return decode_key(key_file.read_text(), f"key file {key_file}")
        except OSError as exc:
            raise KeyError_(f"key file {key_file} is not readable: {exc}") from None
    if not create:
        return None
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = AESGCM.generate_key(bit_length=256)
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it a moment ago
        return read_key_file(key_file)
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.b64encode(key).decode())
    return key


def load_cipher(secret: str | None, key_id: str, key_file: Path, *, create: bool = False) -> Cipher:
    """The one-key cipher from ``CAREPATH_SECRET_KEY``, else from ``key_file``.

    With ``create`` a missing key file is generated (mode 600): the caller
    decides that, only for a new, empty store. Otherwise a missing key raises
    :class:`KeyNotFound` naming where it was looked for. (A whole key ring:
    :func:`carepath.store.keyring.load_key_ring`.)
    """
    if secret:
        return Cipher({key_id: decode_key(secret, "CAREPATH_SECRET_KEY")}, key_id)
    key = read_key_file(key_file, create=create)
    if key is None:
        raise KeyNotFound(f"no encryption key: looked in {describe_key_search(secret, key_file)}")
    return Cipher({key_id: key}, key_id)

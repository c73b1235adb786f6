"""Where the key ring comes from: environment, key files, a key folder and the KMS plugin hook.

Keys are gathered, in this order, from

1. ``CAREPATH_SECRET_KEY`` (key id ``CAREPATH_KEY_ID``, default ``k1``), else the key
   file ``CAREPATH_KEY_FILE`` / ``$CAREPATH_HOME/secret.key`` under that same id;
2. ``CAREPATH_KEYS``: a JSON object ``{"k2": "<base64>", ...}``;
3. the key folder ``CAREPATH_KEY_DIR`` (default ``$CAREPATH_HOME/keys``): one
   ``<key id>.key`` file per key, base64 inside;
4. plugins implementing ``carepath_encryption_keys`` (a hospital KMS).

The active key (for writing) is the store's (``store_meta.active_key_id``, set by
``carepath keys rotate``), else ``CAREPATH_ACTIVE_KEY_ID``, else ``CAREPATH_KEY_ID``.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carepath.store.crypto import Cipher, KeyError_, KeyNotFound, decode_key, describe_key_search, read_key_file

if TYPE_CHECKING:
    from carepath.settings import Settings

log = logging.getLogger(__name__)


def describe_ring_search(settings: "Settings") -> str:
    """Every place keys were looked for (for error messages)."""
    folder = key_dir(settings)
    where = describe_key_search(settings.secret_key, settings.key_path)
    if settings.keys:
        where += f", CAREPATH_KEYS ({', '.join(settings.keys)})"
    if folder.is_dir():
        where += f", the key folder {folder}"
    return where


def key_dir(settings: "Settings") -> Path:
    """The folder of ``<key id>.key`` files."""
    return (settings.key_dir or settings.home / "keys").resolve()


def gather_keys(settings: "Settings", *, create: bool = False, plugins: bool = True) -> dict[str, bytes]:
    """Every key the settings and plugins name, by key id (see the module docstring)."""
    found: dict[str, tuple[bytes, str]] = {}

    def add(kid: str, key: bytes, where: str) -> None:
        if kid in found and found[kid][0] != key:
            raise KeyError_(f"key id {kid!r} has two different keys: in {found[kid][1]} and in {where}")
        found.setdefault(kid, (key, where))

    if settings.secret_key:
        add(settings.key_id, decode_key(settings.secret_key, "CAREPATH_SECRET_KEY"), "CAREPATH_SECRET_KEY")
    else:
        others = bool(settings.keys) or any(key_dir(settings).glob("*.key"))
        key = read_key_file(settings.key_path, create=create and not others)
        if key is not None:
            add(settings.key_id, key, f"the key file {settings.key_path}")
    for kid, text in (settings.keys or {}).items():
        add(kid, decode_key(text, f"CAREPATH_KEYS[{kid!r}]"), "CAREPATH_KEYS")
    for path in sorted(key_dir(settings).glob("*.key")):
        add(path.stem, decode_key(path.read_text(), f"key file {path}"), f"the key file {path}")
    if plugins:
        for kid, key in plugin_keys().items():
            add(kid, key, "the carepath_encryption_keys plugin hook")
    return {kid: key for kid, (key, _) in found.items()}


def plugin_keys() -> dict[str, bytes]:
    """Keys returned by ``carepath_encryption_keys`` implementations (a hospital KMS)."""
    from carepath.plugins.manager import get_plugin_manager

    keys: dict[str, bytes] = {}
    for batch in get_plugin_manager().pm.hook.carepath_encryption_keys():
        for kid, key in (batch or {}).items():
            keys[str(kid)] = key if isinstance(key, bytes) else decode_key(str(key), f"plugin key {kid!r}")
    return keys


def load_key_ring(settings: "Settings", *, create: bool = False, active: str | None = None,
                  plugins: bool = True) -> Cipher:
    """The key ring the settings describe; ``active`` (the store's) is the key id to write with if in the ring.

    Raises :class:`KeyNotFound` when no key is found anywhere (naming every place looked at).
    """
    keys = gather_keys(settings, create=create, plugins=plugins)
    if not keys:
        raise KeyNotFound(f"no encryption key: looked in {describe_ring_search(settings)}")
    for kid in (active, settings.active_key_id, settings.key_id):
        if kid and kid in keys:
            return Cipher(keys, kid)
    if active or settings.active_key_id:
        wanted = active or settings.active_key_id
        raise KeyNotFound(f"the active key {wanted!r} is not in the key ring ({', '.join(keys)}); "
                          f"looked in {describe_ring_search(settings)}")
    return Cipher(keys, next(iter(keys)))


def new_key_text() -> str:
    """A fresh random key as base64 (for ``carepath keys new``)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


def write_key_file(settings: "Settings", kid: str) -> Path:
    """Create ``<key dir>/<kid>.key`` (mode 600) with a fresh key; refuses to overwrite."""
    import os

    folder = key_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kid}.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyError_(f"{path} exists already") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(new_key_text())
    return path


def ring_summary(cipher: Cipher) -> list[dict[str, Any]]:
    """Key id, fingerprint and whether active, per key of the ring."""
    return [{"key_id": kid, "fingerprint": cipher.fingerprints[kid], "active": kid == cipher.current}
            for kid in cipher.key_ids]

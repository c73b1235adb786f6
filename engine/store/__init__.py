"""Persistence: table mappings, database opening and migrations, contact encryption."""

from carepath.store.crypto import Cipher, load_cipher
from carepath.store.database import open_database, upgrade
from carepath.store import schema

__all__ = ["Cipher", "load_cipher", "open_database", "schema", "upgrade"]

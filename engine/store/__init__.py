"""Persistence: table mappings, database opening and migrations, contact encryption."""

from carepath.store.crypto import Cipher, KeyError_, KeyNotFound, load_cipher
from carepath.store.database import (DatabaseNotFound, KeyMismatch, Store, StoreError, open_database, open_store,
                                     upgrade)
from carepath.store import schema

__all__ = ["Cipher", "DatabaseNotFound", "KeyError_", "KeyMismatch", "KeyNotFound", "Store", "StoreError",
           "load_cipher", "open_database", "open_store", "schema", "upgrade"]

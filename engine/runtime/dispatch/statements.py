"""Moved to :mod:`carepath.store.statements`; importable under this name for one release (carepath._moved)."""
from carepath._moved import alias

alias(__name__)

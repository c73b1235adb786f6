"""Moved to :mod:`carepath.runtime.clock`; importable under this name for one release (carepath._moved)."""
from carepath._moved import alias

alias(__name__)

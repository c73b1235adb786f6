"""Moved to :mod:`carepath.definition.durations`; importable under this name for one release (carepath._moved)."""
from carepath._moved import alias

alias(__name__)

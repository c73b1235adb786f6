"""Old module names kept importable for one release after the ``engine/`` regrouping (and later moves).

The regrouping (definition/, runtime/, store/) moved modules that integrators and
plugins import. Each old name is a two-line module (``engine/clock.py`` ...) that
calls :func:`alias`: importing it warns with a ``DeprecationWarning`` naming the
new place, and gives the new module itself, so every object is the same object
under both names. docs/plugins.md lists the names; they go away in the next release.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from types import ModuleType

#: old name -> where the module lives now
MOVED: dict[str, str] = {
    "carepath.audit": "carepath.store.audit",
    "carepath.batch_context": "carepath.runtime.batch_context",
    "carepath.clock": "carepath.runtime.clock",
    "carepath.context": "carepath.definition.context",
    "carepath.dispatcher": "carepath.runtime.dispatcher",
    "carepath.dsl": "carepath.definition.dsl",
    "carepath.durations": "carepath.definition.durations",
    "carepath.events": "carepath.definition.events",
    "carepath.expressions": "carepath.definition.expressions",
    "carepath.ingest": "carepath.runtime.ingest",
    "carepath.journey_files": "carepath.definition.journey_files",
    "carepath.model": "carepath.definition.model",
    "carepath.patients": "carepath.runtime.patients",
    "carepath.planner": "carepath.runtime.planner",
    "carepath.policy": "carepath.runtime.policy",
    "carepath.registry": "carepath.definition.registry",
    "carepath.scheduling": "carepath.runtime.scheduling",
    # one module owns the statements built once (session 7)
    "carepath.runtime.dispatch.statements": "carepath.store.statements",
    "carepath.store.prepared": "carepath.store.statements",
    "carepath.validation": "carepath.definition.validation",
}


def alias(old: str) -> ModuleType:
    """Make the module being imported as ``old`` the module at its new place, with a DeprecationWarning
    attributed to the line that imported it."""
    new = MOVED[old]
    module = importlib.import_module(new)
    warnings.warn(f"{old} has moved to {new}: import it from there ({old} is kept for this release only)",
                  DeprecationWarning, stacklevel=_importer_level())
    sys.modules[old] = module  # the import system hands out what sys.modules holds once the shim has run
    return module


def _importer_level() -> int:
    """The ``stacklevel`` of the first frame outside this module, the shim and the import machinery.

    ``warnings.warn`` itself passes over importlib's bootstrap frames when it counts, so only the
    other frames count here.
    """
    frame, level = sys._getframe(1), 1
    while frame is not None:
        name = frame.f_code.co_filename
        bootstrap = "importlib" in name and "_bootstrap" in name
        if not (bootstrap or name == importlib.__file__ or name == __file__
                or frame.f_globals.get("__name__") in MOVED):
            return level
        frame = frame.f_back
        level += not bootstrap
    return 1

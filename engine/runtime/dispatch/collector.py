"""Python's cyclic garbage collector paused while a batch is processed.

A batch allocates tens of thousands of short-lived objects (rows, patient views, decisions, rendered messages) that
stay alive until the batch ends and are then freed by reference counting. With the collector running, every 700
allocations start a young collection that walks them all, promotes them, and every few batches a full collection
walks every object of the process as well (the modules, the compiled templates, the journey versions): in the
bench's sweep at 10,000 patients that was a fifth of the dispatcher's CPU, for almost nothing collected. Paused for
the batch, none of that runs; what the batch left in reference cycles (a few objects a batch) is collected by the
first collection after it. A process that disabled the collector itself keeps it disabled; batches running at once
in several threads resume it when the last one ends. Under ``serve`` such batches can overlap for long stretches
(several journeys' due-now dispatchers, scheduled runs): a batch that ends while the pause has lasted more than
:data:`MAX_PAUSE_S` runs one young-generation collection itself, so cyclic garbage never piles up for long.
"""

from __future__ import annotations

import gc
import threading
import time
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_running = 0  # batches in progress in this process
_resume = False  # whether the collector was enabled when the first of them started
_since = 0.0  # monotonic time of the pause's start, or of the last collection made during it
MAX_PAUSE_S = 10.0


@contextmanager
def collector_paused() -> Iterator[None]:
    """Keep the cyclic garbage collector from running inside the block (reference counting frees as usual)."""
    global _running, _resume, _since
    with _lock:
        if _running == 0:
            _resume = gc.isenabled()
            _since = time.monotonic()
            gc.disable()
        _running += 1
    try:
        yield
    finally:
        collect = False
        with _lock:
            _running -= 1
            if _running == 0 and _resume:
                gc.enable()
            elif _running and _resume and time.monotonic() - _since > MAX_PAUSE_S:
                _since, collect = time.monotonic(), True
        if collect:  # other batches still run: collect the young generation now rather than at their end
            gc.collect(1)

"""Per-source request budgets and authentication-failure lock-outs (thread-safe, bounded memory)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Callable


class SourceLimiter:
    """Token buckets and failure windows keyed by ``(source, class)``; the least recently seen are forgotten
    past ``max_keys``, so a flood of spoofed sources cannot exhaust memory."""

    def __init__(self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_keys = max_keys
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()  # tokens, last refill
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._locked: OrderedDict[tuple[str, str], float] = OrderedDict()  # until

    def take(self, key: tuple[str, str], rate: float, burst: int) -> float:
        """Spend one request of ``key``'s budget: 0 when allowed, else the seconds until one is available."""
        if rate <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - last) * rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / rate
            self._buckets[key] = (tokens - 1 if tokens >= 1 else tokens, now)
            self._trim(self._buckets)
        return wait

    def locked_for(self, key: tuple[str, str]) -> float:
        """Seconds ``key`` stays locked out after too many refused authentications (0: not locked)."""
        now = self.clock()
        with self._lock:
            until = self._locked.get(key)
            if until is None:
                return 0.0
            if until <= now:
                del self._locked[key]
                return 0.0
            return until - now

    def failed(self, key: tuple[str, str], limit: int, window: float) -> bool:
        """Record a refused authentication; True when this one locks ``key`` out for ``window`` seconds."""
        if limit <= 0:
            return False
        now = self.clock()
        with self._lock:
            seen = self._failures.pop(key, deque())
            seen.append(now)
            while seen and seen[0] <= now - window:
                seen.popleft()
            if len(seen) >= limit:
                self._locked[key] = now + window
                self._trim(self._locked)
                return True
            self._failures[key] = seen
            self._trim(self._failures)
        return False

    def _trim(self, table: OrderedDict) -> None:
        while len(table) > self.max_keys:
            table.popitem(last=False)

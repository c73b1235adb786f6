"""The serve tests clean up after a run that died: its servers are found by their owner mark and killed."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.serve.helpers import OWNER, stop_orphans


def _sleeper(owner: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            env={**os.environ, OWNER: str(owner)})


def _dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


def test_a_server_whose_test_run_died_is_killed_and_one_of_a_live_run_is_kept() -> None:
    orphan, kept = _sleeper(_dead_pid()), _sleeper(os.getppid())  # the parent of this pytest is alive
    try:
        killed = stop_orphans()
        assert orphan.wait(10) != 0 and orphan.pid in killed
        assert kept.poll() is None and kept.pid not in killed
    finally:
        for proc in (orphan, kept):
            proc.kill()
            proc.wait()

"""Ctrl-C in `carepath demo` stops within seconds, without a traceback (a terminal's Ctrl-C: the whole group)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.serve.helpers import wait_for

pytestmark = pytest.mark.prefect


def test_ctrl_c_stops_the_demo_quickly_and_quietly(tmp_path):
    home = tmp_path / "demo"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    demo = subprocess.Popen([sys.executable, "-c", "from carepath.cli import main; main()", "demo", "--patients", "40",
                             "--days", "30", "--home", str(home)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, cwd=tmp_path)
    try:
        wait_for(lambda: (home / "demo.db").exists() or demo.poll() is not None, 120, "the demo to start")
        time.sleep(2)  # starting: importing Prefect, starting its server, or the first flow running
        os.killpg(demo.pid, signal.SIGINT)
        started = time.monotonic()
        out, err = demo.communicate(timeout=30)
        took = time.monotonic() - started
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    assert demo.returncode == 130
    assert took < 10, f"took {took:.1f} s to stop"
    assert "Traceback" not in err.decode() + out.decode()
    assert "interrupted" in out.decode()

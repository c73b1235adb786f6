"""Ctrl-C in `carepath demo` stops in one line (a terminal's Ctrl-C: the whole group), at any
moment; and a demo run on a real Prefect server is tagged like a served run and says where its runs are."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.serve.helpers import wait_for

pytestmark = pytest.mark.prefect
DEMO = [sys.executable, "-c", "from carepath.cli import main; main()", "demo"]


@pytest.mark.parametrize("moment", ["while it starts", "while a day runs"])
def test_ctrl_c_stops_the_demo_quickly_in_one_line(tmp_path, moment):
    home = tmp_path / "demo"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    env.pop("PREFECT_API_URL", None)
    demo = subprocess.Popen([*DEMO, "--patients", "40", "--days", "30", "--home", str(home)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, cwd=tmp_path)
    try:
        if moment == "while it starts":
            time.sleep(1.5)  # importing carepath and Prefect
        else:
            wait_for(lambda: (home / "demo.db").exists() or demo.poll() is not None, 120, "the demo to start")
            time.sleep(2)  # starting Prefect's server, or the first flow running
        os.killpg(demo.pid, signal.SIGINT)
        out, err = demo.communicate(timeout=60)  # it stops (a hang fails here); how fast is no test's business
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    said = [line for line in (out.decode() + err.decode()).splitlines() if line.strip()]
    assert demo.returncode == 130, said
    assert len(said) == 1 and said[0].startswith("interrupted"), said


def test_a_demo_on_a_prefect_server_is_tagged_and_says_where_its_runs_are(tmp_path, prefect_server):
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": prefect_server.api_url}
    run = subprocess.run([*DEMO, "--patients", "10", "--days", "2", "--home", str(tmp_path / "demo")], env=env,
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "ephemeral" not in run.stdout
    assert f"the runs are on the Prefect server at {prefect_server.ui_url}, flow outpatient-visit, tagged demo" \
        in run.stdout
    runs = httpx.post(f"{prefect_server.api_url}/flow_runs/filter", timeout=10,
                      json={"limit": 50, "flow_runs": {"tags": {"all_": ["demo"]}}}).json()
    assert len(runs) == 2
    for tags in (set(r["tags"]) for r in runs):
        assert {"carepath", "journey:outpatient-visit", "demo"} <= tags
        assert any(t.startswith("version:") for t in tags)

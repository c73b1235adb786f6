"""docs/quickstart.md runs as written: its shell blocks, in order, in an empty folder, with the installed carepath."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "quickstart.md"
SKIP = "<!-- quickstart-test: skip"


def quickstart_script() -> str:
    """Every ```bash block of the page, except those marked to skip (the install), as one script."""
    text = DOC.read_text(encoding="utf-8")
    blocks = [m for m in re.finditer(r"^```bash\n(.*?)^```", text, re.S | re.M)]
    run = [m.group(1) for m in blocks if not _line_before(text, m.start()).startswith(SKIP)]
    return "set -euo pipefail\n" + "\n".join(run)


def _line_before(text: str, pos: int) -> str:
    return text[:pos].rstrip("\n").rsplit("\n", 1)[-1]


def test_the_quickstart_runs_as_written(tmp_path: Path) -> None:
    carepath = Path(sys.executable).with_name("carepath")
    if not carepath.exists():
        pytest.skip("the carepath console script is not installed next to this interpreter")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREPATH_")}
    env.update(PATH=f"{carepath.parent}{os.pathsep}{env.get('PATH', '')}", COLUMNS="100",
               PREFECT_HOME=str(tmp_path / "prefect"))
    script = quickstart_script()
    assert "carepath events ingest" in script and "pip install" not in script
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    assert "13800001111" not in done.stdout + done.stderr  # contacts masked everywhere

    def listed(*args: str) -> list[dict]:
        out = subprocess.run([str(carepath), *args, "--json"], cwd=tmp_path / "my-hospital", env=env,
                             capture_output=True, text=True, timeout=120, check=True).stdout
        return json.loads(out)[args[0]]

    by_step = {(t["patient_id"], t["step"]): t for t in listed("touchpoints", "list")}
    assert by_step[(2, "queue-notice")]["status"] == "sent"  # urgent: sent as the check-in arrived
    assert by_step[(2, "reminder")]["status"] == "skipped"  # the evening before already passed
    assert by_step[(3, "confirmation")]["status"] == "cancelled"  # booked, then cancelled before dispatch
    for key in ((1, "confirmation"), (2, "confirmation"), (1, "nurse-call")):
        t = by_step[key]
        assert t["status"] == "sent" or (t["status"] == "scheduled" and "quiet hours" in t["reason"]), t
    assert (2, "nurse-call") in by_step and by_step[(2, "nurse-call")]["status"] in ("skipped", "scheduled")
    if by_step[(1, "nurse-call")]["status"] == "sent":
        assert [(t["patient_id"], t["kind"]) for t in listed("tasks", "list")] == [(1, "call_patient")]
    assert by_step[(1, "reminder")]["status"] == "scheduled"

"""docs/quickstart.md runs as written: its shell blocks, in order, in an empty folder, with the installed carepath,
and what the page says they print is what they print."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "quickstart.md"
SKIP = "<!-- quickstart-test: skip"


MARK = "@@quickstart block {}@@"


def quickstart_script() -> str:
    """Every ```bash block of the page, except those marked to skip (the install), as one script; each block
    starts by printing :data:`MARK` with its number (from 1), so its output can be told apart."""
    text = DOC.read_text(encoding="utf-8")
    blocks = [m for m in re.finditer(r"^```bash\n(.*?)^```", text, re.S | re.M)]
    run = [m.group(1) for m in blocks if not _line_before(text, m.start()).startswith(SKIP)]
    return "set -euo pipefail\n" + "\n".join(f"echo '{MARK.format(n)}'\n{block}" for n, block in enumerate(run, 1))


def _outputs(printed: str) -> dict[int, str]:
    """What each block printed (standard output and error together), by block number."""
    parts = re.split(r"^@@quickstart block (\d+)@@$", printed, flags=re.M)
    return {int(n): out for n, out in zip(parts[1::2], parts[2::2])}


def _block_running(command: str) -> int:
    """The number of the (first) block whose script runs ``command``."""
    return next(n for n, block in enumerate(quickstart_script().split("echo '@@quickstart block ")[1:], 1)
                if command in block)


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
    done = subprocess.run(["bash", "-c", script + "\n"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:]
    assert "Traceback" not in done.stdout
    assert "13800001111" not in done.stdout  # contacts masked everywhere
    night = not 8 <= datetime.now(ZoneInfo("Asia/Shanghai")).hour < 21
    _check_quoted_outputs(_outputs(done.stdout), night)

    def listed(*args: str) -> list[dict]:
        out = subprocess.run([str(carepath), *args, "--json"], cwd=tmp_path / "my-hospital", env=env,
                             capture_output=True, text=True, timeout=120, check=True).stdout
        return json.loads(out)[args[0]]

    by_step = {(t["patient_id"], t["step"]): t for t in listed("touchpoints", "list")}
    assert by_step[(2, "queue-notice")]["status"] == "sent"  # urgent: sent as the check-in arrived
    assert by_step[(2, "reminder")]["status"] == "skipped"  # the evening before already passed
    assert by_step[(3, "confirmation")]["status"] == "cancelled"  # booked, then cancelled before dispatch
    for key in ((1, "confirmation"), (2, "confirmation")):
        t = by_step[key]
        assert (t["status"], t["reason"]) == ("scheduled", "deferred: quiet hours") if night else t["status"] == "sent", t
    assert by_step[(2, "nurse-call")]["status"] == "skipped"  # 李芳 is not over 75
    assert by_step[(1, "nurse-call")]["status"] == "sent"  # a staff task: opened at once, day or night
    assert [(t["patient_id"], t["kind"]) for t in listed("tasks", "list")] == [(1, "call_patient")]
    assert by_step[(1, "reminder")]["status"] == "scheduled"


def _quoted(phrase: str) -> str:
    """``phrase`` as the page quotes it (in backticks); fails when the page no longer says it."""
    text = " ".join(DOC.read_text(encoding="utf-8").split())
    assert f"`{phrase}`" in text, f"docs/quickstart.md no longer quotes `{phrase}`"
    return phrase


def _check_quoted_outputs(outputs: dict[int, str], night: bool) -> None:
    """What the page says the commands print, against what they printed (the time of day decides some)."""
    ingest, dispatch = outputs[_block_running("events ingest")], outputs[_block_running("carepath dispatch")]
    assert _quoted("sms → 139****2222: Checked in You are checked in. Your queue number is B017.") in ingest
    first, again = dispatch.split("dispatched: ", 2)[1:]
    assert _quoted("nothing due now") in again and _quoted("nothing due now") not in first
    rows = [" ".join(line.replace("│", " ").split()) for line in first.splitlines()]
    assert f"checkup nurse-call {_quoted('staff-task')} {_quoted('sent')} 1" in rows  # day or night
    confirmations = f"checkup confirmation {_quoted('sms')} sent 2"
    assert (confirmations not in rows) if night else (confirmations in rows), rows
    listed = outputs[_block_running("touchpoints list --status sent --json")]
    if night:
        assert _quoted("deferred: quiet hours") in " ".join(listed.split())

"""Event-to-send latency of an urgent step under ``carepath serve``.

Starts ``carepath serve`` on its embedded default (it starts its own local
Prefect server), with the example plugin's webhook channel configured as
``wechat`` and pointed at a loopback sink. The built-in outpatient journey's
``queue-notice`` step is urgent and triggered by ``visit.checked_in``: for
each of N patients, the script POSTs the check-in to ``/events`` and times
until the message arrives at the sink. Prints p50/p99 (and writes them as
JSON with ``--out``).

    python benchmarks/serve_latency.py --events 50 [--out benchmarks/results/serve-latency.json]

Needs the example plugin: ``pip install ./docs/examples/carepath-plugin-example``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.serve.helpers import CountingSink, ServeProcess, daytime_zone, serve_env  # noqa: E402

TOKEN = "latency-benchmark-token-0001"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def event(kind: str, source_id: str, mrn: str, **payload) -> dict:
    return {"type": kind, "source": "bench", "source_id": source_id, "patient_mrn": mrn,
            "occurred_at": datetime.now(timezone.utc).isoformat(), "payload": payload}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50, help="urgent events to time")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="carepath-latency-"))
    with CountingSink() as sink:
        config = work / "carepath.toml"
        config.write_text(f'[connectors.wechat]\ntype = "webhook"\nurl = "{sink.url}"\n'
                          f'secret = {{env = "SERVE_TEST_WEBHOOK_SECRET"}}\naddress = "phone"\n', encoding="utf-8")
        from carepath.prefect_server import free_port

        env = serve_env({"CAREPATH_HOME": str(work / "home"), "CAREPATH_CONFIG": str(config),
                         "CAREPATH_EVENTS_TOKEN": TOKEN, "CAREPATH_PREFECT_PORT": str(free_port()),
                         "PREFECT_HOME": str(work / "prefect-home"), "PREFECT_LOGGING_LEVEL": "WARNING"})
        started = time.monotonic()
        serve = ServeProcess(env, work / "serve.log").wait_ready(timeout=300)
        print(f"serve ready in {time.monotonic() - started:.0f} s (embedded Prefect server included)", file=sys.stderr)
        post = requests.Session()
        post.headers["Authorization"] = f"Bearer {TOKEN}"
        tz = daytime_zone()
        start = (datetime.now(timezone.utc) + timedelta(days=3)).isoformat()
        bookings = [event("appointment.booked", f"b{i}", f"L{i:03d}", appointment_id=f"A{i}", department="内科",
                          start=start, patient={"name": "病人", "phone": f"139{i:08d}", "tz": tz})
                    for i in range(args.events)]
        answer = post.post(f"{serve.url}/events", data="\n".join(json.dumps(b) for b in bookings), timeout=120)
        assert answer.status_code == 200, answer.text
        latencies = []
        for i in range(args.events):
            t0 = time.monotonic()
            answer = post.post(f"{serve.url}/events", json=event("visit.checked_in", f"c{i}", f"L{i:03d}",
                                                                  queue_no=i), timeout=60)
            assert answer.status_code == 200, answer.text
            deadline = t0 + 60
            while time.monotonic() < deadline:
                arrived = [sink.first_seen[k] for k, body in list(sink.bodies.items())
                           if body.get("template") == "queue_info" and body.get("patient_id") == i + 1]
                if arrived:
                    latencies.append(arrived[0] - t0)
                    break
                time.sleep(0.002)
            else:
                raise SystemExit(f"event {i}: no message at the sink after 60 s")
        code = serve.terminate()
    shutil.rmtree(work, ignore_errors=True)
    ms = [x * 1000 for x in latencies]
    figures = {"events": len(ms), "p50_ms": round(percentile(ms, 50), 1), "p99_ms": round(percentile(ms, 99), 1),
               "mean_ms": round(statistics.mean(ms), 1), "max_ms": round(max(ms), 1), "serve_exit_code": code,
               "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Event-to-send latency under ``carepath serve``: due-now and urgent messages at a steady event rate.

Starts ``carepath serve`` (its embedded Prefect server, the default 30 s dispatch interval) with
two ``outbox`` channels, then POSTs events to ``/events`` at ``rate`` per second for ``seconds``,
alternating two kinds:

- **due now**: ``appointment.booked`` for a new patient; its ``booking-confirmation`` step is
  due at once but not urgent: it goes out through the due-now wake-up (before this change, at
  the journey's next scheduled run);
- **urgent**: ``visit.checked_in`` for a booked patient; ``queue-notice`` is sent inside the
  request.

Each event carries a number that its message renders (the department, the queue number), so
the outbox row (``created_at``, written when the provider took it) is matched to the event
and its latency is ``created_at`` minus the moment the POST started.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from carepath.bench.workload import Scratch, load_average

TOKEN = "bench-latency-token-000000000001"
RETRIED: list[str] = []  # events refused at first and accepted when sent again (reported with the figures)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _daytime_zone() -> str:
    """An ``Etc/GMT±N`` zone where it is now afternoon, so quiet hours hold nothing back."""
    now = datetime.now(timezone.utc)
    for offset in range(-12, 13):
        if 11 <= (now + timedelta(hours=offset)).hour <= 16:
            return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}" if offset else "UTC"
    return "UTC"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _serve(home: Path, url: str, log: Path, rate: int) -> tuple[subprocess.Popen, str]:
    config = home / "carepath.toml"
    config.write_text('[connectors.wechat]\ntype = "outbox"\naddress = "openid"\n\n'
                      '[connectors.sms]\ntype = "outbox"\naddress = "phone"\n\n'
                      '[journeys]\nenabled = ["outpatient-visit"]\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_", "CAREPATH_"))}
    env.update({"CAREPATH_HOME": str(home / "home"), "CAREPATH_CONFIG": str(config), "CAREPATH_DATABASE_URL": url,
                "CAREPATH_EVENTS_TOKEN": TOKEN, "CAREPATH_SERVE_PORT": "0",
                # the bench is one sender, as a hospital's interface engine is: its POST /events budget (50 a
                # second per source by default) is raised above the rate, as the operator of such a feed would
                "CAREPATH_INBOUND_EVENTS_RATE": str(max(50, 2 * rate)),
                "CAREPATH_PREFECT_PORT": str(_free_port()), "PREFECT_HOME": str(home / "prefect-home"),
                "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    out = open(log, "wb")
    proc = subprocess.Popen([sys.executable, "-c", "from carepath.cli import main; main()", "serve"], env=env,
                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        found = re.search(r"web hooks app: (http://[\d.]+:\d+)", text)
        if found and "ready" in text:
            return proc, found.group(1)
        if proc.poll() is not None:
            raise RuntimeError(f"carepath serve exited with {proc.returncode}:\n{text[-2000:]}")
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("carepath serve was not ready after 600 s")


def _event(kind: str, source_id: str, mrn: str, **payload) -> dict:
    return {"type": kind, "source": "bench", "source_id": source_id, "patient_mrn": mrn,
            "occurred_at": datetime.now(timezone.utc).isoformat(), "payload": payload}


def _post_at_rate(url: str, events: list[tuple[str, dict]], rate: float, senders: int = 8) -> dict[str, float]:
    """POST ``(tag, event)`` pairs at ``rate`` per second (several connections); returns when each POST started."""
    import requests

    started: dict[str, float] = {}
    t0 = time.time() + 0.5
    errors: list[str] = []
    retried: list[str] = []

    def send(part: list[tuple[int, str, dict]]) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        for i, tag, ev in part:
            wait = t0 + i / rate - time.time()
            if wait > 0:
                time.sleep(wait)
            ev["occurred_at"] = datetime.now(timezone.utc).isoformat()
            started[tag] = time.time()
            for _ in range(3):  # a refused event is sent again, as a hospital's interface engine would
                answer = session.post(f"{url}/events", json=ev, timeout=60)
                if answer.status_code == 200:
                    break
                retried.append(f"{tag}: {answer.status_code} {answer.text[:300]}")
                time.sleep(0.2)
            else:
                errors.append(retried[-1])

    numbered = [(i, tag, ev) for i, (tag, ev) in enumerate(events)]
    threads = [threading.Thread(target=send, args=(numbered[k::senders],)) for k in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} events refused three times, e.g. {errors[0]}")
    RETRIED.extend(retried)
    return started


def _arrivals(url: str) -> dict[str, float]:
    """Outbox rows by the tag their body carries: when the provider took each message."""
    from sqlalchemy import create_engine, text

    db = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    out: dict[str, float] = {}
    with db.connect() as conn:
        for body, created in conn.execute(text("SELECT body, created_at FROM outbox_messages")):
            found = re.search(r"(D\d+)门诊|排队号(\d+)", body)
            if found is None:
                continue
            when = created if isinstance(created, datetime) else datetime.fromisoformat(created)
            when = when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when
            out.setdefault(found.group(1) or f"Q{found.group(2)}", when.timestamp())
    db.dispose()
    return out


def _figures(started: dict[str, float], arrived: dict[str, float], prefix: str) -> dict:
    tags = [t for t in started if t.startswith(prefix)]
    ms = [(arrived[t] - started[t]) * 1000 for t in tags if t in arrived]
    if not ms:
        return {"events": len(tags), "sent": 0}
    return {"events": len(tags), "sent": len(ms), "p50_ms": round(_percentile(ms, 50), 1),
            "p99_ms": round(_percentile(ms, 99), 1), "mean_ms": round(statistics.mean(ms), 1),
            "max_ms": round(max(ms), 1)}


def serve_latency(home: Path, *, rate: int = 100, seconds: int = 20, postgres: str | None = None,
                  say: Callable[[str], None] = print) -> dict:
    """Latency of due-now and urgent messages under ``carepath serve`` at ``rate`` events per second."""
    kind = "postgresql" if postgres else "sqlite"
    work = home / "latency"
    work.mkdir(exist_ok=True)
    n = max(2, rate * seconds // 2)
    tz = _daytime_zone()
    start = (datetime.now(timezone.utc) + timedelta(days=3)).isoformat()
    with Scratch(kind, work, postgres) as url:
        proc, web = _serve(work, url, work / "serve.log", rate)
        try:
            say(f"serve ready; {n} bookings then {n} check-ins interleaved, {rate} events/s")
            booked = [(f"W{i}", _event("appointment.booked", f"w{i}", f"W{i:06d}", appointment_id=f"W{i}",
                                       department="内科", start=start,
                                       patient={"name": "病人", "phone": f"137{i:08d}", "tz": tz}))
                      for i in range(n)]
            _post_at_rate(web, booked, rate)  # warm-up: patients the check-ins will name (not measured)
            events = []
            for i in range(n):
                events.append((f"D{i}", _event("appointment.booked", f"d{i}", f"D{i:06d}", appointment_id=f"D{i}",
                                               department=f"D{i}", start=start,
                                               patient={"name": "病人", "phone": f"138{i:08d}", "tz": tz})))
                events.append((f"Q{i}", _event("visit.checked_in", f"q{i}", f"W{i:06d}", queue_no=i)))
            load_before = load_average()
            started = _post_at_rate(web, events, rate)
            deadline = time.time() + 60
            arrived = _arrivals(url)
            while time.time() < deadline and sum(1 for t in started if t in arrived) < len(started):
                time.sleep(1)
                arrived = _arrivals(url)
            load_after = load_average()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
    return {"database": kind, "rate": rate, "seconds": seconds, "load": load_before, "load_after": load_after,
            "dispatch_interval_s": 30,
            "kinds": {"due now": _figures(started, arrived, "D"), "urgent": _figures(started, arrived, "Q")},
            "refused_then_accepted": len(RETRIED), "refusals": RETRIED[:5]}


if __name__ == "__main__":  # python -m carepath.bench.latency [rate] [postgres-url]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(serve_latency(Path(tmp), rate=int(sys.argv[1]) if len(sys.argv) > 1 else 100,
                                       postgres=sys.argv[2] if len(sys.argv) > 2 else None), indent=2))

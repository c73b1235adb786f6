"""A flood against the web hooks app: how much the server process's memory moves.

Starts the hostile test hospital's web hooks app (every inbound integration configured, no Prefect) as a
child process on a scratch SQLite database, then streams a body of ``--size`` bytes to one route of each kind
(``POST /events`` with a valid token, an SMS receipt hook with its token, the FHIR rest-hook with its secret,
the staff login form), once with ``Content-Length`` and once chunked, plus 10,000-deep JSON to each, and
prints the status of each answer, how much was sent before it came, and the server's resident memory before
and after (``/proc``).

    python benchmarks/inbound_flood.py --size 1GiB [--out benchmarks/results/inbound-flood.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.serve.hostile import SECRETS, GuardedApp, nested_json, stream_post  # noqa: E402

ROUTES = [
    ("POST /events", "/events", {"Authorization": f"Bearer {SECRETS['T_HIS_EAST_TOKEN']}"}, "application/json"),
    ("SMS receipt hook", f"/hooks/aliyun-sms/sms/{SECRETS['T_SMS_HOOK']}/receipts", {}, "application/json"),
    ("FHIR rest-hook", "/webhooks/fhir/fhir", {"X-Carepath-Token": SECRETS["T_FHIR_SECRET"]}, "application/fhir+json"),
    ("staff login form", "/staff/login", {}, "application/x-www-form-urlencoded"),
]


def _size(text: str) -> int:
    units = {"kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3}
    lower = text.lower()
    for unit, factor in units.items():
        if lower.endswith(unit):
            return int(float(lower[: -len(unit)]) * factor)
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1GiB", help="bytes per post (1GiB, 256MiB, ...)")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args()
    total = _size(args.size)
    folder = Path(tempfile.mkdtemp(prefix="carepath-flood-"))
    rows = []
    try:
        with GuardedApp(folder, f"sqlite:///{folder / 'carepath.db'}") as app:
            for _ in range(3):
                requests.get(f"{app.url}/healthz", timeout=30)
            start_rss = app.rss()
            for name, path, headers, ctype in ROUTES:
                for chunked in (False, True):
                    began = time.monotonic()
                    status, sent = stream_post(app.url, path, total, chunked=chunked, headers=tuple(headers.items()),
                                               content_type=ctype, timeout=600)
                    rows.append({"route": name, "framing": "chunked" if chunked else "content-length",
                                 "status": status, "sent_before_answer": sent, "seconds": round(time.monotonic() - began, 2),
                                 "rss_mib": round(app.rss() / 2**20, 1)})
                    print(f"{name:18} {rows[-1]['framing']:14} -> {status}  sent {sent / 2**20:8.1f} MiB "
                          f"before the answer  server {rows[-1]['rss_mib']:.1f} MiB", flush=True)
                deep = requests.post(app.url + path, data=nested_json(), headers=headers, timeout=60)
                print(f"{name:18} 10,000-deep JSON -> {deep.status_code}", flush=True)
                rows.append({"route": name, "framing": "10000-deep JSON", "status": deep.status_code})
            end_rss = app.rss()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    summary = {"size_bytes": total, "server_rss_before_mib": round(start_rss / 2**20, 1),
               "server_rss_after_mib": round(end_rss / 2**20, 1), "requests": rows}
    print(f"server memory: {summary['server_rss_before_mib']} MiB before, {summary['server_rss_after_mib']} MiB after")
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

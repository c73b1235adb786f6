"""A loopback home device: a blood-pressure cuff or glucose meter whose cloud posts signed readings.

Tests use :class:`HomeDevice` (``measure(...)`` posts one signed reading to carepath's hook and returns the
response). ``carepath emulator device`` serves a small page at ``/`` whose form takes a reading and posts it,
signed with ``$DEVICE_SECRET``, to ``$PUSH_URL`` (e.g. ``http://127.0.0.1:8080/hooks/device/cuff``).
"""

from __future__ import annotations

import itertools
import json
import os
from datetime import datetime, timezone
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import requests

from carepath.connectors.device.signing import signed_headers
from carepath.plugins._loopback import serve_in_foreground


class HomeDevice:
    """One device (``device_id``) of a cloud that signs with ``secret`` and posts to ``url``."""

    def __init__(self, url: str, secret: str, device_id: str = "cuff-001") -> None:
        self.url, self.secret, self.device_id = url, secret, device_id
        self._ids = itertools.count(1)

    def body(self, mrn: str, measurements: list[dict[str, Any]], *, measured_at: datetime | None = None,
             reading_id: str | None = None) -> bytes:
        at = measured_at or datetime.now(timezone.utc)
        return json.dumps({"reading_id": reading_id or f"{self.device_id}-{next(self._ids)}", "patient_mrn": mrn,
                           "device_id": self.device_id, "measured_at": at.isoformat(),
                           "measurements": measurements}, ensure_ascii=False).encode()

    def post(self, body: bytes, *, secret: str | None = None) -> requests.Response:
        """POST ``body`` signed with the device's secret (or another one, to play a forger)."""
        return requests.post(self.url, data=body, headers=signed_headers(secret or self.secret, body), timeout=10)

    def blood_pressure(self, mrn: str, systolic: float, diastolic: float, *, measured_at: datetime | None = None,
                       **kw: Any) -> requests.Response:
        return self.post(self.body(mrn, [{"kind": "systolic_bp", "value": systolic, "unit": "mmHg"},
                                         {"kind": "diastolic_bp", "value": diastolic, "unit": "mmHg"}],
                                   measured_at=measured_at), **kw)

    def glucose(self, mrn: str, value: float, unit: str = "mmol/L", *, measured_at: datetime | None = None,
                **kw: Any) -> requests.Response:
        return self.post(self.body(mrn, [{"kind": "glucose", "value": value, "unit": unit}],
                                   measured_at=measured_at), **kw)


_PAGE = """<!doctype html><meta charset="utf-8"><title>home device emulator</title><h1>home device</h1>
<form method="post"><label>MRN <input name="mrn"></label> <label>systolic <input name="systolic"></label>
<label>diastolic <input name="diastolic"></label> <label>glucose <input name="glucose"></label>
<button>measure</button></form><p>{result}</p>"""


def serve(host: str = "127.0.0.1", port: int = 0) -> None:
    """``carepath emulator device``: a page whose readings are posted to ``$PUSH_URL`` signed with ``$DEVICE_SECRET``."""
    device = HomeDevice(os.environ.get("PUSH_URL", ""), os.environ.get("DEVICE_SECRET", ""))

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, text: str) -> None:
            data = _PAGE.format(result=escape(text)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            self._reply("")

        def do_POST(self) -> None:  # noqa: N802
            length = min(int(self.headers.get("Content-Length") or 0), 4096)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            try:
                if form.get("glucose"):
                    answer = device.glucose(form.get("mrn", ""), float(form["glucose"]))
                else:
                    answer = device.blood_pressure(form.get("mrn", ""), float(form.get("systolic", 0)),
                                                   float(form.get("diastolic", 0)))
                self._reply(f"posted: HTTP {answer.status_code} {answer.text[:200]}")
            except (ValueError, requests.RequestException) as exc:
                self._reply(f"not posted: {exc}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    serve_in_foreground(server, f"device emulator at http://{host}:{server.server_address[1]}/; posting to "
                                f"{os.environ.get('PUSH_URL', '(set PUSH_URL and DEVICE_SECRET)')}")

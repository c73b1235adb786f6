"""Loopback stand-ins for wjx and Tencent Wenjuan: a survey page that pushes answers the provider's way.

Tests use :class:`WjxEmulator` / :class:`TencentEmulator` to build and POST pushes
(signed like wjx, or to a path token like Tencent). ``carepath emulator wjx``
and ``carepath emulator tencent-wenjuan`` serve a page at
``/vm/<survey id>?<param>=<token>`` whose form is pushed to ``$PUSH_URL``
(wjx also signs with ``$PUSH_SECRET``), so an integrator can try the whole
loop on one machine.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Mapping
from urllib.parse import parse_qs, urlsplit

import requests

from carepath.connectors.surveys.wjx import wjx_sign
from carepath.plugins._loopback import serve_in_foreground


class WjxEmulator:
    """Builds wjx data pushes: ``push(url, activity, answers, token)``."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self._joins = itertools.count(1001)

    def payload(self, activity: str, answers: Mapping[str, Any], token: str, *, joinid: int | None = None,
                param: str = "sojumpparm") -> dict[str, Any]:
        join = joinid if joinid is not None else next(self._joins)
        return {"activity": activity, "name": "满意度调查", "timetaken": "35", "joinid": join, "index": join,
                "submittime": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"), "totalvalue": 0,
                param: token, **{q: str(v) for q, v in answers.items()},
                "sign": wjx_sign(activity, str(join), self.secret)}

    def push(self, url: str, payload: Mapping[str, Any]) -> requests.Response:
        return requests.post(url, data=json.dumps(payload, ensure_ascii=False).encode(), timeout=10,
                             headers={"Content-Type": "application/json"})


class TencentEmulator:
    """Builds Tencent Wenjuan webhook pushes."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def payload(self, survey_id: str, answers: Mapping[str, Any], token: str, *,
                action: str = "answer.create", answer_id: str | None = None) -> dict[str, Any]:
        number = next(self._ids)
        items = [{"question_id": q, "options": [{"index": int(i), "checked": True} for i in v]} if isinstance(v, tuple)
                 else {"question_id": q, "value": v} for q, v in answers.items()]
        now = int(time.time())
        return {"id": f"evt-{number}", "object": "Answer", "action": action, "created_at": now,
                "payload": {"survey_id": survey_id, "answer_id": answer_id or f"ans-{number}", "openid": "",
                            "started_at": now - 60, "ended_at": now,
                            "third_party_user": {"respondent_id": token, "openid": ""}, "answer": items}}

    def push(self, url: str, payload: Mapping[str, Any]) -> requests.Response:
        return requests.post(url, json=payload, timeout=10)


_PAGE = """<!doctype html><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{provider} emulator</title><h1>{provider} survey {survey}</h1>
<form method="post"><p>q1 (0-10) <input name="q1"></p><p>q2 (1-5) <input name="q2"></p>
<input type="hidden" name="token" value="{token}"><button>submit</button></form>"""


def _serve(provider: str, host: str, port: int, push: Any) -> None:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, html: str) -> None:
            data = html.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            token = next(iter(query.values()), "")
            self._reply(200, _PAGE.format(provider=provider, survey=url.path.rsplit("/", 1)[-1], token=token))

        def do_POST(self) -> None:
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()}
            survey = urlsplit(self.path).path.rsplit("/", 1)[-1]
            answer = push(survey, {k: v for k, v in form.items() if k != "token"}, form.get("token", ""))
            self._reply(200, f"<p>pushed: HTTP {answer.status_code} {answer.text[:200]}</p>")

    server = ThreadingHTTPServer((host, port), Handler)
    serve_in_foreground(server, f"{provider} emulator at http://{host}:{server.server_address[1]}/vm/<survey id>"
                                f"?<param>=<token>; pushing to {os.environ.get('PUSH_URL', '(set PUSH_URL)')}")


def serve_wjx(host: str = "127.0.0.1", port: int = 0) -> None:
    """``carepath emulator wjx``: pushes to ``$PUSH_URL``, signed with ``$PUSH_SECRET``."""
    emulator = WjxEmulator(os.environ.get("PUSH_SECRET", ""))
    _serve("wjx", host, port, lambda survey, answers, token: emulator.push(
        os.environ["PUSH_URL"], emulator.payload(survey, answers, token)))


def serve_tencent(host: str = "127.0.0.1", port: int = 0) -> None:
    """``carepath emulator tencent-wenjuan``: pushes to ``$PUSH_URL`` (which ends in the path token)."""
    emulator = TencentEmulator()
    _serve("tencent-wenjuan", host, port, lambda survey, answers, token: emulator.push(
        os.environ["PUSH_URL"], emulator.payload(survey, answers, token)))

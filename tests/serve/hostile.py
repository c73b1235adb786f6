"""A hospital with one of every inbound integration, every route it answers, and hostile bodies to send them.

Used by the hostile-input tests (in-process uvicorn) and by ``tests/serve/guarded_app.py`` (the same app in
a child process, whose memory the flood test measures).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from carepath.connectors.surveys.wjx import wjx_sign
from carepath.connectors.wechat import crypto

SECRETS = {
    "T_ALIYUN_SECRET": "aliyun-secret-for-hostile-tests",
    "T_TENCENT_SECRET": "tencent-secret-for-hostile-tests",
    "T_SMS_HOOK": "sms-hook-token-0123456789abcdef",
    "T_WECHAT_SECRET": "wechat-app-secret-0001",
    "T_WECHAT_TOKEN": "wechattoken01",
    "T_WECHAT_AES": base64.b64encode(bytes(range(32))).decode().rstrip("="),
    "T_WJX_SECRET": "wjx-push-secret-0001",
    "T_WENJUAN_PATH": "wenjuan-path-token-0123456789",
    "T_FHIR_SECRET": "fhir-webhook-secret-0001",
    "T_HIS_EAST_TOKEN": "his-east-events-token-7Hq2mZ9xKp4Lw",
    "T_BRIDGE_TOKEN": "bridge-events-token-Vn3sR8tYc1Jd6",
    "STAFF_WANG_TOKEN": "staff-wang-login-token-0001",
}
APPID = "wxa1b2c3d4e5f60001"
DEFAULT_TOKEN = "default-events-token-Qw8eRt5yUi2oP"  # CAREPATH_EVENTS_TOKEN: the system "default"

CONFIG = """\
[connectors.sms]
type = "aliyun-sms"
endpoint = "http://127.0.0.1:9"
sign_name = "仁济医院"
access_key_id = "LTAI-hostile"
access_key_secret = {env = "T_ALIYUN_SECRET"}
callback_token = {env = "T_SMS_HOOK"}

[connectors.tsms]
type = "tencent-sms"
endpoint = "http://127.0.0.1:9"
sign_name = "仁济医院"
secret_id = "AKID-hostile"
secret_key = {env = "T_TENCENT_SECRET"}
sms_sdk_app_id = "1400000001"
callback_token = {env = "T_SMS_HOOK"}

[connectors.wechat]
type = "wechat"
appid = "%(appid)s"
secret = {env = "T_WECHAT_SECRET"}
token = {env = "T_WECHAT_TOKEN"}
encoding_aes_key = {env = "T_WECHAT_AES"}
api_base = "http://127.0.0.1:9"

[connectors.wjx]
type = "wjx"
push_secret = {env = "T_WJX_SECRET"}
surveys = {outpatient-satisfaction = {id = "1001", url = "https://www.wjx.cn/vm/abc.aspx", questions = {q1 = "nps"}}}

[connectors.wenjuan]
type = "tencent-wenjuan"
path_token = {env = "T_WENJUAN_PATH"}
surveys = {outpatient-satisfaction = {id = "svy-77", url = "https://wj.qq.com/s2/77/", questions = {q1 = "nps"}}}

[connectors.fhir]
type = "fhir"
base_url = "http://127.0.0.1:9/fhir"
webhook_secret = {env = "T_FHIR_SECRET"}

[journeys]
enabled = ["outpatient-visit"]

[staff.wang]
team = "nursing"
role = "nurse"
token = {env = "STAFF_WANG_TOKEN"}

[events_api.his-east]
token = {env = "T_HIS_EAST_TOKEN"}
sources = ["his-east"]

[events_api.bridge]
token = {env = "T_BRIDGE_TOKEN"}
""" % {"appid": APPID}


def hostile_engine(folder: Path, monkeypatch, database_url: str, settings):  # noqa: ANN001, ANN201
    """An engine for the hostile hospital (its secrets set in the environment through ``monkeypatch``)."""
    from carepath.config import load_config
    from carepath.definition.registry import enabled_journeys
    from carepath.engine import Engine

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    config = load_config(write_hospital(folder))
    engine = Engine(database_url, settings=settings, config=config, journeys=enabled_journeys(config).values())
    _staff_session(engine, "wang", STAFF_SESSION)
    return engine


#: a live staff page session of member wang (a login gives a random one; routes() needs it known in advance)
STAFF_SESSION = "staff-wang-session-token-for-hostile-tests-0001"


def _staff_session(engine, member: str, token: str) -> None:  # noqa: ANN001
    import hashlib
    from datetime import timedelta

    from sqlalchemy import insert

    from carepath.store.staff_schema import StaffSession

    now = engine.clock.now()
    with engine.db.begin() as conn:
        conn.execute(insert(StaffSession).values(member=member, token_hash=hashlib.sha256(token.encode()).hexdigest(),
                                                 source="test", issued_at=now, expires_at=now + timedelta(days=1)))


def applied_state(engine) -> dict:  # noqa: ANN001
    """Every table but what is kept for operators about refused input (refused events, rejected bodies,
    alerts, refused staff logins and their audit entries): what a refused request must not change."""
    from tests.engine import helpers as h

    snap = h.snapshot(engine, exclude=("operator_alerts", "staff_login_failures"))
    snap["events"] = [row for row in snap["events"] if row[9] not in ("refused",)]
    snap["audit_log"] = [row for row in snap["audit_log"] if not str(row[3]).startswith("staff.login")]
    return snap


def write_hospital(folder: Path) -> Path:
    """carepath.toml of the hostile hospital in ``folder``; returns its path."""
    path = folder / "carepath.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@dataclass(frozen=True)
class Route:
    """One way in: its method and path, and the headers and query that authenticate it (if any)."""

    name: str
    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    authentic: bool = True

    def url(self, base: str) -> str:
        return base + self.path


def wechat_query(body: bytes | None = None) -> str:
    """A fresh, correctly signed safe-mode query for ``body`` (an ``Encrypt`` envelope)."""
    stamp, nonce = str(int(time.time())), "n0nce"
    token = SECRETS["T_WECHAT_TOKEN"]
    query = {"signature": crypto.signature(token, stamp, nonce), "timestamp": stamp, "nonce": nonce}
    if body is not None:
        encrypted = str(crypto.parse_xml(body).get("Encrypt", "")) if body.startswith(b"<xml>") else ""
        query.update(encrypt_type="aes", msg_signature=crypto.signature(token, stamp, nonce, encrypted))
    return "&".join(f"{k}={v}" for k, v in query.items())


def wechat_envelope(inner_xml: str) -> bytes:
    """A safe-mode body carrying ``inner_xml`` (which may be anything) encrypted for the hospital's account."""
    key = crypto.aes_key(SECRETS["T_WECHAT_AES"])
    return crypto.to_xml({"ToUserName": "gh_1", "Encrypt": crypto.encrypt(key, inner_xml, APPID)}).encode()


def wjx_body(data: dict) -> bytes:
    """A wjx push with a correct ``sign`` over whatever ``data`` holds."""
    index = str(data.get("index", data.get("joinid", "")))
    return json.dumps({**data, "sign": wjx_sign(str(data.get("activity", "")), index, SECRETS["T_WJX_SECRET"])},
                      ensure_ascii=False).encode()


def routes() -> list[Route]:
    """Every route of the web hooks app, authenticated where it can be, and a forged twin of each that can."""
    sms, path = SECRETS["T_SMS_HOOK"], SECRETS["T_WENJUAN_PATH"]
    fhir = (("X-Carepath-Token", SECRETS["T_FHIR_SECRET"]),)
    bearer = (("Authorization", f"Bearer {SECRETS['T_HIS_EAST_TOKEN']}"),)
    found = [
        Route("events", "POST", "/events", bearer),
        Route("aliyun receipts", "POST", f"/hooks/aliyun-sms/sms/{sms}/receipts"),
        Route("aliyun replies", "POST", f"/hooks/aliyun-sms/sms/{sms}/replies"),
        Route("tencent receipts", "POST", f"/hooks/tencent-sms/tsms/{sms}/receipts"),
        Route("tencent replies", "POST", f"/hooks/tencent-sms/tsms/{sms}/replies"),
        Route("wechat", "POST", "/hooks/wechat/wechat?" + wechat_query(b"")),
        Route("wjx", "POST", "/hooks/wjx/wjx"),
        Route("tencent wenjuan", "POST", f"/hooks/tencent-wenjuan/wenjuan/{path}"),
        Route("fhir rest-hook", "POST", "/webhooks/fhir/fhir", fhir),
        Route("fhir rest-hook PUT", "PUT", "/webhooks/fhir/fhir/Patient/p1", fhir),
        Route("survey page", "POST", "/s/not-a-real-token"),
        Route("staff login", "POST", "/staff/login"),
        Route("staff note", "POST", "/staff/tasks/1/note", (("Cookie", f"carepath_staff={STAFF_SESSION}"),)),
        Route("healthz", "GET", "/healthz"),
        Route("metrics", "GET", "/metrics"),
        Route("unknown", "POST", "/no/such/route"),
    ]
    forged = [
        Route("events, wrong token", "POST", "/events", (("Authorization", "Bearer wrong-token-wrong-token-1"),),
              authentic=False),
        Route("aliyun, wrong path token", "POST", "/hooks/aliyun-sms/sms/wrong-token-0000000000/receipts",
              authentic=False),
        Route("wechat, no signature", "POST", "/hooks/wechat/wechat", authentic=False),
        Route("wenjuan, wrong path token", "POST", "/hooks/tencent-wenjuan/wenjuan/wrong-path-token-000000",
              authentic=False),
        Route("fhir, no secret", "POST", "/webhooks/fhir/fhir", authentic=False),
    ]
    return found + forged


def nested_json(depth: int = 10_000) -> bytes:
    return b"[" * depth + b"]" * depth


# -- streaming a large body over a raw socket ----------------------------------------------------------------


def stream_post(base: str, path: str, total: int, *, chunked: bool, headers: tuple[tuple[str, str], ...] = (),
                piece: int = 256 * 1024, timeout: float = 60.0,
                content_type: str = "application/json") -> tuple[int | None, int]:
    """POST ``total`` bytes to ``path``, stopping as soon as the server answers; ``(status, bytes sent)``.

    A server that reads everything first answers only after the whole body arrived, so ``bytes sent``
    shows whether it answered early. ``status`` is None when it closed the connection without an answer.
    """
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Type: {content_type}"]
    head += [f"{k}: {v}" for k, v in headers]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    block, sent, answer, pending = b"[" * piece, 0, b"", b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not pending:
                if sent >= total:
                    pending = b"0\r\n\r\n" if chunked else b""
                    if not pending:
                        break
                else:
                    data = block[: min(piece, total - sent)]
                    sent += len(data)
                    pending = b"%x\r\n%s\r\n" % (len(data), data) if chunked else data
            readable, writable, _ = select.select([sock], [sock], [], max(0.0, deadline - time.monotonic()))
            if readable:
                break
            if writable:
                try:
                    pending = pending[sock.send(pending):]
                except (BrokenPipeError, ConnectionResetError):
                    break
                if sent >= total and not pending and not chunked:
                    break
        sock.settimeout(max(1.0, deadline - time.monotonic()))
        while b"\r\n" not in answer:
            try:
                more = sock.recv(65536)
            except OSError:
                break
            if not more:
                break
            answer += more
    finally:
        sock.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None
    return status, sent - len(pending) if not chunked else sent


# -- the app in a child process --------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class GuardedApp:
    """``python -m tests.serve.guarded_app`` in a child process: the hostile hospital's web hooks app."""

    def __init__(self, folder: Path, database_url: str, **env: str) -> None:
        config = write_hospital(folder)
        environ = {**os.environ, **SECRETS, "CAREPATH_CONFIG": str(config), "CAREPATH_HOME": str(folder / "home"),
                   "CAREPATH_DATABASE_URL": database_url, "CAREPATH_EVENTS_TOKEN": DEFAULT_TOKEN, **env}
        environ.pop("CAREPATH_SECRET_KEY", None)
        root = Path(__file__).resolve().parents[2]
        self.log = open(folder / "guarded-app.log", "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "tests.serve.guarded_app"], cwd=root, env=environ,
                                        stdout=subprocess.PIPE, stderr=self.log)
        line = self.process.stdout.readline().decode().strip() if self.process.stdout else ""
        if not line.startswith("http://"):
            self.stop()
            raise AssertionError(f"the guarded app did not start: {line!r}\n"
                                 f"{(folder / 'guarded-app.log').read_text(errors='replace')}")
        self.url = line

    def rss(self) -> int:
        return rss_bytes(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()

    def __enter__(self) -> "GuardedApp":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]

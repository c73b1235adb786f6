"""Loopback pieces for the serve tests and the latency benchmark: a counting message sink and serve processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from carepath_plugin_example import WebhookEmulator

SINK_SECRET = "serve-test-webhook-secret-01"
SERVE = [sys.executable, "-c", "from carepath.cli import main; main()", "serve"]
# How long a wait on work that goes through the Prefect server may take. That server (SQLite, busy_timeout 60 s)
# was seen not answering any request for ~60 s at a time while several serve processes ran flows every second on a
# loaded two-core machine; every run then starts a minute late, and the work after it with it.
STALL = 180.0
OWNER = "CAREPATH_TESTS_OWNER_PID"  # in the environment of every server the tests start: the pytest process's id


class CountingSink(WebhookEmulator):
    """The example plugin's webhook receiver (signatures checked), counting every accepted POST per
    ``Idempotency-Key`` so a resend shows, with the time each key first arrived."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(SINK_SECRET)
        self.delay = delay
        self.requests: Counter = Counter()
        self.first_seen: dict[str, float] = {}
        self.bodies: dict[str, dict] = {}

    def _accept(self, key: str, body: bytes) -> tuple[int, dict]:
        with self._lock:
            self.requests[key] += 1
            self.first_seen.setdefault(key, time.monotonic())
            self.bodies.setdefault(key, json.loads(body))
        if self.delay:  # the request is in flight (counted) while the provider takes its time
            time.sleep(self.delay)
        return super()._accept(key, body)

    def keys(self) -> set[str]:
        with self._lock:
            return set(self.requests)


def webhook_config(path: Path, url: str) -> Path:
    """A carepath.toml whose only channel is the example plugin's webhook, pointed at ``url``, running the stock
    outpatient journey and the example plugin's follow-up."""
    path.write_text(f'[connectors.webhook]\ntype = "webhook"\nurl = "{url}"\n'
                    f'secret = {{env = "SERVE_TEST_WEBHOOK_SECRET"}}\ntimeout = 5\naddress = "phone"\n'
                    f'\n[journeys]\nenabled = ["outpatient-visit", "webhook-followup"]\n',
                    encoding="utf-8")
    return path


def daytime_zone(now: datetime | None = None) -> str:
    """An ``Etc/GMT±N`` zone where it is now between 11:00 and 17:00, so no quiet hours get in the way."""
    now = now or datetime.now(timezone.utc)
    for offset in range(-12, 13):
        if 11 <= (now + timedelta(hours=offset)).hour <= 16:
            return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}" if offset else "UTC"
    raise AssertionError("unreachable: some offset is always in the afternoon")


def serve_env(base: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_", "CAREPATH_"))}
    env.update({"SERVE_TEST_WEBHOOK_SECRET": SINK_SECRET, "CAREPATH_SERVE_PORT": "0", "CAREPATH_POLL_SECONDS": "0.5",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "INFO"})
    env.update(base)
    env.update(extra)
    return env


class ServeProcess:
    """``carepath serve`` as a child process; ``url`` is its web hooks app once it is ready.

    Every one started is remembered: :func:`stop_leftovers` (run after each serve test) kills those a failed
    test left running. Left running, a serve process goes on dispatching in the test database under the same
    instance name (so the same deployments), claiming and failing the next tests' touchpoints and holding the
    locks their clean-database ``TRUNCATE`` needs."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self.env = env
        self._log = open(log, "wb")
        self.process = subprocess.Popen(SERVE, env={**env, OWNER: str(os.getpid())}, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        self.url = ""
        _started.append(self)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def why(self) -> str:
        """For a wait that timed out: every thread's stack (serve prints them on SIGUSR1), the end of the log,
        and on PostgreSQL what each connection to the database is doing (a lock wait shows there)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
        text = "\nthe end of its log:\n" + "\n".join(self.output().splitlines()[-150:])
        url = self.env.get("CAREPATH_DATABASE_URL", "")
        if url.startswith("postgresql"):
            text += "\nits database's connections:\n" + "\n".join(map(str, _pg_activity(url)))
        return text

    def wait_ready(self, timeout: float = 90.0) -> "ServeProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            found = re.search(r"web hooks app: (http://[\d.]+:\d+)", out)
            if found and "ready" in out:
                self.url = found.group(1)
                return self
            if self.process.poll() is not None:
                raise AssertionError(f"carepath serve exited with {self.process.returncode}:\n{out}")
            time.sleep(0.2)
        raise AssertionError(f"carepath serve not ready after {timeout:.0f} s:\n{self.output()}")

    def terminate(self, timeout: float = STALL) -> int:
        """SIGTERM and its exit code; one that has not stopped ``timeout`` seconds later is killed, and that fails."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"carepath serve had not stopped {timeout:.0f} s after SIGTERM (killed):\n"
                                 f"{self.output()}") from None
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._log.close()


_started: list[ServeProcess] = []


def stop_leftovers() -> list[int]:
    """Kill every serve process started so far that is still running; their process ids."""
    left = [serve for serve in _started if serve.process.poll() is None]
    for serve in left:
        serve.kill()
    _started.clear()
    return [serve.process.pid for serve in left]


def _owner(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            items = fh.read().split(b"\0")
    except OSError:  # gone, or not ours to read
        return None
    mark = OWNER.encode() + b"="
    return next((int(item[len(mark):]) for item in items if item.startswith(mark) and item[len(mark):].isdigit()),
                None)


def stop_orphans() -> list[int]:
    """Kill the servers (Prefect, ``carepath serve``) that an earlier test run started and could not stop: its
    pytest process is gone (a worker killed, a timeout's hard exit), so no ``pytest_unconfigure`` ran. Only
    processes marked with a dead owner are touched: a test run going on beside this one keeps its servers."""
    if not os.path.isdir("/proc"):
        return []
    killed = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        owner = _owner(pid)
        if owner is not None and owner != os.getpid() and not os.path.exists(f"/proc/{owner}"):
            try:
                os.kill(int(pid), signal.SIGKILL)
                killed.append(int(pid))
            except ProcessLookupError:
                pass
    return killed


def _pg_activity(url: str) -> list[tuple]:
    """Every other session on ``url``'s database: state, what it waits for, how long its transaction has run, query."""
    from sqlalchemy import text

    from carepath.store import open_database

    try:
        db = open_database(url)
        try:
            with db.connect() as conn:
                return list(conn.execute(text(
                    "SELECT pid, application_name, state, wait_event_type, wait_event, now() - xact_start,"
                    " left(query, 160) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()")))
        finally:
            db.dispose()
    except Exception as exc:  # a diagnosis must not hide the failure it explains
        return [(f"could not read pg_stat_activity: {exc}",)]


def wait_for(condition, timeout: float, what: str, every: float = 0.3, about: "ServeProcess | None" = None):
    """Poll ``condition()`` until it is truthy; fail naming ``what`` after ``timeout`` seconds, with the end of
    ``about``'s log (the serve process whose work was awaited), so a failure on CI says what serve was doing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}" + ("" if about is None else about.why()))


def prefect_read(api_url: str, read):
    """Run ``await read(post)`` against the Prefect server at ``api_url``; ``post(path, body)`` returns the JSON answer.

    Plain filter bodies: this Prefect client's filter models send nulls the server's validation rejects."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def run():
        async with get_client() as client:
            async def post(path: str, body: dict):
                return (await client._client.post(path, json=body)).json()
            return await read(post)

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        return asyncio.run(run())


def serve_instance(serve: "ServeProcess") -> str:
    """The carepath instance name a running serve printed ("… this is instance X)"): its runs carry ``instance:X``."""
    return re.search(r"this is instance (\S+)\)", serve.output()).group(1)

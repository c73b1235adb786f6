"""A local Prefect server (``prefect server start``) as a child process: the embedded default of ``carepath serve``.

Its UI and API listen on 127.0.0.1 only; its state lives under ``home`` (a SQLite database) or in
the database ``env`` names (see :mod:`carepath.prefect_database`). Tests start one the same way, on a free port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class PrefectServerError(RuntimeError):
    """The Prefect server did not come up; the message ends with the tail of its log."""


class PrefectServer:
    """``with PrefectServer(home, port) as server: server.api_url``; stopped (its whole process group) on exit."""

    def __init__(self, home: Path, port: int = 4200, host: str = "127.0.0.1", env: dict[str, str] | None = None) -> None:
        self.home = Path(home)
        self.host = host
        self.port = port or free_port(host)
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen | None = None
        self.log_path = self.home / "server.log"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.ui_url}/api"

    def start(self, timeout: float = 120.0) -> "PrefectServer":
        """Launch it and wait until its API answers."""
        self.launch()
        return self.wait_healthy(timeout)

    def launch(self) -> "PrefectServer":
        """Start the process without waiting (it takes 15-60 s to answer: migrations, imports)."""
        self.home.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        command = [sys.executable, "-m", "prefect", "server", "start", "--host", self.host, "--port", str(self.port)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def environment(self) -> dict[str, str]:
        """The server process's environment: this one's, without the client's settings (``PREFECT_API_URL``, keys;
        the older name of the server's database setting, ``PREFECT_API_DATABASE_…``, is kept), plus its own."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("PREFECT_API_") or k.startswith("PREFECT_API_DATABASE_")}
        env.update({"PREFECT_HOME": str(self.home.resolve()), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "PREFECT_UI_API_URL": self.api_url, "PREFECT_LOGGING_LEVEL": "WARNING"})
        env.update(self.extra_env)
        return env

    def wait_healthy(self, timeout: float = 120.0) -> "PrefectServer":
        """Wait until the API answers; the error carries the end of the server's log."""
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrefectServerError(f"prefect server exited with code {self.process.returncode}\n{self.log_tail()}")
            if self.healthy():
                return self
            time.sleep(0.5)
        self.stop()
        raise PrefectServerError(f"prefect server not healthy after {timeout:.0f} s\n{self.log_tail()}")

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        except ProcessLookupError:
            pass

    def __enter__(self) -> "PrefectServer":
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""A throwaway PostgreSQL cluster on a free port, for tests that restart the server under load.

It needs the server binaries (``initdb``, ``pg_ctl`` under /usr/lib/postgresql/*/bin or on
PATH). PostgreSQL refuses to run as root, so as root the cluster runs as the ``postgres``
user through ``runuser``. :func:`start_cluster` skips the calling test, with the reason, when
none of that is possible here.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """``url`` reaches its ``postgres`` database; ``restart()`` drops every connection (``AdminShutdown``)."""

    def __init__(self, bindir: Path, root: Path, run_as: str | None) -> None:
        self.bindir, self.root, self.run_as = bindir, root, run_as
        self.data, self.port = root / "data", _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / tool), *args]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    def pg_ctl(self, action: str, *extra: str) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", opts, "-w",
                         *extra, action)
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl {action} failed: {done.stderr or done.stdout}")

    def restart(self) -> None:
        """A fast restart: active sessions are terminated, as in a failover or an upgrade."""
        self.pg_ctl("restart", "-m", "fast")


def start_cluster() -> Cluster:
    """Create and start a cluster in a fresh temporary directory (skips the test when impossible)."""
    bindir = _bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run a throwaway cluster as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser to run a throwaway cluster as 'postgres'")
        run_as = "postgres"
    root = Path(tempfile.mkdtemp(prefix="carepath-pg-"))
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    cluster = Cluster(bindir, root, run_as)
    made = cluster._run("initdb", "-D", str(cluster.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                        "--no-sync", timeout=120)
    if made.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed here: {made.stderr.strip()[:300]}")
    cluster.pg_ctl("start")
    return cluster


def stop_cluster(cluster: Cluster) -> None:
    try:
        cluster.pg_ctl("stop", "-m", "immediate")
    finally:
        shutil.rmtree(cluster.root, ignore_errors=True)

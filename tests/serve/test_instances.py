"""Two carepath installations on one machine (issue 16, point 5): their own deployments, their own Prefect
server or a clear word about whose they join, and a /healthz that says why nothing is scheduled."""

from __future__ import annotations

import re

import httpx
import pytest

from carepath.instance import instance_name
from carepath.prefect_server import free_port
from tests.serve.helpers import CountingSink, ServeProcess, serve_env, wait_for, webhook_config


def test_the_instance_comes_from_the_database_or_its_setting() -> None:
    one = instance_name(None, "sqlite:////srv/hospital-a/.carepath/carepath.db")
    assert one == instance_name(None, "sqlite:////srv/hospital-a/.carepath/carepath.db")
    assert one.startswith("hospital-a-") and instance_name(None, "sqlite:////srv/hospital-b/.carepath/carepath.db"
                                                           ).startswith("hospital-b-")
    pg = instance_name(None, "postgresql://carepath:secret@db.example:5432/care_prod")
    assert pg.startswith("care_prod-") and "secret" not in pg
    assert pg == instance_name(None, "postgresql://carepath:rotated@db.example:5432/care_prod")  # same database
    assert instance_name("hospital-a", "sqlite:////x.db") == "hospital-a"


def _instance(serve: ServeProcess) -> str:
    return re.search(r"deployments of instance (\S+) \(carepath-\1\)", serve.output()).group(1)


def _health(serve: ServeProcess) -> tuple[int, dict]:
    answer = httpx.get(f"{serve.url}/healthz", timeout=10)
    return answer.status_code, answer.json()


@pytest.mark.serial  # three serve processes and two Prefect servers, on their schedules
def test_two_instances_keep_their_schedules_apart(tmp_path, monkeypatch):
    port = free_port()
    started: list[ServeProcess] = []
    with CountingSink() as sink:
        def serve(name: str, **extra: str) -> ServeProcess:
            config = webhook_config(tmp_path / f"{name}.toml", sink.url)
            env = serve_env({"CAREPATH_DATABASE_URL": f"sqlite:///{tmp_path / name}.db",
                             "CAREPATH_HOME": str(tmp_path / name), "CAREPATH_CONFIG": str(config),
                             "PREFECT_HOME": str(tmp_path / f"{name}-prefect"), "CAREPATH_PREFECT_PORT": str(port),
                             "CAREPATH_POLL_SECONDS": "1"}, **extra)
            process = ServeProcess(env, tmp_path / f"{name}.log")
            started.append(process)
            return process.wait_ready(timeout=300)

        try:
            first = serve("first")  # the machine's first: a local Prefect server on the chosen port
            assert f"starting a local Prefect server on 127.0.0.1:{port}" in first.output()
            one = _instance(first)

            second = serve("second")  # the same port chosen: taken, so a server of its own
            out = second.output()
            assert f"127.0.0.1:{port} is taken by the Prefect server of carepath instance(s) {one}: this instance " \
                   f"({_instance(second)}) starts its own Prefect server on 127.0.0.1:" in out
            assert _instance(second) != one

            api = f"http://127.0.0.1:{port}/api"
            third = serve("third", PREFECT_API_URL=api)  # told to join the first's server: says whose it is
            three = _instance(third)
            assert f"Prefect API: {api} (joined: carepath instance(s) {one} also serve there; this is instance " \
                   f"{three})" in third.output()
            names = {(d["name"], tuple(sorted(t for t in d["tags"] if t.startswith("instance:"))))
                     for d in httpx.post(f"{api}/deployments/filter", json={"limit": 200}, timeout=10).json()}
            assert {(f"carepath-{one}", (f"instance:{one}",)), (f"carepath-{three}", (f"instance:{three}",))} <= names
            assert all(_health(s)[0] == 200 for s in (first, second, third))

            assert first.terminate() == 0  # its Prefect server goes with it

            def unscheduled() -> dict | None:
                code, body = _health(third)  # (503 at once: its Prefect API is down; the scheduler says why)
                return body if code == 503 and body["scheduler"].startswith("no scheduler") else None

            body = wait_for(unscheduled, 60, "the third instance's /healthz to report its missing scheduler")
            assert body["scheduler"].startswith(f"no scheduler: the Prefect server at {api} has not answered since")
            code, own = _health(second)
            assert code == 200 and own["scheduler"].startswith("ok: ")
        finally:
            for process in started:
                if process.process.poll() is None:
                    process.terminate()

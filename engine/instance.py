"""Which carepath installation a ``carepath serve`` belongs to, and who else is on a Prefect server.

Several installations can share one machine, or one Prefect server (a hospital's test and production,
two hospitals of a group). Each one's deployments are named ``carepath-<instance>`` and tagged
``instance:<instance>``, so their schedules never mix. The instance is ``CAREPATH_INSTANCE`` when set,
else it is derived from the database: workers of one installation share a database, so they share
the deployments (scale-out); another database is another installation.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePath

import httpx
from sqlalchemy.engine import make_url

DEPLOYMENT_PREFIX = "carepath-"
TAG_PREFIX = "instance:"


def instance_name(configured: str | None, database_url: str) -> str:
    """``configured`` (``CAREPATH_INSTANCE``), else ``<database name>-<8 hex of the database's address>``."""
    if configured:
        return configured
    url = make_url(database_url)
    # the database's address without the password (a rotated password is the same installation)
    address = f"{url.get_backend_name()}://{url.username or ''}@{url.host or ''}:{url.port or ''}/{url.database or ''}"
    stem = url.database or "db"
    if url.get_backend_name() == "sqlite":
        path = PurePath(url.database or "memory")
        # ./.carepath/carepath.db says nothing: the hospital's folder that holds it does
        stem = path.parent.parent.name if path.stem == "carepath" and path.parent.name == ".carepath" else path.stem
    stem = re.sub(r"[^a-z0-9_\-]+", "-", stem.lower()).strip("-")[:40] or "db"
    return f"{stem}-{hashlib.sha256(address.encode()).hexdigest()[:8]}"


def deployment_name(instance: str) -> str:
    return f"{DEPLOYMENT_PREFIX}{instance}"


def instances_on(api_url: str, timeout: float = 5.0) -> list[str] | None:
    """The carepath instances with deployments on the Prefect server at ``api_url`` (``None``: no Prefect
    server answers there)."""
    base = api_url.rstrip("/")
    try:
        if httpx.get(f"{base}/health", timeout=timeout).status_code != 200:
            return None
        answer = httpx.post(f"{base}/deployments/filter", timeout=timeout,
                            json={"limit": 200, "offset": 0, "deployments": {"tags": {"all_": ["carepath"]}}})
    except httpx.HTTPError:
        return None
    if answer.status_code != 200:
        return []
    return sorted({tag[len(TAG_PREFIX):] for d in answer.json() for tag in d.get("tags", [])
                   if tag.startswith(TAG_PREFIX)})


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on ``host:port``."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0

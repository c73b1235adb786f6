"""Links patients receive: one public base URL for every page the web hooks app serves.

Survey links (``/s/<token>``) today, check-in and click-through links later: whatever puts a link to
this installation in a message builds it with :func:`public_url`. The base is, in order:

1. ``[web] public_url`` in carepath.toml (``https://carepath.example-hospital.cn``): what patients'
   phones can reach, usually the hospital's reverse proxy in front of ``carepath serve``;
2. ``[surveys] base_url``, its older name (still read for this release; ``config check`` says to move it);
3. what ``carepath serve`` listens on: the address it bound, else ``CAREPATH_SERVE_HOST`` and
   ``CAREPATH_SERVE_PORT`` (``http://127.0.0.1:8787``), which only this machine can open.

``carepath config check`` warns when a configuration that reaches patients (a channel other than
``console`` or ``outbox``) would send them a loopback address.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

#: channel types that reach nobody outside this machine (development and tests)
LOCAL_CHANNEL_TYPES = ("console", "outbox")


class WebSettings(BaseModel):
    """``[web]`` in carepath.toml."""

    model_config = ConfigDict(extra="forbid")

    public_url: str | None = Field(None, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
                                   description="the address patients' phones open carepath's pages at")


def public_base(config: Any, settings: Any, served_at: str | None = None) -> str:
    """The base URL of every link to this installation (see the module's docstring for the order)."""
    explicit = config.web.public_url or config.surveys.base_url
    if explicit:
        return explicit.rstrip("/")
    if served_at:
        return served_at.rstrip("/")
    host = settings.serve_host if settings.serve_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.serve_port}"


def public_url(engine: Any, path: str) -> str:
    """The public link to ``path`` (``/s/<token>``) on ``engine``'s installation."""
    base = public_base(engine.config, engine.settings, getattr(engine, "served_at", None))
    return f"{base}/{path.lstrip('/')}"


def is_loopback(url: str) -> bool:
    """Whether ``url`` names this machine only (``localhost``, ``127.0.0.1``, ``::1``)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def link_warnings(config: Any, settings: Any) -> list[str]:
    """What ``carepath config check`` says about patients' links (warnings: the configuration still loads).

    A configuration "reaches patients" when it declares a channel other than ``console`` and ``outbox``;
    such a configuration sending a loopback base URL would give patients links that open nothing.
    """
    out = []
    if config.surveys.base_url:
        out.append("surveys.base_url: the public address is now [web] public_url (it serves every link, not only "
                   "surveys); move it there")
    base = public_base(config, settings)
    real = sorted(n for n, s in config.of_kind("channel").items() if s.type not in LOCAL_CHANNEL_TYPES)
    if real and is_loopback(base):
        where = "web.public_url" if config.web.public_url else "surveys.base_url" if config.surveys.base_url else \
            "web.public_url (not set)"
        out.append(f"{where}: patients' links would start with {base}, which only this machine can open, yet "
                   f"channel(s) {', '.join(real)} reach patients; set [web] public_url to the address their "
                   f"phones reach (e.g. https://carepath.example-hospital.cn)")
    return out

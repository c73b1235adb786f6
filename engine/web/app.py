"""The web hooks app: plugin callback routes, ``POST /events``, ``/healthz`` and ``/metrics``.

``carepath serve`` runs it under uvicorn. Plugin routes come from the
``carepath_web_routes`` hook (usually ``carepath.plugins.web.callback_router``,
answering ``/hooks/<type>/<name>``) and reach the running engine through
``app.state.carepath`` (:class:`ServeContext`). Every route sits behind the
inbound guard (:mod:`carepath.web.guard`: body limits, per-source rate limits
and lock-outs, no trace to the caller); ``POST /events`` takes a bearer token
per integrating system (:mod:`carepath.web.clients`).
"""

# No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations at run time.
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from carepath.plugins.contracts import Connector
from carepath.web.clients import EventsAuth, may_send
from carepath.web.events import UNAVAILABLE, apply_events, split_body, summary
from carepath.web.guard import InboundGuard
from carepath.web.limits import InboundLimits
from carepath.web.metrics import Metrics


@dataclass
class ServeContext:
    """What plugin routes see (``carepath.plugins.web.WebContext``): the connectors and the ingest function."""

    engine: Any
    connectors: Mapping[str, Connector] = field(default_factory=dict)

    def ingest(self, event: Any, received_via: str | None = None) -> Any:
        """Store and apply one event; urgent ``on`` steps it triggers are sent before this returns.

        ``received_via`` names who delivered it (``hook:<connector>``), kept on the stored event.
        """
        return self.engine.ingest(event, received_via=received_via)


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def database_ok(engine: Any) -> tuple[bool, str]:
    try:
        with engine.db.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # health checks report, never raise
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return True, "ok"


def prefect_ok(api_url: str | None, timeout: float = 2.0) -> tuple[bool, str]:
    if not api_url:
        return True, "not used (no Prefect API configured)"
    import httpx

    try:
        answer = httpx.get(api_url.rstrip("/") + "/health", timeout=timeout)
    except httpx.HTTPError as exc:
        return False, f"{api_url} unreachable: {type(exc).__name__}"
    return (answer.status_code == 200), f"{api_url}: HTTP {answer.status_code}"


def create_app(engine: Any, *, connectors: Mapping[str, Connector] | None = None, events_token: str | None = None,
               events_token_env: str = "CAREPATH_EVENTS_TOKEN", prefect_api_url: str | None = None,
               routers: list[Any] | None = None, limits: InboundLimits | None = None,
               scheduler: Callable[[], tuple[bool, str]] | None = None) -> FastAPI:
    """The app for ``engine``. ``connectors`` defaults to the engine's configured connectors, ``routers`` to
    every plugin's ``carepath_web_routes``, ``limits`` to the engine's settings (``CAREPATH_INBOUND_*``).

    ``POST /events`` needs ``Authorization: Bearer <token>`` of a system of
    ``[events_api.<system>]`` in carepath.toml, or ``events_token`` (the
    system ``default``); with neither it is refused (503) and says what to
    set. A weak token raises :class:`carepath.web.clients.WeakToken`.
    ``scheduler`` (``carepath serve``) tells ``/healthz`` whether this instance's runs are
    being started, and why not.
    """
    auth = EventsAuth.build(getattr(getattr(engine, "config", None), "events_api", {}), events_token,
                            events_token_env)
    limits = limits or engine.settings.inbound_limits()
    app = FastAPI(title="carepath web hooks", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(InboundGuard, limits=limits)
    app.state.events_auth = auth
    app.state.carepath = ServeContext(engine, dict(connectors if connectors is not None
                                                   else getattr(engine, "connectors", engine.channels)))
    metrics = Metrics(engine)
    if routers is None:
        routers = engine.plugins.web_routers()
    for router in routers:
        app.include_router(router)
    from carepath.web.clicks import click_router

    app.include_router(click_router(engine))  # tracked links in messages (carepath.runtime.clicks)
    from carepath.web.checkin_page import checkin_router

    app.include_router(checkin_router())  # issue 19: the check-in page of a prompt's link (/k/<token>)

    @app.post("/events")
    async def post_events(request: Request) -> JSONResponse:
        if not auth.systems:
            return JSONResponse({"detail": f"POST /events is off: set {events_token_env} to a bearer token, or "
                                           "give each system its own under [events_api.<system>] in carepath.toml"},
                                503)
        system = auth.identify(_bearer(request))
        if system is None:  # checked before a byte of the body is read
            return JSONResponse({"detail": "missing or wrong bearer token"}, 401,
                                headers={"WWW-Authenticate": "Bearer"})
        body = await request.body()  # bounded by the guard
        items = await run_in_threadpool(split_body, body)
        if len(items) > limits.max_events:
            return JSONResponse({"detail": f"{len(items)} events in one request, at most {limits.max_events} "
                                           "(CAREPATH_INBOUND_EVENTS_MAX_COUNT): split the batch; none was applied"},
                                413)
        via = f"events-api:{system.name}"
        # ingest and any urgent sends block: off the event loop, so other requests keep flowing
        outcomes = await run_in_threadpool(apply_events, items,
                                           lambda event: app.state.carepath.ingest(event, received_via=via),
                                           lambda source: may_send(system, source))
        for o in outcomes:
            metrics.events.labels(o.status).inc()
        answer = {**summary(outcomes), "system": system.name}
        if not outcomes:
            return JSONResponse({**answer, "detail": "no events in the body"}, 400)
        if answer.get(UNAVAILABLE):
            return JSONResponse(answer, 503, headers={"Retry-After": "30"})
        return JSONResponse(answer, 422 if answer["refused"] else 200)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        db, db_detail = database_ok(engine)
        pf, pf_detail = prefect_ok(prefect_api_url)
        sc, sc_detail = scheduler() if scheduler is not None else (True, "not checked (no scheduler in this process)")
        ok = db and pf and sc
        return JSONResponse({"status": "ok" if ok else "unavailable", "database": db_detail, "prefect": pf_detail,
                             "scheduler": sc_detail}, 200 if ok else 503)

    @app.get("/metrics")
    def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return app

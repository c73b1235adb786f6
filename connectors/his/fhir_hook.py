"""``/webhooks/fhir/<connector>``: FHIR Subscription rest-hook notifications, authenticated by a shared secret.

With no payload the server POSTs an empty body: carepath polls that source
at once. With a payload (HAPI PUTs ``endpoint/{Type}/{id}``) the resource is
mapped and stored directly. The secret is checked before the body is read.
"""

# No ``from __future__ import annotations``: FastAPI reads the route's annotations at run time.
from typing import TYPE_CHECKING

from carepath.plugins.contracts import CallbackRequest

if TYPE_CHECKING:
    from fastapi import APIRouter


def fhir_router(prefix: str = "/webhooks/fhir") -> "APIRouter":
    """Routes for every configured ``fhir`` connector, by name."""
    from fastapi import APIRouter, HTTPException, Request, Response
    from starlette.concurrency import run_in_threadpool

    from carepath.connectors.his.fhir_source import FhirSource
    from carepath.plugins.web import checked, ingest_via, unusable_callback, web_context
    from carepath.runtime.his_poll import poll_source

    router = APIRouter()

    @router.api_route(prefix + "/{name}", methods=["POST", "PUT"], include_in_schema=False)
    @router.api_route(prefix + "/{name}/{resource_type}/{resource_id}", methods=["POST", "PUT"],
                      include_in_schema=False)
    async def _notify(name: str, request: Request) -> Response:
        context = web_context(request)
        source = context.connectors.get(name)
        if not isinstance(source, FhirSource):
            raise HTTPException(status_code=404, detail=f"no fhir connector named {name!r}")
        inbound = CallbackRequest(headers=dict(request.headers), query=dict(request.query_params),
                                  method=request.method, path=request.url.path)
        if not source.verify_callback(inbound):
            raise HTTPException(status_code=401, detail="notification not authentic")
        inbound = CallbackRequest(body=await request.body(), headers=inbound.headers, query=inbound.query,
                                  method=inbound.method, path=inbound.path)
        if not inbound.body.strip():
            report = await run_in_threadpool(poll_source, source.engine, source)
            return Response(content=report.summary(), status_code=503 if report.unavailable else 200,
                            media_type="text/plain")
        try:
            events = checked(context, await run_in_threadpool(source.parse_callback, inbound))
            for event in events:
                await run_in_threadpool(ingest_via, context, event, f"hook:{name}")
        except Exception as exc:  # noqa: BLE001 - answered 400 (kept for operators) or 503, never a trace
            raise unusable_callback(context, getattr(source.config, "system", name), f"{request.method} {prefix}/{name}",
                                    inbound, exc, via=f"hook:{name}") from None
        return Response(content=f"{len(events)} event(s) stored", media_type="text/plain")

    return router

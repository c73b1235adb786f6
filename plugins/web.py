"""What a plugin's web routes may rely on: the web context and a ready-made callback router.

The web hooks app sets ``app.state.carepath`` to an object following
:class:`WebContext` (the configured connectors by name, and the ingest
function). Routes from ``carepath_web_routes`` reach it with
:func:`web_context`. :func:`callback_router` builds the usual route for a
connector type: authenticate, parse, ingest; a request that fails
authentication is answered 401 and changes nothing.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route's annotations at run time.
from typing import TYPE_CHECKING, Any, Mapping, Protocol

from carepath.plugins.contracts import CallbackRejected, CallbackRequest, Connector

if TYPE_CHECKING:  # FastAPI is only imported by the web hooks app and its routes
    from fastapi import APIRouter, Request


class WebContext(Protocol):
    """The running carepath as the web hooks app shows it to plugin routes."""

    connectors: Mapping[str, Connector]
    #: the running ``carepath.engine.Engine`` (database, clock, cipher) for routes that need more than ingest
    engine: Any

    def ingest(self, event: Any) -> Any:
        """Store and apply one inbound event (``carepath.definition.events.EventIn``)."""


def web_context(request: "Request") -> WebContext:
    """The :class:`WebContext` of the app serving ``request``."""
    context = getattr(request.app.state, "carepath", None)
    if context is None:
        raise RuntimeError("app.state.carepath is not set: mount plugin routes in the carepath web hooks app")
    return context


def callback_router(type_name: str, prefix: str = "/hooks") -> "APIRouter":
    """A router handing ``GET|POST {prefix}/{type_name}/{name}[/...]`` to connector ``name``.

    What follows the name (a secret path token, ``receipts`` or ``replies``)
    reaches the connector as ``CallbackRequest.path``. A request that fails
    authentication is answered 401, a malformed one (``ValueError`` while
    parsing) 400; neither changes anything.
    """
    from fastapi import APIRouter, HTTPException, Request, Response

    router = APIRouter()

    @router.api_route(f"{prefix}/{type_name}/{{name}}", methods=["GET", "POST"], include_in_schema=False)
    @router.api_route(f"{prefix}/{type_name}/{{name}}/{{tail:path}}", methods=["GET", "POST"],
                      include_in_schema=False)
    async def _callback(name: str, request: Request) -> Response:
        context = web_context(request)
        connector = context.connectors.get(name)
        if connector is None or connector.type_name != type_name:
            raise HTTPException(status_code=404, detail=f"no {type_name} connector named {name!r}")
        inbound = CallbackRequest(body=await request.body(), headers=dict(request.headers),
                                  query=dict(request.query_params), method=request.method, path=request.url.path)
        try:
            events = connector.handle_callback(inbound)
        except CallbackRejected:
            raise HTTPException(status_code=401, detail="callback not authentic") from None
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=f"malformed callback: {exc}") from None
        for event in events:
            context.ingest(event)
        status, body = connector.callback_reply(inbound)
        return Response(content=body, status_code=status, media_type="application/json")

    return router

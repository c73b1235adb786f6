"""``POST /hooks/tencent-wenjuan/<connector>/<path_token>``: Tencent Wenjuan pushes, token checked first."""

# No ``from __future__ import annotations``: FastAPI reads the route's annotations at run time.
from typing import Any

from carepath.connectors.surveys.tencent_wenjuan import TencentWenjuan
from carepath.plugins.contracts import CallbackRequest


def tencent_router(prefix: str = "/hooks") -> Any:
    """``POST {prefix}/tencent-wenjuan/{name}/{path_token}``: the token is checked before the body is read;
    a push of an unusable shape is answered 400 and kept (masked) for operators."""
    from fastapi import APIRouter, HTTPException, Request, Response
    from starlette.concurrency import run_in_threadpool

    from carepath.plugins.web import unusable_callback, web_context

    router = APIRouter()

    @router.post(prefix + "/tencent-wenjuan/{name}/{token}", include_in_schema=False)
    async def _push(name: str, token: str, request: Request) -> Response:
        context = web_context(request)
        connector = context.connectors.get(name)
        if not isinstance(connector, TencentWenjuan):
            raise HTTPException(status_code=404, detail=f"no tencent-wenjuan connector named {name!r}")
        inbound = CallbackRequest(headers=dict(request.headers), path=request.url.path, method="POST")
        if not connector.verify_callback(inbound):
            raise HTTPException(status_code=401, detail="push not authentic")
        inbound = CallbackRequest(body=await request.body(), headers=inbound.headers, path=inbound.path,
                                  method="POST")
        try:
            await run_in_threadpool(connector.parse_callback, inbound)
        except Exception as exc:  # noqa: BLE001 - answered 400 (kept for operators) or 503, never a trace
            raise unusable_callback(context, f"tencent-wenjuan:{name}", f"POST {prefix}/tencent-wenjuan/{name}",
                                    inbound, exc, via=f"hook:{name}") from None
        status, body = connector.callback_reply(inbound)
        return Response(content=body, status_code=status, media_type="application/json")

    return router

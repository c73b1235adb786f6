"""``GET|HEAD /c/<token>``: the click redirect of tracked links (:mod:`carepath.runtime.clicks`)."""

# No ``from __future__ import annotations``: FastAPI reads the route's annotations at run time.
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from carepath.runtime.clicks import record_click, resolve_click

_UNKNOWN = ("<!doctype html><html lang=\"zh-CN\"><meta charset=\"utf-8\"><title>链接无效</title>"
            "<p>这个链接无法识别。请使用短信或微信中收到的完整链接。</p></html>")


def click_router(engine: Any) -> APIRouter:
    router = APIRouter()

    @router.api_route("/c/{token}", methods=["GET", "HEAD"], include_in_schema=False)
    async def follow(token: str, request: Request) -> Response:
        if len(token) > 64:
            return HTMLResponse(_UNKNOWN, status_code=404)
        click = await run_in_threadpool(resolve_click, engine, token, request.method,
                                        request.headers.get("user-agent"))
        if click.url is None:
            return HTMLResponse(_UNKNOWN, status_code=404)
        if click.counts:
            await run_in_threadpool(record_click, engine, click)
        return RedirectResponse(click.url, status_code=302, headers={"Cache-Control": "no-store"})

    return router

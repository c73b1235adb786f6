"""The staff page: a team's work queue (list, open, claim, note, close) behind a login token.

Members and their tokens are ``[staff.<name>]`` tables of ``carepath.toml``.
The list shows masked patient names and no phone; opening a task shows the
phone in clear, and that look is audit-logged. The session is the login token
in an HttpOnly, SameSite=Strict cookie.
"""

# No ``from __future__ import annotations``: FastAPI reads the route's annotations at run time.
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape

from carepath.plugins.hookspecs import hookimpl
from carepath.web.staff_complaints import complaint_rows, complaints_router, conversation_rows  # issue 21

if TYPE_CHECKING:
    from fastapi import APIRouter

COOKIE = "carepath_staff"
PAGES = Environment(loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
                    autoescape=select_autoescape(["html"]))


@dataclass(frozen=True)
class Member:
    name: str
    team: str
    role: str
    timezone: str


def member_for(engine: Any, token: Optional[str]) -> Optional[Member]:
    """The staff member whose login token this is (compared in constant time), else ``None``."""
    if not token:
        return None
    found = None
    for name, member in engine.config.staff.items():
        if hmac.compare_digest(token.encode(), member.token.get_secret_value().encode()):
            found = Member(name, member.team, member.role, engine.config.team(member.team).timezone)
    return found


#: which deadline a task's time is, as the staff page says it
DEADLINES = {"first_response": "首次响应", "resolution": "处理完成"}


def _local(value: Any, tz: str) -> str:
    return value.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M") if value is not None else ""


def _shown(task: Any, tz: str) -> dict[str, Any]:
    """A task as the pages show it: its deadline in the member's zone, named (首次响应 / 处理完成)."""
    return dict(task.__dict__, due=_local(task.due, tz), deadline=DEADLINES.get(task.deadline or "", ""))


def staff_router() -> "APIRouter":
    from fastapi import APIRouter, Form, Request
    from fastapi.responses import HTMLResponse, RedirectResponse
    from starlette.concurrency import run_in_threadpool

    from carepath.plugins.web import web_context
    from carepath.runtime import work_queue
    from carepath.runtime.task_survey import survey_behind_task

    router = APIRouter()

    def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
        return HTMLResponse(PAGES.get_template(name).render(**values), status_code=status)

    def current(request: Request) -> tuple[Any, Optional[Member]]:
        engine = web_context(request).engine
        return engine, member_for(engine, request.cookies.get(COOKIE))

    def back(path: str) -> RedirectResponse:
        return RedirectResponse(path, status_code=303)

    @router.get("/staff", include_in_schema=False)
    async def task_list(request: Request) -> HTMLResponse:
        engine, member = current(request)
        if member is None:
            return render("staff_login.html", title="登录", member=None, error=None)
        tasks = await run_in_threadpool(work_queue.list_tasks, engine, team=member.team)
        now = engine.clock.now()
        rows = [dict(_shown(t, member.timezone), overdue=t.overdue(now)) for t in tasks]
        cases = await run_in_threadpool(complaint_rows, engine, member)  # issue 21: the complaints team's cases
        return render("staff_list.html", title="待办", member=member, tasks=rows, complaints=cases)

    @router.post("/staff/login", include_in_schema=False)
    async def login(request: Request, token: str = Form("")) -> Any:
        engine = web_context(request).engine
        if member_for(engine, token) is None:
            return render("staff_login.html", 401, title="登录", member=None, error="令牌无效 (unknown token)")
        response = back("/staff")
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    @router.post("/staff/logout", include_in_schema=False)
    async def logout() -> Any:
        response = back("/staff")
        response.delete_cookie(COOKIE)
        return response

    @router.get("/staff/tasks/{task_id}", include_in_schema=False)
    async def show(task_id: int, request: Request) -> Any:
        engine, member = current(request)
        if member is None:
            return back("/staff")
        team = await run_in_threadpool(work_queue.task_team, engine, task_id)
        if team is not None and team != member.team:  # refused before the contact is decrypted or the look logged
            return render("staff_login.html", 403, title="无权限", member=member, error="这不是您团队的任务")
        try:
            task, notes = await run_in_threadpool(work_queue.open_task, engine, task_id, member.name)
        except work_queue.TaskError as exc:
            return render("staff_login.html", 404, title="未找到", member=member, error=str(exc))
        view = _shown(task, member.timezone)
        notes = [dict(n._mapping, at=_local(n.at, member.timezone)) for n in notes]
        survey = await run_in_threadpool(survey_behind_task, engine, task_id)
        said = None if survey is None else dict(survey.to_json(), received_at=_local(survey.received_at,
                                                                                      member.timezone))
        turns = await run_in_threadpool(conversation_rows, engine, task_id, member)  # issue 21
        return render("staff_task.html", title=f"任务 {task_id}", member=member, task=view, notes=notes,
                      open=task.status in work_queue.OPEN_STATUSES, survey=said, conversation=turns)

    async def act(request: Request, task_id: int, operation: Any, *args: Any) -> Any:
        engine, member = current(request)
        if member is None:
            return back("/staff")
        if await run_in_threadpool(work_queue.task_team, engine, task_id) != member.team:
            return render("staff_login.html", 403, title="无权限", member=member, error="这不是您团队的任务")
        try:
            await run_in_threadpool(operation, engine, task_id, member.name, *args)
        except work_queue.TaskError as exc:
            return render("staff_login.html", 409, title="无法操作", member=member, error=str(exc))
        return back(f"/staff/tasks/{task_id}")

    @router.post("/staff/tasks/{task_id}/claim", include_in_schema=False)
    async def claim(task_id: int, request: Request) -> Any:
        return await act(request, task_id, work_queue.claim)

    @router.post("/staff/tasks/{task_id}/note", include_in_schema=False)
    async def note(task_id: int, request: Request, text: str = Form("")) -> Any:
        return await act(request, task_id, work_queue.add_note, text)

    @router.post("/staff/tasks/{task_id}/close", include_in_schema=False)
    async def close(task_id: int, request: Request, resolution: str = Form("")) -> Any:
        return await act(request, task_id, work_queue.close, resolution)

    router.include_router(complaints_router(render, current, back))  # issue 21
    return router


@hookimpl
def carepath_web_routes():
    return [staff_router()]

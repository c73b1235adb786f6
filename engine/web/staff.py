"""The staff page: a team's work queue (list, open, claim, note, close) behind an expiring login.

Accounts are ``[staff.<name>]`` tables (carepath.toml, the staff file, the hospital's directory:
:mod:`carepath.staff_accounts`). Logging in with the name and the account's secret gives a session
(:mod:`carepath.staff_sessions`: it expires, can be revoked, refused logins are limited per account and
address) whose token is the HttpOnly, SameSite=Strict cookie. A member sees only the tasks of their
teams (operations and administrators: every team's, read-only); the list and a task show the patient
masked, and a member whose role allows it (:mod:`carepath.staff_access`) presses 显示电话 to see the
phone in clear, which is audit-logged.
"""

# No ``from __future__ import annotations``: FastAPI reads the route's annotations at run time.
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape

from carepath.plugins.hookspecs import hookimpl
from carepath.staff_access import AccessDenied, Member, member_of
from carepath.web.staff_complaints import complaint_rows, complaints_router, conversation_rows  # issue 21
from carepath.web.staff_outcomes import outcomes_router  # issue 23

if TYPE_CHECKING:
    from fastapi import APIRouter

COOKIE = "carepath_staff"
PAGES = Environment(loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
                    autoescape=select_autoescape(["html"]))
PAGES.globals["zip"] = zip
__all__ = ["COOKIE", "Member", "member_for", "staff_router"]


def member_for(engine: Any, token: Optional[str]) -> Optional[Member]:
    """The staff member whose live session token this is, else ``None``."""
    from carepath.staff_sessions import session_member

    name = session_member(engine, token)
    if name is None:
        return None
    zones = {team: engine.config.team(team).timezone for team in engine.config.staff[name].member_teams()}
    return member_of(name, engine.config.staff[name], zones)


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

    from carepath.masking import mask_phone
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

    def refused(member: Member, exc: AccessDenied) -> HTMLResponse:
        return render("staff_login.html", 403, title="无权限", member=member, error=f"无权限：{exc}")

    @router.get("/staff", include_in_schema=False)
    async def task_list(request: Request) -> HTMLResponse:
        engine, member = await run_in_threadpool(current, request)
        if member is None:
            return render("staff_login.html", title="登录", member=None, error=None)
        tasks = await run_in_threadpool(work_queue.list_tasks, engine, teams=member.visible_teams())
        now = engine.clock.now()
        rows = [dict(_shown(t, member.timezone), overdue=t.overdue(now)) for t in tasks]
        cases = await run_in_threadpool(complaint_rows, engine, member)  # issue 21: the complaints team's cases
        return render("staff_list.html", title="待办", member=member, tasks=rows, complaints=cases,
                      scope="全部团队" if member.sees_every_team else "、".join(member.teams))

    @router.post("/staff/login", include_in_schema=False)
    async def login(request: Request, name: str = Form(""), token: str = Form("")) -> Any:
        from carepath.staff_sessions import LoginRefused, login as start

        engine = web_context(request).engine
        if not name.strip() or not token:  # not a login attempt (an empty or foreign body): nothing recorded
            return render("staff_login.html", 400, title="登录", member=None,
                          error="请输入姓名和令牌 (name and token are required)")
        source = getattr(request.state, "carepath_source", None) or (request.client.host if request.client
                                                                      else "unknown")  # the guard's, else the peer
        try:
            session = await run_in_threadpool(start, engine, name, token, source)
        except LoginRefused as exc:
            error = "登录尝试过多，请稍后再试 (too many refused logins)" if exc.locked \
                else "姓名或令牌无效 (unknown name or wrong token)"
            return render("staff_login.html", 429 if exc.locked else 401, title="登录", member=None, error=error)
        response = back("/staff")
        response.set_cookie(COOKIE, session, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                            max_age=int(engine.config.accounts.session_ttl.total_seconds()))
        return response

    @router.post("/staff/logout", include_in_schema=False)
    async def logout(request: Request) -> Any:
        from carepath.staff_sessions import logout as end

        await run_in_threadpool(end, web_context(request).engine, request.cookies.get(COOKIE))
        response = back("/staff")
        response.delete_cookie(COOKIE)
        return response

    async def task_page(request: Request, task_id: int, reveal: bool) -> Any:
        engine, member = await run_in_threadpool(current, request)
        if member is None:
            return back("/staff")
        team = await run_in_threadpool(work_queue.task_team, engine, task_id)
        try:  # refused before the contact is decrypted or the look logged
            if team is not None:
                member.check("unmask" if reveal else "view", team, f"task {task_id}")
        except AccessDenied as exc:
            return refused(member, exc)
        try:
            task, notes = await run_in_threadpool(
                lambda: work_queue.open_task(engine, task_id, member.name if reveal else None, via="staff page",
                                             role=member.role))
        except work_queue.TaskError as exc:
            return render("staff_login.html", 404, title="未找到", member=member, error=str(exc))
        view = dict(_shown(task, member.timezone), phone=task.phone if reveal else mask_phone(task.phone))
        notes = [dict(n._mapping, at=_local(n.at, member.timezone)) for n in notes]
        survey = await run_in_threadpool(survey_behind_task, engine, task_id)
        said = None if survey is None else dict(survey.to_json(), received_at=_local(survey.received_at,
                                                                                      member.timezone))
        works = member.allows("claim", task.team)
        turns = await run_in_threadpool(conversation_rows, engine, task_id, member)  # issue 21
        return render("staff_task.html", title=f"任务 {task_id}", member=member, task=view, notes=notes,
                      open=works and task.status in work_queue.OPEN_STATUSES, survey=said, revealed=reveal,
                      may_reveal=not reveal and bool(task.phone) and member.allows("unmask", task.team),
                      conversation=turns)

    @router.get("/staff/tasks/{task_id}", include_in_schema=False)
    async def show(task_id: int, request: Request) -> Any:
        return await task_page(request, task_id, reveal=False)

    @router.post("/staff/tasks/{task_id}/reveal", include_in_schema=False)
    async def reveal(task_id: int, request: Request) -> Any:
        return await task_page(request, task_id, reveal=True)

    async def act(request: Request, task_id: int, action: str, operation: Any, *args: Any) -> Any:
        engine, member = await run_in_threadpool(current, request)
        if member is None:
            return back("/staff")
        team = await run_in_threadpool(work_queue.task_team, engine, task_id)
        try:
            member.check(action, team, f"task {task_id}")  # type: ignore[arg-type]
        except AccessDenied as exc:
            return refused(member, exc)
        try:
            await run_in_threadpool(operation, engine, task_id, member.name, *args)
        except work_queue.TaskError as exc:
            return render("staff_login.html", 409, title="无法操作", member=member, error=str(exc))
        return back(f"/staff/tasks/{task_id}")

    @router.post("/staff/tasks/{task_id}/claim", include_in_schema=False)
    async def claim(task_id: int, request: Request) -> Any:
        return await act(request, task_id, "claim", work_queue.claim)

    @router.post("/staff/tasks/{task_id}/note", include_in_schema=False)
    async def note(task_id: int, request: Request, text: str = Form("")) -> Any:
        return await act(request, task_id, "note", work_queue.add_note, text)

    @router.post("/staff/tasks/{task_id}/close", include_in_schema=False)
    async def close(task_id: int, request: Request, resolution: str = Form("")) -> Any:
        return await act(request, task_id, "close", work_queue.close, resolution)

    router.include_router(complaints_router(render, current, back))  # issue 21
    router.include_router(outcomes_router(render, current, back))  # issue 23: experiments' outcomes
    return router


@hookimpl
def carepath_web_routes():
    return [staff_router()]

"""Issue 21 on the staff page: the complaints team's cases (acknowledge, resolve) and, on a task opened by a
patient's message, the conversation so far (texts masked).

Only members of ``[complaints] team`` see and act on cases; a conversation is shown on a task of the member's
own team only (the task page checks the team before anything is read).
"""

# No ``from __future__ import annotations``: FastAPI reads the route's annotations at run time.
from typing import Any, Callable, Optional
from zoneinfo import ZoneInfo



def _local(value: Any, tz: str) -> str:
    return value.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M") if value is not None else ""


def complaint_rows(engine: Any, member: Any) -> Optional[list[dict[str, Any]]]:
    """Open and acknowledged cases for a member of the complaints team (None for anyone else)."""
    from carepath.runtime.complaints import list_cases

    if engine.config.complaints.team not in member.teams:
        return None
    now = engine.clock.now()
    rows = []
    for case in [*list_cases(engine, status="open"), *list_cases(engine, status="acknowledged")]:
        due = case.first_response_due_at if case.status == "open" else case.resolution_due_at
        rows.append(dict(case.__dict__, due=_local(due, member.timezone), overdue=due <= now,
                         deadline="首次响应" if case.status == "open" else "处理完成",
                         opened=_local(case.opened_at, member.timezone)))
    return sorted(rows, key=lambda r: r["due"])


def conversation_rows(engine: Any, task_id: int, member: Any) -> list[dict[str, Any]]:
    """The conversation behind a task (the turn that opened it marked, and the 20 turns up to now), masked."""
    from carepath.runtime.conversations.turns import task_conversation

    turn_id, turns = task_conversation(engine, task_id)
    return [dict(id=t.id, at=_local(t.at, member.timezone), who="患者" if t.direction == "in" else "回复",
                 text=t.shown(), status=t.status, mark=t.id == turn_id) for t in turns]


def complaints_router(render: Callable[..., Any], current: Callable[..., Any], back: Callable[..., Any]) -> Any:
    """``POST /staff/complaints/<id>/acknowledge`` and ``.../resolve`` for the complaints team."""
    from fastapi import APIRouter, Form, Request
    from starlette.concurrency import run_in_threadpool

    from carepath.runtime import complaints

    router = APIRouter()

    async def act(request: Request, operation: Any, *args: Any) -> Any:
        engine, member = current(request)
        if member is None:
            return back("/staff")
        if engine.config.complaints.team not in member.teams:
            return render("staff_login.html", 403, title="无权限", member=member, error="投诉由投诉处理团队办理")
        try:
            await run_in_threadpool(operation, engine, *args[:1], member.name, *args[1:])
        except complaints.ComplaintError as exc:
            return render("staff_login.html", 409, title="无法操作", member=member, error=str(exc))
        return back("/staff")

    @router.post("/staff/complaints/{case_id}/acknowledge", include_in_schema=False)
    async def acknowledge(case_id: int, request: Request) -> Any:
        return await act(request, complaints.acknowledge, case_id)

    @router.post("/staff/complaints/{case_id}/resolve", include_in_schema=False)
    async def resolve(case_id: int, request: Request, resolution: str = Form("")) -> Any:
        return await act(request, complaints.resolve, case_id, resolution)

    return router

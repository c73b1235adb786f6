"""Issue 19: the check-in page, ``GET|POST /k/<token>`` on the web hooks app (the link of a check-in prompt).

A valid link of a sent prompt shows a form: the value(s) of the prompt's measure with its unit, or one 打卡
button for a keyword check-in. The answer is range-checked (an impossible value is shown again with the
problem, nothing stored), then recorded for the prompt's day like a reply (:mod:`carepath.runtime.checkins`).
A forged or expired link, or one already used, gets a page that says so and stores nothing.
"""

# No ``from __future__ import annotations``: FastAPI reads the route's annotations at run time.
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Union

from jinja2 import Environment, FileSystemLoader, select_autoescape

from carepath.definition.measures import BLOOD_PRESSURE, MEASURES

PAGES = Environment(loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
                    autoescape=select_autoescape(["html"]))
#: how long a prompt's link takes answers after it was sent
LINK_TTL = timedelta(hours=36)
NOTICES = {
    "invalid": (404, "链接无效", "这个打卡链接无法识别。请使用消息中收到的完整链接。"),
    "expired": (410, "链接已过期", "这次打卡已经结束。请等待下一次提醒，或直接回复消息打卡。"),
    "done": (409, "今天已打卡", "这次打卡已经记录，无需重复提交。"),
    "thanks": (200, "打卡成功", "已记录，感谢坚持！如有不适，请及时就医或联系您的医生。"),
}


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    unit: str


@dataclass(frozen=True)
class OpenCheckin:
    target: Any  # carepath.runtime.checkins.CheckinTarget
    fields: list


def fields_of(measure: Union[str, None]) -> list:
    """The inputs of a check-in of ``measure`` (none for a keyword check-in)."""
    if measure is None:
        return []
    names = ["systolic_bp", "diastolic_bp"] if measure == BLOOD_PRESSURE else [measure]
    return [Field(n, MEASURES[n].label, MEASURES[n].unit) for n in names]


def resolve(engine: Any, token: str) -> Union[OpenCheckin, str]:
    """The prompt a token opens, or why not (``invalid``, ``expired``, ``done``)."""
    from sqlalchemy import select

    from carepath.definition.model import Checkin
    from carepath.runtime.checkin_links import read_checkin_token
    from carepath.runtime.checkins import RECORDED, CheckinTarget
    from carepath.store.schema import CheckinRow, Enrollment, Touchpoint

    touchpoint_id = read_checkin_token(engine.cipher, token)
    if touchpoint_id is None:
        return "invalid"
    with engine.db.connect() as conn:
        row = conn.execute(select(Touchpoint.journey, Touchpoint.step, Touchpoint.sent_at, Touchpoint.patient_id,
                                  Touchpoint.enrollment_id, Enrollment.version, Enrollment.status)
                           .join(Enrollment, Enrollment.id == Touchpoint.enrollment_id)
                           .where(Touchpoint.id == touchpoint_id)).first()
        done = conn.execute(select(CheckinRow.id).where(CheckinRow.touchpoint_id == touchpoint_id,
                                                        CheckinRow.status == RECORDED)).first() is not None
    journey = engine.journey_version(row.journey, row.version) if row is not None else None
    step = next((s for s in journey.steps if s.id == row.step), None) if journey is not None else None
    if step is None or not isinstance(step.action, Checkin) or row.sent_at is None:
        return "invalid"
    if done:
        return "done"
    if row.status != "active" or engine.clock.now() > row.sent_at + LINK_TTL:
        return "expired"
    target = CheckinTarget(row.enrollment_id, row.patient_id, row.journey, step.id, step.action, touchpoint_id,
                           row.sent_at)
    return OpenCheckin(target, fields_of(step.action.measure))


def read_form(found: OpenCheckin, values: dict) -> Any:
    """The answer the form gives (``carepath.runtime.checkins.Answer``), or a problem text for the patient."""
    from carepath.runtime.checkins import Answer, checked_answer

    if not found.fields:
        return Answer({})
    numbers = {}
    for field in found.fields:
        text = values.get(field.name, "").strip()
        try:
            numbers[field.name] = float(text)
        except ValueError:
            return f"请填写{field.label}（数字，单位 {field.unit}）"
    answer = checked_answer(numbers, None, "/".join(f"{v:g}" for v in numbers.values()))
    return f"数值超出可能范围，请核对后重新填写（{answer.problem}）" if answer.problem else answer


def checkin_router() -> Any:
    """``GET /k/{token}`` shows the check-in form; ``POST /k/{token}`` records it."""
    from fastapi import APIRouter, Request
    from fastapi.responses import HTMLResponse
    from starlette.concurrency import run_in_threadpool

    router = APIRouter()

    def engine_of(request: Request) -> Any:
        return request.app.state.carepath.engine

    def page(state: str) -> HTMLResponse:
        status, title, text = NOTICES[state]
        return HTMLResponse(PAGES.get_template("checkin.html").render(state=state, title=title, text=text),
                            status_code=status)

    def form(found: OpenCheckin, values: dict, problem: Union[str, None] = None, status: int = 200) -> HTMLResponse:
        title = f"今日打卡：{found.fields[0].label if len(found.fields) == 1 else '血压' if found.fields else '打卡'}"
        return HTMLResponse(PAGES.get_template("checkin.html").render(
            state=None, title=title, fields=found.fields, values=values, problem=problem), status_code=status)

    @router.get("/k/{token}", include_in_schema=False)
    async def show(token: str, request: Request) -> HTMLResponse:
        found = await run_in_threadpool(resolve, engine_of(request), token)
        return page(found) if isinstance(found, str) else form(found, {})

    @router.post("/k/{token}", include_in_schema=False)
    async def answer(token: str, request: Request) -> HTMLResponse:
        engine = engine_of(request)
        found = await run_in_threadpool(resolve, engine, token)
        if isinstance(found, str):
            return page(found)
        values = {k: str(v)[:32] for k, v in (await request.form()).items()}
        read = read_form(found, values)
        if isinstance(read, str):
            return form(found, values, read, status=422)
        recorded = await run_in_threadpool(_record, engine, found, read)
        return page("thanks" if recorded else "done")

    return router


def _record(engine: Any, found: OpenCheckin, answer: Any) -> bool:
    """Record the page's check-in in one transaction; False when the prompt was answered meanwhile."""
    from sqlalchemy import select

    from carepath.runtime.checkins import RECORDED, record_checkin
    from carepath.store.schema import CheckinRow, Touchpoint

    with engine.db.begin() as conn:
        conn.execute(select(Touchpoint.id).where(Touchpoint.id == found.target.touchpoint_id).with_for_update())
        if conn.execute(select(CheckinRow.id).where(CheckinRow.touchpoint_id == found.target.touchpoint_id,
                                                    CheckinRow.status == RECORDED)).first():
            return False
        record_checkin(conn, engine, found.target, answer, engine.clock.now(), source="page")
    return True

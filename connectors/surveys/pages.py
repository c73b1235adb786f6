"""The built-in survey pages: ``GET|POST /s/<token>`` on the web hooks app.

A valid, unexpired, unanswered link shows the questionnaire; the answers are
checked, stored as a QuestionnaireResponse and told to the journeys. A forged,
expired or already used link gets a page that says so, and stores nothing.
"""

# No ``from __future__ import annotations``: FastAPI reads the route's annotations at run time.
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from carepath.connectors.surveys.questionnaires import Questionnaire, check_answers, load_questionnaires

if TYPE_CHECKING:
    from fastapi import APIRouter

PAGES = Environment(loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
                    autoescape=select_autoescape(["html"]))
NOTICES = {
    "invalid": (404, "链接无效", "这个问卷链接无法识别。请使用短信或微信中收到的完整链接。"),
    "expired": (410, "链接已过期", "这个问卷已经关闭，感谢您的关注。如有意见，请致电医院服务中心。"),
    "answered": (409, "您已提交过", "这份问卷已经提交，无需重复填写。感谢您的反馈！"),
    "thanks": (200, "感谢您的反馈", "您的回答已提交。如您有不适，请及时就医或致电科室。"),
}


@dataclass(frozen=True)
class OpenSurvey:
    questionnaire: Questionnaire
    touchpoint_id: int


def notice(state: str) -> tuple[int, str]:
    status, heading, text = NOTICES[state]
    return status, PAGES.get_template("notice.html").render(title=heading, heading=heading, text=text, state=state)


def resolve(engine: Any, token: str) -> "OpenSurvey | str":
    """The survey a token opens, or why it does not (``invalid``, ``expired``, ``answered``)."""
    from sqlalchemy import select

    from carepath.definition.model import Survey
    from carepath.runtime.survey_links import read_token
    from carepath.store.schema import Enrollment, SurveyResponse, Touchpoint

    touchpoint_id = read_token(engine.cipher, token)
    if touchpoint_id is None:
        return "invalid"
    with engine.db.connect() as conn:
        row = conn.execute(select(Touchpoint.journey, Touchpoint.step, Touchpoint.sent_at, Enrollment.version)
                           .join(Enrollment, Enrollment.id == Touchpoint.enrollment_id)
                           .where(Touchpoint.id == touchpoint_id)).first()
        answered = conn.execute(select(SurveyResponse.id).where(
            SurveyResponse.touchpoint_id == touchpoint_id)).first() is not None
    journey = engine.journey_version(row.journey, row.version) if row is not None else None
    try:
        action = journey.step(row.step).action if journey is not None else None
    except KeyError:
        action = None
    questionnaire = load_questionnaires().get(action.survey) if isinstance(action, Survey) else None
    if questionnaire is None or row.sent_at is None:
        return "invalid"
    if answered:
        return "answered"
    if engine.clock.now() > row.sent_at + engine.config.surveys.link_ttl:
        return "expired"
    return OpenSurvey(questionnaire, touchpoint_id)


def survey_router() -> "APIRouter":
    """``GET /s/{token}`` shows the questionnaire; ``POST /s/{token}`` records the answers."""
    from fastapi import APIRouter, Request
    from fastapi.responses import HTMLResponse
    from starlette.concurrency import run_in_threadpool

    from carepath.connectors.surveys.responses import record_response, target_of_touchpoint
    from carepath.plugins.web import web_context

    router = APIRouter()

    def engine_of(request: Request) -> Any:
        return web_context(request).engine

    def page(state: str) -> HTMLResponse:
        status, html = notice(state)
        return HTMLResponse(html, status_code=status)

    def form(survey: OpenSurvey, values: dict, problems: dict, status: int = 200) -> HTMLResponse:
        html = PAGES.get_template("survey.html").render(title=survey.questionnaire.title, values=values,
                                                       questionnaire=survey.questionnaire, problems=problems)
        return HTMLResponse(html, status_code=status)

    @router.get("/s/{token}", include_in_schema=False)
    async def show(token: str, request: Request) -> HTMLResponse:
        found = await run_in_threadpool(resolve, engine_of(request), token)
        return page(found) if isinstance(found, str) else form(found, {}, {})

    @router.post("/s/{token}", include_in_schema=False)
    async def answer(token: str, request: Request) -> HTMLResponse:
        engine = engine_of(request)
        found = await run_in_threadpool(resolve, engine, token)
        if isinstance(found, str):
            return page(found)
        values = {k: str(v) for k, v in (await request.form()).items()}
        answers, problems = check_answers(found.questionnaire, values)
        if problems:
            return form(found, values, problems, status=422)
        target = await run_in_threadpool(target_of_touchpoint, engine, found.touchpoint_id)
        recorded = await run_in_threadpool(record_response, engine, found.questionnaire, answers, target,
                                           provider="builtin", external_id=f"touchpoint:{found.touchpoint_id}")
        return page("thanks" if recorded.status == "stored" else "answered")

    return router

"""The Python way to declare a journey; it builds the same model as the YAML files.

    from carepath.definition.dsl import journey, step, before, after, on, send, task

    visit = journey(
        "outpatient-visit",
        enroll=enroll_on("appointment.booked"),
        anchors={"appointment": anchor(set_by=["appointment.booked"], field="start")},
        steps=[
            step("reminder", "pre_visit", before("appointment", "1d", at="18:00"),
                 send("visit_reminder", via=["wechat", "sms"]), category="transactional"),
        ],
    )
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Iterable

from carepath.definition.durations import CalendarDuration
from carepath.definition.model import (
    ENROLLED,
    AfterStep,
    Calendar,
    Idle,
    AnchorOffset,
    AnchorRule,
    Checkin,
    EnrollRule,
    Every,
    ExitRule,
    Journey,
    Missed,
    OnEvent,
    Reading,
    Send,
    Step,
    Survey,
    Tag,
    Task,
    Template,
)

Dur = str | timedelta | CalendarDuration  # "3d", "1mo", timedelta(days=3)


def journey(name: str, *, enroll: EnrollRule, steps: Iterable[Step], title: str = "", exit: ExitRule | None = None,
            anchors: dict[str, AnchorRule] | None = None, reentry: str = "after_exit", key: str | None = None,
            templates: Iterable[Template] = (), description: str = "", team: str | None = None,
            horizon: Dur | None = None, pause_on: Iterable[str] = (), resume_on: Iterable[str] = (),
            experiment: Any = None) -> Journey:
    """Declare a journey; ``team`` calls the patient when no channel delivered (default nursing).

    ``horizon``: how far ahead open-ended steps are planned; ``pause_on``/``resume_on``: events that pause and
    resume the programme's planned steps (an admission, the discharge); ``experiment``: one experiment over every
    message step (a ``JourneyExperiment`` or its dict; issue 23).
    """
    return Journey(name=name, title=title, description=description, enroll=enroll, exit=exit or ExitRule(),
                   anchors=anchors or {}, reentry=reentry, key=key, steps=list(steps),
                   templates={t.name: t for t in templates}, team=team, horizon=horizon,
                   pause_on=list(pause_on) or None, resume_on=list(resume_on) or None, experiment=experiment)


def enroll_on(*events: str, when: str | None = None) -> EnrollRule:
    """Enroll on any of ``events`` when the condition holds."""
    return EnrollRule(events=list(events), condition=when)


def exit_on(*events: str, when: str | None = None) -> ExitRule:
    return ExitRule(events=list(events), condition=when)


def anchor(set_by: Iterable[str], field: str | None = None, cancelled_by: Iterable[str] = ()) -> AnchorRule:
    return AnchorRule(set_by=list(set_by), field=field, cancelled_by=list(cancelled_by))


def step(id: str, stage: str, trigger: Any, action: Any, *, when: str | None = None, category: str | None = None,
         missed: str = "send", grace: Dur = "12h", over_cap: str = "defer", resend_on_move: bool = True,
         confirm_within: Dur | None = None, description: str | None = None, workdays_only: bool | None = None,
         experiment: Any = None) -> Step:
    """One step: trigger + optional condition (``when``) + action.

    ``resend_on_move=False``: a message already sent is not sent again when its anchor moves.
    ``confirm_within``: a message not confirmed delivered within this window falls back to the next channel.
    ``workdays_only``: only on official working days. A calendar step's ``category`` defaults to marketing.
    ``experiment``: variants and a holdout (an ``Experiment`` or its dict; issue 23).
    """
    data = dict(id=id, stage=stage, trigger=trigger, action=action, condition=when,
                missed=Missed(policy=missed, grace=grace), over_cap=over_cap, resend_on_move=resend_on_move,
                confirm_within=confirm_within, description=description, workdays_only=workdays_only)
    if experiment is not None:
        data["experiment"] = experiment
    if category is not None:
        data["category"] = category
    return Step(**data)


def on(event: str, delay: Dur = "0s", *, once_per: str | None = None) -> OnEvent:
    """Run on ``event``, once per value of the payload field ``once_per`` (default: the journey's key)."""
    return OnEvent(event=event, delay=delay, once_per=once_per)


def before(anchor: str, offset: Dur, *, at: str | None = None) -> AnchorOffset:
    return AnchorOffset(kind="before", anchor=anchor, offset=offset, at=at)


def after(anchor: str, offset: Dur = "0s", *, at: str | None = None) -> AnchorOffset:
    return AnchorOffset(kind="after", anchor=anchor, offset=offset, at=at)


def every(interval: Dur | None = None, *, rrule: str | None = None, anchor: str = ENROLLED, start: Dur = "0s",
          at: str | None = None, count: int | None = None, until: Dur | None = None) -> Every:
    """Repeat by ``interval`` or an RFC 5545 ``rrule``; without ``count`` or ``until``, until the exit (planned on
    the rolling horizon). ``at``: ``"09:00"`` or ``"patient.preferences.medication_time"``."""
    return Every(interval=interval, rrule=rrule, anchor=anchor, start=start, at=at, count=count, until=until)


def calendar(moment: str | None = None, *, date: str | None = None, at: str = "09:00") -> Calendar:
    """Each year on ``moment`` (``birthday``, ``中秋``, ``world-diabetes-day``...) or ``date`` (``"MM-DD"``) at ``at``."""
    return Calendar(moment=moment, date=date, at=at)


def after_step(step: str, delay: Dur, *, outcome: str = "sent", unless: str | None = None) -> AfterStep:
    """E.g. ``after_step("survey", "48h", unless="replied")``."""
    return AfterStep(step=step, delay=delay, outcome=outcome, unless=unless)


def idle(days: int) -> Idle:
    """Once per idle period: when the patient has not interacted for ``days`` (re-arms after the next interaction)."""
    return Idle(days=days)


def reading(*thresholds: str, count: int = 1, within: Dur = "7d") -> Reading:
    """Issue 19: e.g. ``reading("systolic_bp >= 140 mmHg", "diastolic_bp >= 90 mmHg", count=3, within="7d")``:
    when ``count`` readings crossed any threshold within the window (one episode at a time)."""
    return Reading(any=list(thresholds), count=count, within=within)


def checkin(name: str, via: Iterable[str], *, template: str, measure: str | None = None,
            keywords: Iterable[str] = ("打卡",)) -> Checkin:
    """Issue 19: a check-in prompt (its template sees ``checkin.link``); answered by a keyword or a number of
    ``measure``, on the check-in page or by a device reading."""
    return Checkin(checkin=name, via=list(via), template=template, measure=measure, keywords=list(keywords))


def send(template: str, via: Iterable[str], *, to: str | None = None) -> Send:
    """Send ``template`` through the first usable channel of ``via``; ``to``: ``patient``, ``guardian``, ``family``
    or ``patient+family`` (unset: the patient, or a minor's guardian)."""
    return Send(template=template, via=list(via), to=to)


def survey(name: str, via: Iterable[str], *, template: str = "survey_invitation", provider: str = "builtin") -> Survey:
    """A survey link sent with ``template`` (which sees ``survey.link``) through the first usable channel."""
    return Survey(survey=name, via=list(via), template=template, provider=provider)


def task(kind: str, *, team: str = "nursing", sla: Dur = "24h", detail: str | None = None,
         priority: str = "normal") -> Task:
    return Task(task=kind, team=team, sla=sla, detail=detail, priority=priority)


def tag(*add: str, remove: Iterable[str] = ()) -> Tag:
    return Tag(add=list(add), remove=list(remove))


def template(name: str, body: str, title: str = "") -> Template:
    return Template(name=name, body=body, title=title)

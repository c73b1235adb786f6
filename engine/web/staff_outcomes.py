"""Issue 23 on the staff page: ``/staff/outcomes``, the outcomes of each journey's experiments for hospital
leadership — the same figures as ``carepath report outcomes``, aggregate only, with bar charts.

Any logged-in member may look; no patient is named or counted alone: an arm with fewer than
:data:`MIN_SHOWN` patients is withheld, and so are the comparisons with it.
"""

# No ``from __future__ import annotations``: FastAPI reads the route's annotations at run time.
from datetime import timedelta
from typing import Any, Callable, Optional

#: the smallest group the page shows
MIN_SHOWN = 5
#: how far back assignments count on the page
DAYS = 365


def experiment_journeys_seen(engine: Any) -> list[str]:
    """Journeys with recorded assignments, or with an experiment in their current definition."""
    from sqlalchemy import distinct, select

    from carepath.runtime.experiments import experiment_journeys
    from carepath.store.schema_experiments import ExperimentAssignment

    with engine.db.connect() as conn:
        stored = set(conn.execute(select(distinct(ExperimentAssignment.journey))).scalars())
    return sorted(stored | experiment_journeys(engine.journeys.values()))


def page_figures(engine: Any, journey: str) -> dict[str, Any]:
    """The report of ``journey`` as the page shows it: small arms withheld."""
    from carepath.outcomes_report import outcomes_report

    now = engine.clock.now()
    with engine.db.connect() as conn:
        report = outcomes_report(conn, journey, now - timedelta(days=DAYS), now + timedelta(days=1), now,
                                 engine.cipher)
    labels = report.labels
    experiments = []
    for exp in report.experiments:
        shown = [a for a in exp.arms if a.patients >= MIN_SHOWN]
        names = {a.name for a in shown}
        keys = [k for k in labels if shown and k in shown[0].rates]
        experiments.append(dict(
            name=exp.experiment, arms=shown, withheld=len(exp.arms) - len(shown),
            rows=[dict(label=labels[k], cells=[a.rates[k] for a in shown]) for k in keys],
            comparisons=[c for c in exp.comparisons if c.arm in names and c.versus in names],
            warnings=exp.warnings))
    return dict(journey=journey, since=report.since.date(), experiments=experiments, minimum=MIN_SHOWN)


def outcomes_router(render: Callable[..., Any], current: Callable[..., Any], back: Callable[..., Any]) -> Any:
    """``GET /staff/outcomes[?journey=NAME]`` for a logged-in member."""
    from fastapi import APIRouter, Request
    from starlette.concurrency import run_in_threadpool

    router = APIRouter()

    @router.get("/staff/outcomes", include_in_schema=False)
    async def outcomes(request: Request, journey: Optional[str] = None) -> Any:
        engine, member = await run_in_threadpool(current, request)
        if member is None:
            return back("/staff")
        journeys = await run_in_threadpool(experiment_journeys_seen, engine)
        chosen = journey if journey in journeys else (journeys[0] if journeys else None)
        figures = await run_in_threadpool(page_figures, engine, chosen) if chosen else None
        return render("staff_outcomes.html", title="效果评估", member=member, journeys=journeys, chosen=chosen,
                      figures=figures)

    return router

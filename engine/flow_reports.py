"""What a journey's flow run reports to operations staff: its log lines, its markdown artifact, and the Prefect
events (failed and quarantined touchpoints, connectors down) that automations can react to."""

from collections import Counter, defaultdict
from datetime import datetime

from carepath.masking import mask_text
from carepath.runtime.dispatcher import DispatchReport
from carepath.runtime.maintenance import Notice

MAX_LISTED_FAILURES = 50  # rows in a run's artifact
MAX_FAILURE_EVENTS = 100  # Prefect events per run; the artifact lists the rest



def stage_log_line(stage: str, report: DispatchReport) -> str:
    """``pre_visit: 12 claimed — 10 sent, 2 deferred`` for the run log."""
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(report.outcomes.items())) or "nothing due"
    return f"{stage}: {report.claimed} claimed — {outcomes}"


def failure_rows(engine, journey: str, since: datetime) -> list[dict]:
    """Touchpoints of ``journey`` this worker failed or quarantined after ``since``, reasons masked."""
    from sqlalchemy import select

    from carepath.store.schema import Touchpoint

    q = (select(Touchpoint.id, Touchpoint.patient_id, Touchpoint.stage, Touchpoint.step, Touchpoint.channel,
                Touchpoint.status, Touchpoint.reason)
         .where(Touchpoint.journey == journey, Touchpoint.status.in_(("failed", "quarantined")),
                Touchpoint.claimed_by == engine.dispatcher.worker_id, Touchpoint.updated_at > since)
         .order_by(Touchpoint.id))
    with engine.db.connect() as conn:
        return [dict(touchpoint=r.id, patient=r.patient_id, stage=r.stage, step=r.step, channel=r.channel or "-",
                     status=r.status, reason=mask_text(r.reason or ""))
                for r in conn.execute(q)]


def connectors_down(reports: dict[str, DispatchReport]) -> dict[str, Counter]:
    """Channels that were tried in this run and delivered nothing: every attempt errored."""
    by_channel: dict[str, Counter] = defaultdict(Counter)
    for rep in reports.values():
        for (_, _, _, channel, outcome), n in rep.by_step.items():
            if channel not in ("-", "staff-task", "tag"):
                by_channel[channel][outcome] += n
    return {ch: c for ch, c in by_channel.items() if not c["sent"] and (c["retry"] or c["failed"])}


def artifact_markdown(title: str, reports: dict[str, DispatchReport], failures: list[dict]) -> str:
    """The run's artifact: counts per stage, step, channel and outcome, then the failures and why."""
    lines = [f"## {title}", "", "| stage | step | channel | outcome | count |", "|---|---|---|---|---|"]
    rows = [(stage, step, channel, outcome, n) for stage, rep in reports.items()
            for (_, _, step, channel, outcome), n in sorted(rep.by_step.items())]
    lines += [f"| {s} | {st} | {c} | {o} | {n} |" for s, st, c, o, n in rows] or ["| — | nothing due | | | 0 |"]
    if failures:
        lines += ["", f"### Failures ({len(failures)})", "",
                  "Each line is one touchpoint; `carepath patients timeline PATIENT` shows the patient's journey.", "",
                  "| touchpoint | patient | stage | step | channel | status | reason |", "|---|---|---|---|---|---|---|"]
        for f in failures[:MAX_LISTED_FAILURES]:
            reason = f["reason"].replace("|", "/")
            lines.append(f"| {f['touchpoint']} | {f['patient']} | {f['stage']} | {f['step']} | {f['channel']} "
                         f"| {f['status']} | {reason} |")
        if len(failures) > MAX_LISTED_FAILURES:
            lines.append(f"| … | | | | | | and {len(failures) - MAX_LISTED_FAILURES} more |")
    return "\n".join(lines)


def failure_notices(journey: str, failures: list[dict], down: dict[str, Counter]) -> list[Notice]:
    """Prefect events for a journey run: failed and quarantined touchpoints, connectors down."""
    notices = [Notice(event=f"carepath.touchpoint.{f['status']}", resource_id=f"carepath.touchpoint.{f['touchpoint']}",
                      labels={"carepath.journey": journey, "carepath.step": f["step"],
                              "carepath.channel": f["channel"], "carepath.patient-id": str(f["patient"])},
                      payload={"reason": f["reason"], "stage": f["stage"]})
               for f in failures[:MAX_FAILURE_EVENTS]]
    notices += [Notice(event="carepath.connector.down", resource_id=f"carepath.connector.{channel}",
                       labels={"carepath.journey": journey},
                       payload={"retries": counts["retry"], "failed": counts["failed"]})
                for channel, counts in sorted(down.items())]
    return notices


def quarantine_notices(journey: str, quarantined: list[dict]) -> list[Notice]:
    """Prefect events for touchpoints the due-now loop quarantined (reasons masked)."""
    return [Notice(event="carepath.touchpoint.quarantined", resource_id=f"carepath.touchpoint.{q['touchpoint_id']}",
                   labels={"carepath.journey": journey, "carepath.step": q["step"]},
                   payload={"reason": mask_text(q["reason"] or ""), "stage": q["stage"]})
            for q in quarantined]


def emit(notices: list[Notice]) -> int:
    """Send notices as Prefect events (related to the current flow run when there is one)."""
    from prefect.events import emit_event

    sent = 0
    for n in notices:
        resource = {"prefect.resource.id": n.resource_id, **n.labels}
        if emit_event(event=n.event, resource=resource, payload=dict(n.payload)) is not None:
            sent += 1
    return sent

"""Read-side summaries for people: the per-step table and one patient's timeline."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from rich import box
from rich.table import Table
from sqlalchemy import Connection, func, select

from carepath.masking import mask_name, mask_openid, mask_phone, mask_text
from carepath.runtime.family import related_labels
from carepath.runtime.policy import zone
from carepath.store.crypto import Cipher
from carepath.store.schema import Delivery, Enrollment, Event, Patient, StaffTask, Touchpoint

STAGE_ORDER = {"pre_visit": 0, "in_visit": 1, "post_visit": 2}
# how a delivery row reads in a timeline (the stored status when not listed)
DELIVERY_LABELS = {"unknown": "unknown (worker died during the call)",
                   "reconciled": "reconciled (provider had it)",
                   "not_found": "reconciled (provider never had it)"}
COLUMNS = ["sent", "delivered", "quiet", "cap", "skipped", "cancelled", "failed", "pending"]


@dataclass
class StepRow:
    stage: str
    step: str
    channel: str
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def report_days(since: date | None, until: date | None, tz: tzinfo, now: datetime,
                default_days: int = 30) -> tuple[datetime, datetime]:
    """A report's range as instants: from the start of day ``since`` to the start of day ``until`` in the
    hospital's zone ``tz``; by default the last ``default_days`` days there, today included (a survey
    answered at 07:00 in Shanghai is today's, whatever the server's own clock says)."""
    today = now.astimezone(tz).date()
    first = since or today - timedelta(days=default_days)
    end = until or today + timedelta(days=1)
    return (datetime.combine(first, time(0)).replace(tzinfo=tz), datetime.combine(end, time(0)).replace(tzinfo=tz))


def step_summary(conn: Connection) -> list[StepRow]:
    """Touchpoints per stage, step and channel, with deferrals by quiet hours and caps."""
    rows: dict[tuple[str, str, str], StepRow] = {}
    q = select(Touchpoint.stage, Touchpoint.step, Touchpoint.channel, Touchpoint.status, Touchpoint.reason,
               func.count()).group_by(Touchpoint.stage, Touchpoint.step, Touchpoint.channel, Touchpoint.status,
                                      Touchpoint.reason)
    for stage, step, channel, status, reason, n in conn.execute(q):
        row = rows.setdefault((stage, step, channel or "—"), StepRow(stage, step, channel or "—"))
        bucket = {"scheduled": "pending", "claimed": "pending"}.get(status, status)
        row.counts[bucket] += n
        reason = reason or ""
        if "quiet hours" in reason or "marketing window" in reason:
            row.counts["quiet"] += n
        if "daily cap" in reason:
            row.counts["cap"] += n
    return sorted(rows.values(), key=lambda r: (STAGE_ORDER.get(r.stage, 9), r.step, r.channel))


def step_table(rows: list[StepRow], title: str) -> Table:
    """Counts per step and channel, grouped by stage under a heading row; fits 100 columns."""
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 1),
                  collapse_padding=True)
    table.add_column("stage / step", no_wrap=True)
    table.add_column("channel", no_wrap=True)
    labels = {"quiet": "quiet\nhours", "cap": "daily\ncap", "delivered": "deliv-\nered",
              "cancelled": "can-\ncelled", "skipped": "skip-\nped", "pending": "pend-\ning"}
    for name in COLUMNS:
        table.add_column(labels.get(name, name), justify="right", no_wrap=True)
    totals: dict[str, int] = defaultdict(int)
    stage = None
    for r in rows:
        if r.stage != stage:
            stage = r.stage
            table.add_row(stage, style="bold")
        table.add_row(f"  {r.step}", r.channel, *[str(r.counts.get(c, 0) or "") for c in COLUMNS])
        for c in COLUMNS:
            totals[c] += r.counts.get(c, 0)
    table.add_section()
    table.add_row("total", "", *[str(totals[c]) for c in COLUMNS], style="bold")
    return table


def _local(dt: datetime | None, tz: str) -> str:
    return dt.astimezone(zone(tz)).strftime("%m-%d %H:%M") if dt else ""


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def timeline_data(conn: Connection, cipher: Cipher, patient_id: int) -> dict[str, Any] | None:
    """One patient's journey as plain data (contacts masked, times ISO 8601 UTC); ``None`` if unknown."""
    p = conn.execute(select(Patient.__table__).where(Patient.id == patient_id)).first()
    if p is None:
        return None
    profile = {"id": p.id, "name": mask_name(cipher.decrypt(p.name_enc)),
               "phone": mask_phone(cipher.decrypt(p.phone_enc)), "openid": mask_openid(cipher.decrypt(p.openid_enc)),
               "birth_date": p.birth_date.isoformat() if p.birth_date else None, "sex": p.sex,
               "conditions": p.conditions or [], "tags": p.tags or [], "tz": p.tz, "deceased": p.deceased}
    enrollments = [{"id": e.id, "journey": e.journey, "version": e.version, "status": e.status, "key": e.key,
                    "exit_reason": e.exit_reason}
                   for e in conn.execute(select(Enrollment.__table__).where(Enrollment.patient_id == patient_id))]
    # status: applied, resend (a fact already acted on), stale (older than the anchor's last change),
    # held (waiting for its patient or enrollment), expired; a held event's outcome tells held, then applied
    events = [{"occurred_at": _iso(e.occurred_at), "received_at": _iso(e.received_at), "type": e.type,
               "source_id": e.source_id, "status": e.status or "applied", "outcome": e.outcome}
              for e in conn.execute(select(Event.occurred_at, Event.received_at, Event.type, Event.source_id,
                                           Event.status, Event.outcome)
                                    .where(Event.patient_id == patient_id).order_by(Event.occurred_at, Event.id))]
    deliveries = defaultdict(list)
    for d in conn.execute(select(Delivery.touchpoint_id, Delivery.attempt, Delivery.channel, Delivery.status,
                                 Delivery.error_code, Delivery.cost)
                          .join(Touchpoint, Touchpoint.id == Delivery.touchpoint_id)
                          .where(Touchpoint.patient_id == patient_id).order_by(Delivery.touchpoint_id, Delivery.attempt)):
        deliveries[d.touchpoint_id].append({"attempt": d.attempt, "channel": d.channel, "status": d.status,
                                            "error_code": d.error_code, "cost": d.cost})
    related = related_labels(conn, cipher, patient_id)  # who received what (issue 19), masked
    touchpoints = [{"id": t.id, "journey": t.journey, "stage": t.stage, "step": t.step, "status": t.status,
                    "planned_at": _iso(t.planned_at), "due_at": _iso(t.due_at), "sent_at": _iso(t.sent_at),
                    "channel": t.channel, "reason": t.reason, "deliveries": deliveries.get(t.id, []),
                    "recipient": recipient_label(related.get(t.recipient)) if t.recipient else "patient"}
                   for t in conn.execute(select(Touchpoint.__table__).where(Touchpoint.patient_id == patient_id)
                                         .order_by(Touchpoint.due_at, Touchpoint.id))]
    from carepath.runtime.consent_ledger import ledger_json

    return {"patient": profile, "enrollments": enrollments, "events": events, "touchpoints": touchpoints,
            "tasks": task_rows(conn, patient=patient_id), "consents": ledger_json(conn, patient_id),
            "related_persons": list(related.values())}


def timeline_tables(conn: Connection, cipher: Cipher, patient_id: int) -> list[Table] | None:
    """One patient's journey: profile (masked), events, touchpoints with deliveries, staff tasks, the consent
    ledger."""
    data = timeline_data(conn, cipher, patient_id)
    if data is None:
        return None
    p = data["patient"]
    tz = p["tz"]

    def local(value: str | None) -> str:
        return _local(datetime.fromisoformat(value), tz) if value else ""

    profile = Table(title=f"patient {patient_id}", show_header=False)
    profile.add_row("name", p["name"])
    profile.add_row("phone", p["phone"] or "—")
    profile.add_row("wechat openid", p["openid"] or "—")
    profile.add_row("born / sex", f"{p['birth_date'] or '?'} / {p['sex'] or '?'}")
    profile.add_row("conditions / tags", f"{', '.join(p['conditions']) or '—'} / {', '.join(p['tags']) or '—'}")
    profile.add_row("time zone", tz)
    for e in data["enrollments"]:
        profile.add_row(f"enrollment {e['id']}", f"{e['journey']} v{e['version']} [{e['status']}] key {e['key'] or '—'}"
                        + (f", exit: {e['exit_reason']}" if e["exit_reason"] else ""))
    events = _table(f"events ({tz})", ["when", "received", "type", "source id", "status", "outcome"],
                    [[local(e["occurred_at"]), local(e["received_at"]), e["type"], e["source_id"], e["status"],
                      e["outcome"] or ""] for e in data["events"]])
    for r in data["related_persons"]:
        profile.add_row(f"related: {r['relationship']}", recipient_label(r) + "".join(
            f", {k}" for k in ("unsubscribed", "removed") if r[k]) + f" {r['phone'] or r['openid'] or ''}".rstrip())
    tps = _table(f"touchpoints ({tz})", ["step", "to", "planned", "due", "sent", "status", "deliveries", "reason"],
                 [[t["step"], t["recipient"], local(t["planned_at"]), local(t["due_at"]), local(t["sent_at"]),
                   t["status"], " ".join(_delivery(d) for d in t["deliveries"]), t["reason"] or ""]
                  for t in data["touchpoints"]])
    consents = _table(f"consents ({tz}; * in force)", ["when", "purpose", "channel", "", "via", "by", "reason"],
                      [[local(c["at"]), c["purpose"], c["channel"],
                        ("granted" if c["granted"] else "withdrawn") + (" *" if c["in_force"] else ""), c["via"],
                        c["recorded_by"] or c["source"] or "", c["reason"] or ""] for c in data["consents"]])
    return [profile, events, tps, task_table(data["tasks"], f"staff tasks ({tz})"), consents]


def recipient_label(person: dict[str, Any] | None) -> str:
    """``mother 王**`` (``guardian`` added for a guardian): a related person as surfaces show them, masked."""
    if person is None:
        return "related person (unknown)"
    role = person["relationship"] + (" (guardian)" if person["guardian"] and person["relationship"] != "guardian"
                                     else "")
    return f"{role} {person['name']}".strip()


def _delivery(d: dict[str, Any]) -> str:
    """``#1 sms:sent [2 segments, cost 2]``: one provider call, its error code and what it cost (SMS segments)."""
    return (f"#{d['attempt']} {d['channel']}:{DELIVERY_LABELS.get(d['status'], d['status'])}"
            + (f"({d['error_code']})" if d["error_code"] else "")
            + (f" [{d['cost']:g} segments, cost {d['cost']:g}]" if d["cost"] else ""))


# Columns that must stay on one line (ids, times, statuses): the free-text ones wrap around them.
_NO_WRAP = {"next deadline", "id", "patient", "when", "received", "planned", "due", "sent", "created", "SLA due", "status", "stage", "channel",
            "type"}


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    """A compact table (no vertical rules) that fits 100 columns with room for the free text."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column in _NO_WRAP)
    for row in rows:
        table.add_row(*row)
    return table


def _filtered(q, model, patient: int | None, status: str | None, journey: str | None, step: str | None):  # noqa: ANN001
    if patient is not None:
        q = q.where(model.patient_id == patient)
    if status:
        q = q.where(model.status == status)
    if journey:
        q = q.where(Touchpoint.journey == journey)
    if step:
        q = q.where(Touchpoint.step == step)
    return q


def touchpoint_rows(conn: Connection, *, patient: int | None = None, status: str | None = None,
                    journey: str | None = None, step: str | None = None, limit: int | None = None) -> list[dict]:
    """Touchpoints, newest due first, with the patient's time zone (no contact data)."""
    q = select(Touchpoint.id, Touchpoint.patient_id, Touchpoint.journey, Touchpoint.stage, Touchpoint.step,
               Touchpoint.status, Touchpoint.due_at, Touchpoint.sent_at, Touchpoint.channel, Touchpoint.attempts,
               Touchpoint.reason, Patient.tz).join(Patient, Patient.id == Touchpoint.patient_id)
    q = _filtered(q, Touchpoint, patient, status, journey, step).order_by(Touchpoint.due_at.desc(),
                                                                          Touchpoint.id.desc()).limit(limit)
    return [{**r._asdict(), "due_at": _iso(r.due_at), "sent_at": _iso(r.sent_at)} for r in conn.execute(q)]


def task_rows(conn: Connection, *, patient: int | None = None, status: str | None = None,
              journey: str | None = None, step: str | None = None, limit: int | None = None,
              teams: tuple[str, ...] | None = None) -> list[dict]:
    """Staff tasks, newest first, with the journey and step that opened them (``teams``: only theirs)."""
    from carepath.runtime.work_queue import OPEN_STATUSES, next_deadline

    q = select(StaffTask.id, StaffTask.patient_id, Touchpoint.journey, Touchpoint.step, StaffTask.kind,
               StaffTask.team, StaffTask.status, StaffTask.created_at, StaffTask.first_response_due_at,
               StaffTask.sla_due_at, StaffTask.claimed_by, StaffTask.detail, StaffTask.resolution,
               Patient.tz).join(Patient, Patient.id == StaffTask.patient_id) \
        .outerjoin(Touchpoint, Touchpoint.id == StaffTask.touchpoint_id)
    if teams is not None:
        q = q.where(StaffTask.team.in_(teams))
    q = _filtered(q, StaffTask, patient, status, journey, step).order_by(StaffTask.created_at.desc(),
                                                                         StaffTask.id.desc()).limit(limit)
    rows = []
    for r in conn.execute(q):
        deadline, due = next_deadline(r.claimed_by, r.first_response_due_at, r.sla_due_at) \
            if r.status in OPEN_STATUSES else (None, None)
        rows.append({**r._asdict(), "created_at": _iso(r.created_at), "sla_due_at": _iso(r.sla_due_at),
                     "first_response_due_at": _iso(r.first_response_due_at), "deadline": deadline,
                     "deadline_at": _iso(due)})
    return rows


def event_rows(conn: Connection, *, status: str | None = None, patient: int | None = None, source: str | None = None,
               type_: str | None = None, limit: int | None = None) -> list[dict]:
    """Stored events, newest received first, with their status and outcome (masked; no payload)."""
    q = select(Event.id, Event.patient_id, Event.type, Event.source, Event.source_id, Event.occurred_at,
               Event.received_at, Event.status, Event.outcome, Event.received_via)
    for column, value in ((Event.status, status), (Event.patient_id, patient), (Event.source, source),
                          (Event.type, type_)):
        if value is not None:
            q = q.where(column == value)
    q = q.order_by(Event.received_at.desc(), Event.id.desc()).limit(limit)
    return [{**r._asdict(), "occurred_at": _iso(r.occurred_at), "received_at": _iso(r.received_at),
             "outcome": mask_text(r.outcome or "")} for r in conn.execute(q)]


def event_table(rows: list[dict], title: str) -> Table:
    """Events as a table; times in UTC."""
    return _table(title, ["id", "patient", "received", "type", "source", "source id", "status", "outcome"],
                  [[str(r["id"]), str(r["patient_id"] or "—"), _local(_parse(r["received_at"]), "UTC"), r["type"],
                    r["source"] + (f" (via {r['received_via']})" if r.get("received_via") else ""), r["source_id"],
                    r["status"], r["outcome"]] for r in rows])


def touchpoint_table(rows: list[dict], title: str) -> Table:
    """Touchpoints as a table; times in each patient's own zone."""
    return _table(title, ["id", "patient", "journey", "step", "status", "due", "sent", "channel", "reason"],
                  [[str(r["id"]), str(r["patient_id"]), r["journey"], r["step"], r["status"],
                    _local(_parse(r["due_at"]), r["tz"]), _local(_parse(r["sent_at"]), r["tz"]), r["channel"] or "",
                    r["reason"] or ""] for r in rows])


def task_table(rows: list[dict], title: str) -> Table:
    """Staff tasks as a table; times in each patient's own zone."""
    from carepath.runtime.work_queue import DEADLINE_LABELS

    return _table(title, ["id", "patient", "kind", "team", "status", "journey / step", "created", "next deadline",
                          "detail"],
                  [[str(r["id"]), str(r["patient_id"]), r["kind"], r["team"],
                    r["status"] + (f" ({r['resolution']})" if r.get("resolution") else ""),
                    f"{r['journey'] or '—'} / {r['step'] or '—'}", _local(_parse(r["created_at"]), r["tz"]),
                    f"{DEADLINE_LABELS[r['deadline']]}\n{_local(_parse(r['deadline_at']), r['tz'])}"
                    if r["deadline"] else "", r["detail"] or ""] for r in rows])


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None

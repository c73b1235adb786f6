"""Read-side summaries for people: the per-step table and one patient's timeline."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from rich.table import Table
from sqlalchemy import Connection, func, select

from carepath.masking import mask_name, mask_openid, mask_phone
from carepath.runtime.policy import zone
from carepath.store.crypto import Cipher
from carepath.store.schema import Delivery, Enrollment, Event, Patient, StaffTask, Touchpoint

STAGE_ORDER = {"pre_visit": 0, "in_visit": 1, "post_visit": 2}
COLUMNS = ["sent", "delivered", "quiet", "cap", "skipped", "cancelled", "failed", "pending"]


@dataclass
class StepRow:
    stage: str
    step: str
    channel: str
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))


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
    table = Table(title=title, header_style="bold", show_lines=False)
    for name in ["stage", "step", "channel"]:
        table.add_column(name)
    labels = {"quiet": "quiet-h.\ndeferred", "cap": "cap\ndeferred", "delivered": "deliv-\nered",
              "cancelled": "can-\ncelled"}
    for name in COLUMNS:
        table.add_column(labels.get(name, name), justify="right")
    totals: dict[str, int] = defaultdict(int)
    for r in rows:
        table.add_row(r.stage, r.step, r.channel, *[str(r.counts.get(c, 0) or "") for c in COLUMNS])
        for c in COLUMNS:
            totals[c] += r.counts.get(c, 0)
    table.add_section()
    table.add_row("total", "", "", *[str(totals[c]) for c in COLUMNS], style="bold")
    return table


def timeline_tables(conn: Connection, cipher: Cipher, patient_id: int) -> list[Table] | None:
    """One patient's journey: profile (masked), events, touchpoints with deliveries, staff tasks."""
    p = conn.execute(select(Patient.__table__).where(Patient.id == patient_id)).first()
    if p is None:
        return None
    tz = zone(p.tz)

    def local(dt) -> str:
        return dt.astimezone(tz).strftime("%m-%d %H:%M") if dt else ""

    profile = Table(title=f"patient {patient_id}", show_header=False)
    profile.add_row("name", mask_name(cipher.decrypt(p.name_enc)))
    profile.add_row("phone", mask_phone(cipher.decrypt(p.phone_enc)) or "—")
    profile.add_row("wechat openid", mask_openid(cipher.decrypt(p.openid_enc)) or "—")
    profile.add_row("born / sex", f"{p.birth_date or '?'} / {p.sex or '?'}")
    profile.add_row("conditions / tags", f"{', '.join(p.conditions or []) or '—'} / {', '.join(p.tags or []) or '—'}")
    profile.add_row("time zone", p.tz)
    for e in conn.execute(select(Enrollment.__table__).where(Enrollment.patient_id == patient_id)):
        profile.add_row(f"enrollment {e.id}", f"{e.journey} v{e.version} [{e.status}] key {e.key or '—'}"
                        + (f", exit: {e.exit_reason}" if e.exit_reason else ""))

    events = Table(title=f"events ({p.tz})")
    for col in ["when", "type", "source id", "outcome"]:
        events.add_column(col)
    for e in conn.execute(select(Event.occurred_at, Event.type, Event.source_id, Event.outcome)
                          .where(Event.patient_id == patient_id).order_by(Event.occurred_at)):
        events.add_row(local(e.occurred_at), e.type, e.source_id, e.outcome or "")

    deliveries = defaultdict(list)
    for d in conn.execute(select(Delivery.touchpoint_id, Delivery.channel, Delivery.status, Delivery.error_code,
                                 Delivery.cost)
                          .join(Touchpoint, Touchpoint.id == Delivery.touchpoint_id)
                          .where(Touchpoint.patient_id == patient_id).order_by(Delivery.id)):
        deliveries[d.touchpoint_id].append(f"{d.channel}:{d.status}" + (f"({d.error_code})" if d.error_code else "")
                                           + (f" [{d.cost:g} segments, cost {d.cost:g}]" if d.cost else ""))
    tps = Table(title=f"touchpoints ({p.tz})")
    for col in ["stage", "step", "planned", "due", "sent", "status", "channel", "deliveries", "reason"]:
        tps.add_column(col)
    for t in conn.execute(select(Touchpoint.__table__).where(Touchpoint.patient_id == patient_id)
                          .order_by(Touchpoint.due_at, Touchpoint.id)):
        tps.add_row(t.stage, t.step, local(t.planned_at), local(t.due_at), local(t.sent_at), t.status,
                    t.channel or "", " ".join(deliveries.get(t.id, [])), t.reason or "")

    tasks = Table(title="staff tasks")
    for col in ["created", "kind", "team", "status", "SLA due", "detail"]:
        tasks.add_column(col)
    for s in conn.execute(select(StaffTask.__table__).where(StaffTask.patient_id == patient_id)):
        tasks.add_row(local(s.created_at), s.kind, s.team, s.status, local(s.sla_due_at), s.detail or "")
    return [profile, events, tps, tasks]

"""Reading portraits: one query per batch (rows, counts with their window sums, the sensitive consent), attached to
loaded patients at once or on first read (the read side of :mod:`carepath.runtime.portrait`)."""

from __future__ import annotations

import json
from collections import defaultdict
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Mapping

from sqlalchemy import Connection, bindparam, func, select

from carepath.definition.portrait import WINDOWS, KindFacts, PortraitView
from carepath.store.statements import among, is_postgres
from carepath.runtime.policy import zone
from carepath.store.crypto import Cipher
from carepath.store.driver import DriverQuery
from carepath.store.schema import Consent, Portrait, PortraitCount, PortraitDay

SENSITIVE_PURPOSE = "sensitive"  # the consent purpose for processing sensitive personal information


def _window_sum(days: int) -> Any:
    return (select(func.coalesce(func.sum(PortraitDay.n), 0))
            .where(PortraitDay.patient_id == PortraitCount.patient_id, PortraitDay.kind == PortraitCount.kind,
                   PortraitDay.day >= bindparam(f"d{days}"))
            .correlate(PortraitCount).scalar_subquery().label(f"n{days}"))


_CONSENT = (select(Consent.granted).where(Consent.patient_id == Portrait.patient_id,
                                          Consent.purpose == SENSITIVE_PURPOSE, Consent.channel == "*")
            .order_by(Consent.at.desc(), Consent.id.desc()).limit(1).correlate(Portrait).scalar_subquery())
_LOAD_ALL = (select(Portrait.patient_id, Portrait.facts_enc, Portrait.admitted, Portrait.last_interaction_at,
                    Portrait.programmes, Portrait.segments, _CONSENT.label("consented"), PortraitCount.kind,
                    PortraitCount.total, PortraitCount.last_at, *(_window_sum(d) for d in WINDOWS))
             .outerjoin(PortraitCount, PortraitCount.patient_id == Portrait.patient_id))
#: the one query a batch makes: portrait rows, their counts with the window sums, the sensitive consent
#: (by whether the database is PostgreSQL: there the ids are one array, see ``among``); SQLite runs it on the
#: driver's cursor (:class:`~carepath.store.driver.DriverQuery`: SQLAlchemy's result handling cost more than SQLite)
_LOADS = {pg: DriverQuery(_LOAD_ALL.where(among(Portrait.patient_id, "ids", pg))) for pg in (False, True)}


def load_portraits(conn: Connection, cipher: Cipher, zones: Mapping[int, str], now: datetime,
                   sensitive: Callable[[str], bool] | None = None) -> dict[int, PortraitView]:
    """Portraits of the patients ``{id: zone name}``, with segment membership and the sensitive consent:
    one query per time zone (patient-local days), in chunks of 5000 patients."""
    by_zone: dict[str, list[int]] = defaultdict(list)
    for pid, tz in zones.items():
        by_zone[tz].append(pid)
    out: dict[int, PortraitView] = {}
    for tz_name, ids in by_zone.items():
        tz = zone(tz_name)
        today = now.astimezone(tz).date()
        windows = {f"d{d}": today - timedelta(days=d - 1) for d in WINDOWS}
        for start in range(0, len(ids), 5000):
            rows: dict[int, list] = defaultdict(list)
            for r in _LOADS[is_postgres(conn)].rows(conn, {"ids": ids[start:start + 5000], **windows}):
                rows[r[0]].append(r)
            for pid, found in rows.items():
                _, facts_enc, admitted, last_interaction_at, programmes, segments, consented = found[0][:7]
                kinds = {kind: KindFacts(total, last_at, dict(zip(WINDOWS, sums)))
                         for _, _, _, _, _, _, _, kind, total, last_at, *sums in found if kind is not None}
                out[pid] = PortraitView(
                    kinds=kinds, load_facts=_lazy(cipher, facts_enc), admitted=bool(admitted),
                    programmes=tuple(programmes or ()), segments=tuple(segments or ()), today=today,
                    sensitive=sensitive, consented=bool(consented), last_interaction_at=last_interaction_at, tz=tz)
        for pid in ids:  # patients with no facts yet: an empty portrait of their day
            out.setdefault(pid, PortraitView(today=today, sensitive=sensitive, tz=tz))
    return out


def _lazy(cipher: Cipher, token: str | None) -> Callable[[], dict]:
    return lambda: json.loads(cipher.decrypt(token) or "{}")


def from_stored_row(view: PortraitView) -> bool:
    """Whether this portrait was read from the patient's stored row (a patient without one gets an empty view,
    which leaves out facts counted before the row exists and the sensitive consent)."""
    return view._load_facts is not None


def with_portraits(conn: Connection, cipher: Cipher, patients: dict[int, Any], now: datetime,
                   sensitive: Callable[[str], bool] | None = None) -> dict[int, Any]:
    """``patients`` (loaded :class:`~carepath.runtime.patients.PatientRecord` by id) with their portraits attached
    to ``patient.portrait`` (one bulk query per time zone)."""
    found = load_portraits(conn, cipher, {pid: p.view.tz for pid, p in patients.items()}, now, sensitive)
    for pid, p in patients.items():
        # the views were just loaded for this caller alone: the portrait is attached in place (no copies on the
        # dispatcher's hot path)
        object.__setattr__(p.view, "portrait", _of_record(found[pid], p))
    return patients


def _of_record(portrait: PortraitView, record: Any) -> PortraitView:
    return portrait.with_record_codes(record.view.conditions)


def with_portraits_on_read(db: Any, cipher: Cipher, patients: Iterable[Any], now: datetime,
                           sensitive: Callable[[str], bool] | None = None, *, conn: Connection | None = None) -> None:
    """Give each of ``patients`` (:class:`~carepath.runtime.patients.PatientRecord` of loaded views) the portrait
    :func:`with_portraits` would attach, read from ``db`` (a read-only connection, outside any transaction of the
    caller's) the first time something reads it; or, given ``conn``, read in that connection (the caller's
    transaction, still open whenever the portrait is read: ingest reads it before the event's transaction ends)."""
    from carepath.runtime.patients import PortraitOnRead
    from carepath.store.sqlite_gate import reading

    def later(record: Any) -> PortraitOnRead:
        # The closure keeps what it reads of the view, not the record: a record whose view held a closure holding
        # the record would be a reference cycle per patient, freed only by the cyclic garbage collector.
        pid, tz, codes = record.view.id, record.view.tz, tuple(record.view.conditions)

        def load() -> PortraitView:
            with reading(db) if conn is None else nullcontext(conn) as reader:
                return load_portraits(reader, cipher, {pid: tz}, now, sensitive)[pid].with_record_codes(codes)
        return PortraitOnRead(load)

    for record in patients:
        object.__setattr__(record.view, "portrait", later(record))

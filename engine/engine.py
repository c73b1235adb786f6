"""The engine facade: one object holding the database, clock, policy, journeys and channels."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

from pydantic import ValidationError
from sqlalchemy import Engine as SAEngine
from sqlalchemy import create_engine, select
from sqlalchemy.pool import NullPool

from carepath.runtime.clock import Clock, SystemClock
from carepath.runtime.dispatcher import DispatchReport, Dispatcher
from carepath.store.statements import among
from carepath.definition.catalog import unknown_type_problem
from carepath.definition.events import EventIn, EventRejected, PatientIn, check_event
from carepath.runtime.ingest import IngestResult, Ingestor
from carepath.definition.model import Journey, Template
from carepath.runtime.patients import upsert_patient, upsert_patients_bulk
from carepath.runtime.planner import anchor_values
from carepath.plugins.contracts import Channel, Connector
from carepath.runtime.policy import Policy
from carepath.runtime.versions import store_version
from carepath.runtime.wakeup import Wakeup
from carepath.runtime.scheduling import insert_enrollments, plan_new_enrollments
from carepath.runtime.horizon import plan_new as plan_new_horizon  # issue 19
from carepath.runtime.preferences import apply as apply_preferences  # issue 19
from carepath.settings import Settings
from carepath.store import open_store
from carepath.store.personal_data import protect_payload
from carepath.store.schema import JourneyVersion, Patient

log = logging.getLogger(__name__)
#: the time zones of a bulk enrollment's patients (built once; SQLite and PostgreSQL)
_PATIENT_TZS = {pg: select(Patient.id, Patient.tz).where(among(Patient.id, "ids", pg)) for pg in (False, True)}

if TYPE_CHECKING:
    from carepath.config import CarepathConfig


class Engine:
    """Runs journeys against one database.

    ``journeys`` defaults to those enabled in carepath.toml (``[journeys]``)
    and ``channels`` to the configured connector instances. The clock is injected
    so tests and simulations can run months in seconds.
    """

    def __init__(self, database_url: str | None = None, *, journeys: Iterable[Journey] | None = None,
                 channels: Mapping[str, Channel] | None = None, templates: Mapping[str, Template] | None = None,
                 clock: Clock | None = None, policy: Policy | None = None, settings: Settings | None = None,
                 migrate: bool = True, worker_id: str | None = None, max_attempts: int = 5,
                 lease: timedelta = timedelta(minutes=5), config: "CarepathConfig | None" = None,
                 connectors: Mapping[str, Connector] | None = None) -> None:
        self.settings = settings or Settings()
        store = open_store(self.settings, database_url, migrate=migrate)
        self.database_url, self.db, self.cipher = store.url, store.db, store.cipher
        self.created_key = store.created_key
        self.clock: Clock = clock or SystemClock()
        self.policy = policy or Policy()
        if journeys is None:
            from carepath.definition.registry import enabled_journeys

            journeys = enabled_journeys().values()
        self.journeys: dict[str, Journey] = {j.name: j for j in journeys}
        if templates is None:
            from carepath.definition.registry import plugin_templates

            templates = plugin_templates()
        self.templates: dict[str, Template] = dict(templates)
        from carepath.config import CarepathConfig, build_channels, build_connectors, load_config

        if config is None:
            config = load_config() if channels is None or connectors is None else CarepathConfig()
        #: teams, staff and survey settings of ``carepath.toml`` (the defaults when there is none)
        self.config = config
        #: the address ``carepath serve`` bound its web hooks app to (links default to it), once it has
        self.served_at: str | None = None
        if channels is None:
            from carepath.plugins.manager import get_plugin_manager

            channels = build_channels(config, get_plugin_manager())
        self.channels: dict[str, Channel] = dict(channels)
        if connectors is None:
            connectors = {n: c for n, c in build_connectors(config).items() if n not in self.channels}
        #: every connector by name: the channels, HIS sources and survey providers
        self.connectors: dict[str, Connector] = {**connectors, **self.channels}
        for connector in self.connectors.values():
            connector.bind(self)
        self._versions: dict[tuple[str, str], Journey] = {(j.name, j.version): j for j in self.journeys.values()}
        self._remembered: set[tuple[str, str]] = set()
        self._sqlite_reader: SAEngine | None = None
        self._load_stored_versions()
        from carepath.plugins.manager import get_plugin_manager

        self.plugins = get_plugin_manager()
        self.ingestor = Ingestor(self)
        self.dispatcher = Dispatcher(self, worker_id=worker_id, max_attempts=max_attempts, lease=lease)
        #: due-now wake-ups: ingest signals them, ``carepath serve``'s due-now dispatchers wait on them
        self.wakeup = Wakeup()

    # --------------------------------------------------------------- journeys

    def journey_version(self, name: str, version: str) -> Journey | None:
        """The journey an enrollment is pinned to: current, stored ones read at open, else read now.

        Callers hold a write transaction (on SQLite, the database's one write lock), so a
        version missing from memory is read on the non-locking reader, never through ``self.db``.
        """
        key = (name, version)
        if key not in self._versions:
            with self._reader().connect() as conn:
                definition = conn.execute(select(JourneyVersion.definition).where(
                    JourneyVersion.journey == name, JourneyVersion.version == version)).scalar()
            if definition is None:
                return None
            loaded = self._load_stored(name, version, definition)
            if loaded is None:
                return None
            self._versions[key] = loaded
        return self._versions[key]

    def _reader(self) -> SAEngine:
        """Where stored versions are read: on SQLite a plain connection that takes no write lock
        (``self.db`` starts every transaction with BEGIN IMMEDIATE); on PostgreSQL ``self.db``."""
        if self.db.dialect.name != "sqlite":
            return self.db
        if self._sqlite_reader is None:
            self._sqlite_reader = create_engine(self.db.url, poolclass=NullPool, connect_args={"timeout": 30})
        return self._sqlite_reader

    def _load_stored_versions(self) -> None:
        """Read every stored version once, at open: enrollments stay pinned to old ones after an edit."""
        with self._reader().connect() as conn:
            rows = conn.execute(select(JourneyVersion.journey, JourneyVersion.version,
                                       JourneyVersion.definition)).all()
        for name, version, definition in rows:
            if (name, version) not in self._versions:
                loaded = self._load_stored(name, version, definition)
                if loaded is not None:
                    self._versions[(name, version)] = loaded

    @staticmethod
    def _load_stored(name: str, version: str, definition: dict) -> Journey | None:
        try:
            return Journey.model_validate(definition)
        except ValidationError as exc:
            log.warning("stored journey %s@%s does not load; enrollments pinned to it are not run: %s",
                        name, version, exc)
            return None

    def remember_version(self, conn, journey: Journey) -> None:
        """Store a journey version the first time an enrollment pins it."""
        key = (journey.name, journey.version)
        if key in self._remembered:
            return
        store_version(conn, journey, self.clock.now())
        self._remembered.add(key)

    # --------------------------------------------------------------- patients

    def upsert_patient(self, record: PatientIn) -> int:
        """Insert or update a patient; events held for this patient are applied (oldest first)."""
        now = self.clock.now()
        with self.db.begin() as conn:
            patient_id = upsert_patient(conn, self.cipher, record, now)
            if record.preferences:  # issue 19: merged into the stored ones, what they move re-timed
                apply_preferences(conn, self, patient_id, record.preferences, now, actor="api")
            released = self.ingestor.release_for_patients(
                conn, {h: patient_id for h in self.cipher.lookup_hashes(record.mrn)}, now)
        self._route(released.turns)
        return patient_id

    def upsert_patients(self, records: Sequence[PatientIn]) -> list[int]:
        now = self.clock.now()
        with self.db.begin() as conn:
            ids = upsert_patients_bulk(conn, self.cipher, list(records), now)
            for record, patient_id in zip(records, ids):  # issue 19
                if record.preferences:
                    apply_preferences(conn, self, patient_id, record.preferences, now, actor="api")
            released = self.ingestor.release_for_patients(conn, {h: pid for r, pid in zip(records, ids)
                                                                 for h in self.cipher.lookup_hashes(r.mrn)}, now)
        self._route(released.turns)
        return ids

    def _route(self, turns: list[int]) -> None:
        """Issue 21: the intent step (answers, tasks) for conversation turns just committed."""
        if turns:
            from carepath.runtime.conversations.routing import route_turns

            route_turns(self, turns)

    # ------------------------------------------------------------------ events

    def ingest(self, event: EventIn, *, dispatch_urgent: bool = True, received_via: str | None = None) -> IngestResult:
        """Store an event once and apply it; urgent ``on`` steps are dispatched inline.

        Raises :class:`~carepath.definition.events.EventRejected`, storing nothing, for an event
        outside this installation's limits or of a type the event catalogue does not know (a typo such as
        ``appointment.bokked`` must not be stored and silently never acted on). Personal data in the stored
        payload is encrypted. ``received_via`` records who delivered it (``events-api:<system>``,
        ``hook:<connector>``, ...).
        """
        event = self.admit(event)
        result = self.ingestor.ingest(event, received_via)
        self.after_ingest(event, result, dispatch_urgent=dispatch_urgent)
        return result

    def admit(self, event: EventIn) -> EventIn:
        """The event as stored: checked against the limits and the catalogue, its personal data encrypted.

        Raises :class:`~carepath.definition.events.EventRejected` for an event refused at the door."""
        event = check_event(event, self.settings.event_limits())
        unknown = unknown_type_problem(event.type)
        if unknown is not None:
            raise EventRejected("type", unknown)
        return event.with_stored_payload(protect_payload(event.stored_payload(), self.cipher,
                                                         self.settings.event_private_paths,
                                                         scan_text=self.settings.event_scan_text))

    def after_ingest(self, event: EventIn, result: IngestResult, *, dispatch_urgent: bool = True) -> None:
        """What follows an event's commit: plugins told, conversation turns routed, urgent steps sent."""
        if not result.duplicate:
            self.plugins.notify_event(event)
        self._route(result.turns)  # issue 21: the intent step, after the event is committed
        if dispatch_urgent and result.urgent_touchpoints:
            self.dispatcher.run_batch(ids=result.urgent_touchpoints, limit=len(result.urgent_touchpoints))
        if result.due_now:  # due-now dispatchers (carepath serve) need not wait for the schedule
            self.wakeup.announce(self.db, result.due_now)

    def ingest_many(self, events: Sequence[EventIn], *, dispatch_urgent: bool = True,
                    received_via: str | None = None,
                    before: Callable[[EventIn], None] | None = None,
                    isolated: bool = True) -> list["IngestResult | Exception"]:
        """Ingest many events in one transaction, each under its own savepoint (see
        :func:`carepath.runtime.batch_ingest.ingest_batch`): per event its result, or the error that left it out
        (``isolated=False``: no savepoints, the first error raises and nothing of the batch is kept)."""
        from carepath.runtime.batch_ingest import ingest_batch

        return ingest_batch(self, events, dispatch_urgent=dispatch_urgent, received_via=received_via, before=before,
                            isolated=isolated)

    def enroll_many(self, journey_name: str, items: Sequence[tuple[int, Mapping[str, datetime | None]]],
                    *, key: str | None = None, context: Mapping[str, object] | None = None) -> int:
        """Enroll many patients at once with their anchors (bulk import, benchmarks); returns touchpoints planned.

        ``context`` plays the enrolling event's payload for conditions and templates (``event.*``).
        """
        if len(items) > 5000:  # keep each statement's parameter list within SQLite's limits
            return sum(self.enroll_many(journey_name, items[i:i + 5000], key=key, context=context)
                       for i in range(0, len(items), 5000))
        journey = self.journeys[journey_name]
        now = self.clock.now()
        with self.db.begin() as conn:
            self.remember_version(conn, journey)
            stored = [{k: v.isoformat() if v else None for k, v in anchors.items()} for _, anchors in items]
            event = json.dumps(dict(context or {}))
            ids = insert_enrollments(conn, [(pid, journey.name, journey.version, key, "active", json.dumps(a), event,
                                             now) for (pid, _), a in zip(items, stored)])
            tzs = dict(conn.execute(_PATIENT_TZS[conn.dialect.name == "postgresql"],
                                    {"ids": list({pid for pid, _ in items})}).all())
            plan_items = [(eid, pid, tzs[pid], anchor_values(a, now)) for eid, (pid, _), a in zip(ids, items, stored)]
            planned = plan_new_enrollments(conn, plan_items, journey, now=now, policy=self.policy)
            return planned + plan_new_horizon(conn, self, ids, journey, now)  # issue 19

    # --------------------------------------------------------------- dispatch

    def dispatch_due(self, *, journey: str | None = None, stage: str | None = None, batch: int = 500,
                     max_batches: int | None = None) -> DispatchReport:
        """Dispatch everything due now, batch after batch, until nothing is left (database outages ridden out)."""
        return self.dispatcher.dispatch_due(journey=journey, stage=stage, batch=batch, max_batches=max_batches)

    def close(self) -> None:
        self.wakeup.stop()
        self.db.dispose()
        if self._sqlite_reader is not None:
            self._sqlite_reader.dispose()


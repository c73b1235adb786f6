"""The per-event reads moved onto the driver's cursor for the simulation's hot path (branch ``sim9``) return what
the SQLAlchemy statements they replace return: the same rows, the same values, the same types (datetimes aware,
JSON decoded), on SQLite and on PostgreSQL."""

from __future__ import annotations

from sqlalchemy import bindparam, select

from carepath.runtime import daily_load, replan, scheduling
from carepath.runtime.conversations import turns
from carepath.runtime.held import _HELD_FOR_EPISODE, held_for_episode
from carepath.runtime.ingest_reads import (ENROLLMENT_BY_ID, ENROLLMENT_BY_ID_Q, ENROLLMENT_STATUSES,
                                           ENROLLMENT_STATUSES_Q, EPISODE_KNOWN, EPISODE_KNOWN_Q, EPISODE_STATUSES,
                                           EPISODE_STATUSES_Q, STEPS_OF, STEPS_OF_IDS)
from carepath.store.conversation_schema import ConversationTurn
from carepath.store.schema import Enrollment, JourneyVersion, Patient, Touchpoint
from tests.engine import helpers as h
from tests.engine.test_batch_ingest import JOURNEY
from tests.engine.test_event_semantics import slot

#: the expanding-``IN`` forms the list-bound reads replaced
_STORED = select(JourneyVersion.journey, JourneyVersion.version).where(
    JourneyVersion.journey.in_(bindparam("names", expanding=True)))
_PINNED = select(Enrollment.id, Enrollment.version).where(Enrollment.id.in_(bindparam("ids", expanding=True)))
_OF_STEPS = select(Touchpoint.id, Touchpoint.step, Touchpoint.occurrence, Touchpoint.status, Touchpoint.reason,
                   Touchpoint.anchor_at).where(Touchpoint.enrollment_id == bindparam("e"),
                                               Touchpoint.step.in_(bindparam("steps", expanding=True)))
_KEYS = select(Touchpoint.idempotency_key, Touchpoint.id).where(
    Touchpoint.idempotency_key.in_(bindparam("keys", expanding=True)))


def _same(core: list, driver: list) -> None:
    """The same rows, in any order (neither statement orders them), none of them empty."""
    assert core, "the scenario should give rows to compare"
    assert sorted(map(tuple, driver), key=repr) == sorted(map(tuple, core), key=repr)


def test_the_per_event_reads_on_the_driver_give_what_sqlalchemy_gives(database_url, settings, clock):
    with h.running_engine(database_url, settings, clock, [JOURNEY], {"sms": h.RecordingChannel("sms")}) as eng:
        ev = h.Events(clock)
        eng.ingest(ev("visit.checked_in", {"appointment_id": "A2", "room": "2诊室"}))  # before its booking: held
        with eng.db.connect() as conn:
            pid = conn.execute(select(Patient.id)).scalar_one()
            held_core = [tuple(r) for r in conn.execute(_HELD_FOR_EPISODE, {"p": pid, "k": "A2"})]
            held = held_for_episode(conn, pid, "A2")
        assert len(held) == 1 and [tuple(r) for r in held] == held_core
        assert held[0].id == held_core[0][0] and held[0].payload == {"appointment_id": "A2", "room": "2诊室"}
        eng.ingest(ev("appointment.booked", {"appointment_id": "A1", "start": slot(9)}))
        eng.ingest(ev("visit.checked_in", {"appointment_id": "A1", "room": "3诊室"}))  # an ``on`` step, urgent
        eng.ingest(ev("appointment.rescheduled", {"appointment_id": "A1", "start": slot(10)}))  # a re-plan
        eng.ingest(ev("message.replied", {"text": "好的"}))  # a conversation turn
        eng.ingest(ev("message.replied", {"text": "谢谢"}))
        with eng.db.connect() as conn:
            pg = conn.dialect.name == "postgresql"
            enrollment = conn.execute(select(Enrollment.id, Enrollment.journey, Enrollment.key)).first()
            who = {"p": pid, "j": enrollment.journey, "k": enrollment.key}
            _same(conn.execute(ENROLLMENT_STATUSES, who).all(), ENROLLMENT_STATUSES_Q.rows(conn, who))
            _same(conn.execute(EPISODE_STATUSES, who).all(), EPISODE_STATUSES_Q.rows(conn, who))
            _same(conn.execute(EPISODE_KNOWN, who).all(), EPISODE_KNOWN_Q.rows(conn, who))
            assert EPISODE_KNOWN_Q.rows(conn, {**who, "k": "no-such-episode"}) == []
            by_id = {"e": enrollment.id}
            _same(conn.execute(ENROLLMENT_BY_ID, by_id).all(), ENROLLMENT_BY_ID_Q.rows(conn, by_id))
            tps = conn.execute(select(Touchpoint.id, Touchpoint.idempotency_key, Touchpoint.step)).all()
            ids = {"ids": [t.id for t in tps]}
            _same(conn.execute(STEPS_OF, ids).all(), STEPS_OF_IDS[pg].rows(conn, ids))
            keys = {"keys": [t.idempotency_key for t in tps]}
            _same([(k,) for k, _ in conn.execute(_KEYS, keys)], scheduling._KNOWN_KEYS[pg].rows(conn, keys))
            _same([(i,) for _, i in conn.execute(_KEYS, keys)], scheduling._IDS_OF_KEYS[pg].rows(conn, keys))
            names = {"names": [JOURNEY.name, "no-such-journey"]}
            _same(conn.execute(_STORED, names).all(), daily_load._STORED[pg].rows(conn, names))
            pinned = {"ids": [enrollment.id]}
            _same(conn.execute(_PINNED, pinned).all(), daily_load._PINNED[pg].rows(conn, pinned))
            steps = {"e": enrollment.id, "steps": sorted({t.step for t in tps})}
            _same(conn.execute(_OF_STEPS, steps).all(), replan._OF_STEPS[pg].rows(conn, steps))
            turn_ids = conn.execute(select(ConversationTurn.id).order_by(ConversationTurn.id)).scalars().all()
            read = turns.conversation(conn, eng.cipher, pid)
            one = turns.load_turn(conn, eng.cipher, turn_ids[-1])
            core_rows = conn.execute(select(ConversationTurn.__table__).order_by(ConversationTurn.id)).all()
            assert turns.load_turn(conn, eng.cipher, -1) is None
        assert len(turn_ids) == 2 and [t.id for t in read] == turn_ids and [t.text for t in read] == ["好的", "谢谢"]
        assert one == read[-1] and one.at == core_rows[-1].at and one.at.tzinfo is not None
        assert [t.status for t in read] == [r.status for r in core_rows]

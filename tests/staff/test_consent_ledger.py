"""The consent ledger: every change kept with how it came and who recorded it; the newest is what sends obey."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from carepath.definition.dsl import after, enroll_on, journey, send, step, template
from carepath.definition.events import PatientIn
from carepath.reporting import timeline_data, timeline_tables
from carepath.store.schema import AuditEntry, Consent
from tests.engine import helpers as h

PROMOS = journey("offers", enroll=enroll_on("program.joined"), templates=[template("t", "健康讲座邀请")],
                 steps=[step(f"promo{day}", "post_visit", after("enrolled", f"{day}d"), send("t", ["sms"]),
                             category="marketing") for day in (1, 3)])


def test_changes_are_kept_the_newest_is_in_force_and_sends_obey_it(database_url, settings, clock):
    sms = h.RecordingChannel("sms")
    engine = h.make_engine(database_url, settings, clock, [PROMOS], {"sms": sms})
    try:
        pid = engine.upsert_patient(PatientIn(mrn="M1", name="张三", phone="13812341234"))
        his, web = h.Events(clock, "M1", source="his"), h.Events(clock, "M1", source="portal")
        start = clock.now()
        engine.ingest(his("program.joined"))
        engine.ingest(his("consent.changed", {"purpose": "marketing", "granted": True}))
        clock.advance(timedelta(hours=1))
        engine.ingest(web("consent.changed", {"purpose": "marketing", "granted": False, "via": "web"}))
        # an older grant arriving late is kept in the ledger, but does not overturn the newer withdrawal
        engine.ingest(his("consent.changed", {"purpose": "marketing", "granted": True},
                          occurred_at=start - timedelta(days=2)))
        clock.advance(timedelta(days=1))
        engine.dispatch_due()
        first = h.one_touchpoint(engine, step="promo1")
        assert first.status != "sent" and "no marketing consent" in first.reason and sms.keys == []

        engine.ingest(his("consent.changed", {"purpose": "marketing", "granted": True, "via": "staff",
                                              "recorded_by": "nurse-a", "reason": "patient asked at the desk"}))
        clock.advance(timedelta(days=2))
        engine.dispatch_due()
        assert h.one_touchpoint(engine, step="promo3").status == "sent" and len(sms.keys) == 1

        with engine.db.connect() as conn:
            assert len(conn.execute(select(Consent.id).where(Consent.patient_id == pid)).all()) == 4
            ledger = timeline_data(conn, engine.cipher, pid)["consents"]
            tables = timeline_tables(conn, engine.cipher, pid)
            audited = conn.execute(select(AuditEntry.actor, AuditEntry.action, AuditEntry.detail)
                                   .where(AuditEntry.action.like("consent.%")).order_by(AuditEntry.id)).all()
    finally:
        engine.close()
    assert [(c["granted"], c["via"], c["source"], c["in_force"]) for c in ledger] == [
        (True, "his", "his", False),        # the late one, placed at the time it happened
        (True, "his", "his", False),
        (False, "web", "portal", False),
        (True, "staff", "his", True)]
    assert ledger[-1]["recorded_by"] == "nurse-a" and ledger[-1]["reason"] == "patient asked at the desk"
    assert [a.actor for a in audited] == ["event:his", "event:portal", "event:his", "staff:nurse-a"]
    assert audited[1].detail == {"purpose": "marketing", "channel": "*", "via": "web"}
    assert tables[-1].title.startswith("consents") and tables[-1].row_count == 4


def test_a_reply_that_unsubscribes_is_recorded_as_the_patients_own(database_url, settings, clock):
    engine = h.make_engine(database_url, settings, clock, [PROMOS], {"sms": h.RecordingChannel("sms")})
    try:
        pid = engine.upsert_patient(PatientIn(mrn="M1", name="张三", phone="13812341234"))
        engine.ingest(h.Events(clock, "M1", source="sms")("message.replied", {"text": "TD", "channel": "sms"}))
        with engine.db.connect() as conn:
            ledger = timeline_data(conn, engine.cipher, pid)["consents"]
    finally:
        engine.close()
    assert ledger and all(c["via"] == "patient_reply" and not c["granted"] and c["in_force"] for c in ledger)


def test_staff_record_consent_for_their_teams_patients_only(wards, cli):
    db, patient_a, patient_b, _, _ = wards
    recorded = cli("consent", "record", patient_a, "--purpose", "marketing", "--grant", "--channel", "sms",
                   "--as", "nurse-a", "--reason", "患者电话中同意", "--db", db)
    assert recorded.exit_code == 0, recorded.output
    assert "marketing on sms granted (recorded by nurse-a)" in recorded.stdout
    refused = cli("consent", "record", patient_b, "--purpose", "marketing", "--withdraw", "--as", "nurse-a",
                  "--db", db)
    assert refused.exit_code == 1 and "belongs to team 'ward-b'" in refused.stderr
    assert cli("consent", "record", patient_a, "--purpose", "sensitive", "--grant", "--as", "ops",
               "--db", db).exit_code == 1
    bad = cli("consent", "record", patient_a, "--purpose", "ads", "--grant", "--as", "nurse-a", "--db", db)
    assert bad.exit_code == 1 and "purpose" in bad.stderr
    [row] = json.loads(cli("consent", "show", patient_a, "--json", "--db", db).stdout)["consents"]
    assert (row["purpose"], row["channel"], row["granted"], row["via"], row["recorded_by"], row["in_force"]) == (
        "marketing", "sms", True, "staff", "nurse-a", True)
    assert json.loads(cli("consent", "show", patient_b, "--json", "--db", db).stdout)["consents"] == []
    timeline = json.loads(cli("patients", "timeline", patient_a, "--json", "--db", db).stdout)
    assert timeline["consents"] == [row]
    assert cli("consent", "show", 999, "--db", db).exit_code == 3

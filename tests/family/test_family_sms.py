"""Family and guardians over a real SMS provider (its loopback emulator checks every signature): a child's
reminder reaches the guardian's phone, and a family member's 退订 from their own phone, pushed to the web
hooks app, stops only them."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from carepath.definition.events import EventIn, PatientIn
from carepath.store.family_schema import RelatedPerson
from carepath.store.schema import Event

from tests.connectors.sms_helpers import PROVIDERS, Provider, build, close

CHILD, MOTHER = "13800000011", "13900000022"


@pytest.fixture(params=sorted(PROVIDERS))
def provider(request: pytest.FixtureRequest) -> Provider:
    return PROVIDERS[request.param]


@pytest.fixture
def s(provider, database_url, settings, clock):
    setup = build(provider, database_url, settings, clock, via=["sms"], hooks=True)
    yield setup
    close(setup)


def _mother(s, mrn: str) -> None:
    s.engine.ingest(EventIn(type="patient.related_person_added", source="his", source_id=f"nk1-{mrn}",
                            patient_mrn=mrn, occurred_at=s.clock.now(),
                            payload={"ref": "NK1/1", "relationship": "mother", "guardian": True,
                                     "contact": {"name": "王芳", "phone": MOTHER}}))


def test_a_childs_reminder_reaches_the_guardians_phone_not_the_childs(s):
    s.engine.upsert_patient(PatientIn(mrn="C1", name="李小明", phone=CHILD, birth_date=date(2015, 9, 1)))
    _mother(s, "C1")
    s.enroll(mrn="C1", phone=CHILD)
    assert s.dispatch().sent == 1
    assert s.emulator.rejected == []
    [message] = s.emulator.messages
    assert message.phone.endswith(MOTHER)
    tp = s.touchpoint()
    assert tp.recipient is not None and message.reference == f"{tp.idempotency_key}|to:{tp.recipient}:sms"


def test_a_family_members_td_from_their_own_phone_stops_only_them(s):
    s.enroll()  # patient M1, an adult with her own phone
    _mother(s, "M1")
    assert s.emulator.push_reply(s.hook_url("replies"), MOTHER, "退订") == 200
    [replied] = s.rows(Event, type="message.replied")
    assert replied.intent == "unsubscribe" and replied.payload["related_person"] == "NK1/1"
    assert s.consents() == []  # the patient's own consent is untouched
    with s.engine.db.connect() as conn:
        assert conn.execute(select(RelatedPerson.unsubscribed_at)).scalar() is not None
    assert s.dispatch().sent == 1  # and she still gets hers
    assert s.emulator.messages[0].phone.endswith("13912345678")

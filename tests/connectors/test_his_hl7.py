"""HL7 v2 over MLLP: real sockets, the stock outpatient journey, ACK codes and what got stored."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest

from carepath.connectors.his.hl7_source import Hl7Source
from carepath.connectors.his.mllp import MllpClient
from carepath.listeners import Listeners
from carepath.store.personal_data import reveal_payload
from carepath.store.schema import Event, Patient
from tests.connectors import hl7_messages as m
from tests.engine import helpers as h

SH = timezone(timedelta(hours=8))


class Listener:
    """An ``Hl7Source`` listening on a free loopback port, started the way ``carepath serve`` starts it."""

    def __init__(self, source: Hl7Source) -> None:
        self.listeners = Listeners([source])
        self.listeners.start()
        self.port = self.listeners.servers[0].sockets[0].getsockname()[1]

    def close(self) -> None:
        self.listeners.stop()


@pytest.fixture
def listener(engine) -> Iterator[Listener]:
    source = Hl7Source.from_options("hl7", {"port": 0, "host": "127.0.0.1"})
    source.bind(engine)
    running = Listener(source)
    yield running
    running.close()


def send(listener: Listener, *messages: str, charset: str = "utf-8") -> list[str]:
    with MllpClient("127.0.0.1", listener.port) as client:
        return [client.send(text.encode(charset)).decode(charset) for text in messages]


def msa(ack: str) -> list[str]:
    return next(seg for seg in ack.split("\r") if seg.startswith("MSA")).split("|")


def err(ack: str) -> list[str]:
    return next(seg for seg in ack.split("\r") if seg.startswith("ERR")).split("|")


def test_booking_reschedule_cancel_leave_the_right_touchpoints(engine, listener):
    acks = send(listener, m.siu("S12", "C1", start="20260503093000"))
    assert msa(acks[0])[1:3] == ["AA", "C1"]
    planned = {t.step: t for t in h.touchpoints(engine) if t.status == "scheduled"}
    assert planned["visit-reminder"].due_at.isoformat().startswith("2026-05-03T")  # 07:30 Shanghai = 23:30Z the 2nd
    send(listener, m.siu("S14", "C2", start="20260505143000"))
    reminder = [t for t in h.touchpoints(engine, step="visit-reminder") if t.status == "scheduled"]
    assert [t.due_at.isoformat() for t in reminder] == ["2026-05-05T04:30:00+00:00"]  # 12:30 Shanghai
    send(listener, m.siu("S15", "C3"))
    assert not [t for t in h.touchpoints(engine) if t.status == "scheduled"]
    assert [e.status for e in h.enrollments(engine)] == ["exited"]


def test_repeated_control_id_is_acknowledged_and_applied_once(engine, listener):
    first, again = send(listener, m.siu("S12", "C1"), m.siu("S12", "C1"))
    assert msa(first)[1] == msa(again)[1] == "AA"
    assert len(h.enrollments(engine)) == 1
    assert len([e for e in h._rows(engine, Event) if not e.source.startswith("carepath")]) == 1  # derived events aside


def test_malformed_message_gets_ae_naming_the_field_and_stores_nothing(engine, listener):
    bad_time = m.siu("S12", "C9", start="2026-05-03 morning")
    no_id = m.siu("S12", "C10", appointment="")
    acks = send(listener, bad_time, no_id)
    assert msa(acks[0])[1] == "AE" and err(acks[0])[2].startswith("SCH^1^11^1^4")
    assert "2026-05-03 morning" in err(acks[0])[8]
    assert msa(acks[1])[1] == "AE" and err(acks[1])[2].startswith("SCH^1^2")
    assert h._rows(engine, Event) == [] and h._rows(engine, Patient) == []


def test_unsupported_type_is_rejected_and_garbage_still_answered(engine, listener):
    unsupported = m.message("ADT^A31", "C11", "EVN|A31|20260501100000", m.pid())
    acks = send(listener, unsupported, "this is not HL7")
    assert msa(acks[0])[1] == "AR"
    assert msa(acks[1])[1] in ("AE", "AR")
    assert h._rows(engine, Event) == []


def test_gb18030_feed_is_decoded_and_answered_in_kind(engine, listener):
    text = m.siu("S12", "C12", department="内分泌科").replace("UNICODE UTF-8", "GB 18030-2000")
    ack = send(listener, text, charset="gb18030")[0]
    assert msa(ack)[1] == "AA"
    event = h._rows(engine, Event)[0]
    assert event.payload["department"] == "内分泌科"


def test_demographics_conditions_and_deceased_from_adt(engine, listener):
    send(listener, m.siu("S12", "C1"), m.adt("A03", "C2", event_time="20260503110000"))
    patient = h._rows(engine, Patient)[0]
    assert patient.conditions == ["E11.9"] and patient.birth_date.isoformat() == "1950-01-01"
    assert engine.cipher.decrypt(patient.name_enc) == "张三"
    assert any(t.step == "followup-day3" and t.status == "scheduled" for t in h.touchpoints(engine))
    ack = send(listener, m.adt("A08", "C3", patient=m.pid(deceased_at="20260504080000")))[0]
    assert msa(ack)[1] == "AA"
    assert h._rows(engine, Patient)[0].deceased
    assert not [t for t in h.touchpoints(engine) if t.status == "scheduled"]


SAMPLES = __import__("pathlib").Path(__file__).resolve().parents[2] / "docs" / "connectors" / "samples"


def test_hl7_send_command_prints_each_ack(engine, listener):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "carepath.cli", "hl7", "send", str(SAMPLES / "booking.hl7"),
                          str(SAMPLES / "malformed.hl7"), "--port", str(listener.port)],
                         capture_output=True, text=True, timeout=60, env={**__import__("os").environ, "COLUMNS": "160"})
    assert run.returncode == 1, run.stderr  # one message was not accepted
    assert "SAMPLE-1" in run.stdout and "AA" in run.stdout
    assert "SAMPLE-4" in run.stdout and "AE" in run.stdout and "SCH^1^11^1^4" in run.stdout
    assert [e.key for e in h.enrollments(engine)] == ["A1001"]


def test_hl7_send_raw_sends_a_broken_file_as_it_is(engine, listener, tmp_path):
    import os
    import subprocess
    import sys

    broken = tmp_path / "broken.hl7"  # a stray first line before MSH, segments ended by LF
    broken.write_bytes(b"garbage before the header\n" + (SAMPLES / "booking.hl7").read_bytes().replace(b"\r", b"\n"))

    def hl7_send(*options: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "carepath.cli", "hl7", "send", str(broken), *options,
                               "--port", str(listener.port)], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "COLUMNS": "160"})

    raw = hl7_send("--raw")
    assert raw.returncode == 1, raw.stderr  # the listener refused it: it got the file as it is
    assert "AE" in raw.stdout and "MSH" in raw.stdout and "does not start with an MSH segment" in raw.stdout
    assert h._rows(engine, Event) == []
    repaired = hl7_send()  # without --raw the stray line is dropped and the line ends repaired
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert [e.key for e in h.enrollments(engine)] == ["A1001"]


PHONE_STYLES = {
    # XTN components as Chinese HIS systems send them: use code, equipment, country code, then the mobile number
    "country code and number in components": ("^PRN^CP^^86^13812345678", "13812345678"),
    "area code and local number": ("^PRN^PH^^86^010^62345678~^PRN^CP^^86^^13900001111", "13900001111"),
    "e-mail first, then a landline": ("^NET^Internet^zhang@example.cn~^PRN^PH^^^021^61234567", "02161234567"),
    "fax first, then the number in component 1": ("^WPN^FX^^86^010^6000000~+86 139-1234-5678^PRN^PH", "13912345678"),
    "unformatted number (component 12)": ("^PRN^CP^^^^^^^^^13712345678", "13712345678"),
    "abroad": ("^PRN^CP^^852^^91234567", "+85291234567"),
    "only a business number (PID-14)": ("|^WPN^CP^^86^13611112222", "13611112222"),
}


@pytest.mark.parametrize("style", sorted(PHONE_STYLES))
def test_the_patients_phone_is_read_from_xtn_components(engine, listener, style):
    pid13, expected = PHONE_STYLES[style]
    patient = m.pid().replace("||13812345678", "||" + pid13)
    assert msa(send(listener, m.message("SIU^S12", "P1", "SCH|A1^HIS|A1^HIS|||||^复诊||30|min|^^^20260503093000",
                                        patient))[0])[1] == "AA"
    [row] = h._rows(engine, Patient)
    assert engine.cipher.decrypt(row.phone_enc) == expected


def test_merge_moves_history_to_the_surviving_mrn(engine, listener):
    send(listener, m.siu("S12", "C1", appointment="A1", mrn="OLD1"))
    merge = m.message("ADT^A40", "C2", "EVN|A40|20260501110000", m.pid("NEW1", "张", "三"), "MRG|OLD1^^^H1^MR")
    assert msa(send(listener, merge)[0])[1] == "AA"
    survivor = next(p for p in h._rows(engine, Patient) if p.merged_into is None)
    assert {e.patient_id for e in h.enrollments(engine)} == {survivor.id}
    assert {t.patient_id for t in h.touchpoints(engine)} == {survivor.id}
    send(listener, m.siu("S15", "C3", appointment="A1", mrn="OLD1"))  # a late message naming the old MRN
    assert [e.status for e in h.enrollments(engine)] == ["exited"]


def test_vitals_from_oru_and_local_codes_from_configuration(engine):
    source = Hl7Source.from_options("hl7", {"codes": {"0101": "心内科"},
                                            "messages": {"ADT^A04": {"event": "visit.checked_in",
                                                                     "fields": {"encounter_id": "PV1-19.1",
                                                                                "department": "PV1-3.1",
                                                                                "queue_no": "PV1-50.1"},
                                                                     "required": ["encounter_id"],
                                                                     "identity": ["encounter_id"]}}})
    source.bind(engine)
    oru = m.message("ORU^R01", "C5", m.pid(), "OBR|1|O1|R77|GLU^血糖|||20260501080000|||||||||||||||20260501083000",
                    "OBX|1|NM|2339-0^Glucose^LN||7.8|mmol/L|||||F|||20260501080000")
    assert "|AA|" in source.handle(oru.encode()).decode()
    events = {e.type: e for e in h._rows(engine, Event)}
    assert events["report.ready"].payload["report_id"] == "R77"
    reading = events["vitals.reading"].payload
    assert "7.8" not in str(reading["value"])  # a reading's value is health data: encrypted at rest
    assert reveal_payload(reading, engine.cipher) == {"kind": "glucose", "code": "2339-0", "value": 7.8, "unit": "mmol/L"}
    a04 = m.adt("A04", "C6", encounter="V9")
    assert "|AA|" in source.handle(a04.encode()).decode()
    checked_in = next(e for e in h._rows(engine, Event) if e.type == "visit.checked_in")
    assert checked_in.payload["department"] == "心内科"


def _listening(engine, **options) -> Listener:
    source = Hl7Source.from_options("hl7", {"port": 0, "host": "127.0.0.1", **options})
    source.bind(engine)
    return Listener(source)


def _closed_without_answer(sock) -> bool:
    import socket

    sock.settimeout(5)
    try:
        return sock.recv(1024) == b""
    except (ConnectionResetError, socket.timeout):
        return True


def test_the_listener_refuses_peers_outside_allow_from(engine):
    import socket

    running = _listening(engine, allow_from=["10.20.0.0/16"])
    try:
        with socket.create_connection(("127.0.0.1", running.port)) as sock:
            sock.sendall(b"\x0b" + m.siu("S12", "X1").encode() + b"\x1c\x0d")
            assert _closed_without_answer(sock)
    finally:
        running.close()
    assert h._rows(engine, Event) == []


def test_the_listener_bounds_connections_per_peer_and_slow_frames(engine):
    import socket

    running = _listening(engine, max_connections_per_peer=2, frame_timeout=0.5)
    try:
        first, second = (socket.create_connection(("127.0.0.1", running.port)) for _ in range(2))
        third = socket.create_connection(("127.0.0.1", running.port))
        assert _closed_without_answer(third)  # a third connection from the same address
        first.sendall(b"\x0b" + m.siu("S12", "S1").encode()[:40])  # starts a frame, never finishes it
        assert _closed_without_answer(first)
        second.close()
        third.close()
        first.close()
        assert msa(send(running, m.siu("S12", "S2"))[0])[1] == "AA"  # the slots are free again
    finally:
        running.close()
    [stored] = [e for e in h._rows(engine, Event) if not e.source.startswith("carepath")]  # only the message that arrived whole
    assert stored.received_via == "mllp:hl7"


def _pregnant_patient(listener: Listener) -> None:
    """Her record, with Z34 (supervision of a normal pregnancy), as an ADT^A08 update."""
    a08 = m.message("ADT^A08", "P1", "EVN|A08|20260501080000", m.pid(mrn="MRN077", family="林", given="晓"),
                    "PV1|1|O|0301^产科", "DG1|1||Z34.0^早期妊娠监督^I10")
    assert msa(send(listener, a08)[0])[1] == "AA"


def test_a_last_menstrual_period_in_an_oru_dates_the_pregnancy(engine, listener):
    """OBX 8665-2 (LOINC: last menstrual period start date) is a ``pregnancy.dated`` event: the maternity journey
    enrolls her on her gestational weeks; the same dating sent again is stored once."""
    _pregnant_patient(listener)
    oru = m.message("ORU^R01", "P2", m.pid(mrn="MRN077", family="林", given="晓"),
                    "OBR|1|O9|OB77|11450-4^产科病史|||20260501083000",
                    "OBX|1|DT|8665-2^Last menstrual period start date^LN||20260220||||||F|||20260501083000")
    assert msa(send(listener, oru)[0])[1] == "AA"
    [dated] = [e for e in h._rows(engine, Event) if e.type == "pregnancy.dated"]
    assert reveal_payload(dated.payload, engine.cipher) == {"lmp": "2026-02-20T00:00:00+08:00", "method": "lmp"}
    [enrolled] = h.enrollments(engine, journey="maternity")
    assert datetime.fromisoformat(enrolled.anchors["lmp"]) == datetime(2026, 2, 20, tzinfo=SH)
    assert any(t.anchor == "lmp" and t.status == "scheduled" for t in h.touchpoints(engine))  # by gestational week
    again = oru.replace("|P2|", "|P3|")  # a resend under a new control id: the same fact
    assert msa(send(listener, again)[0])[1] == "AA"
    assert [e.type for e in h._rows(engine, Event)].count("pregnancy.dated") == 1


def test_an_lmp_that_is_no_date_is_refused_naming_the_obx(engine, listener):
    _pregnant_patient(listener)
    oru = m.message("ORU^R01", "P4", m.pid(mrn="MRN077"), "OBR|1|O9|OB78|11450-4^产科病史|||20260501083000",
                    "OBX|1|DT|8665-2^Last menstrual period start date^LN||上个月||||||F")
    ack = send(listener, oru)[0]
    assert msa(ack)[1] == "AE" and "OBX[1]-5" in ack and "上个月" in ack
    assert not [e for e in h._rows(engine, Event) if e.type == "pregnancy.dated"]

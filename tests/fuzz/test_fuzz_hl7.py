"""HL7 v2, structure-aware: valid messages from the stock feed with fields, components, segments, separators and
encodings mutated. Every frame is answered AA, AE or AR; nothing raises; a message not accepted stores nothing."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from carepath.connectors.his.hl7_source import Hl7Source
from carepath.definition.registry import plugin_journeys

from tests.connectors import hl7_messages as m
from tests.engine import helpers as h
from tests.fuzz.budget import FUZZ

BASES = [
    m.siu("S12", "C1"), m.siu("S14", "C2", start="20260505143000"), m.siu("S15", "C3"), m.siu("S26", "C4"),
    m.adt("A01", "C5"), m.adt("A03", "C6"), m.adt("A04", "C7"), m.adt("A08", "C8", patient=m.pid(deceased_at="20260504")),
    m.adt("A11", "C9"), m.adt("A13", "C10"),
    m.message("ADT^A40", "C11", "EVN|A40|20260501110000", m.pid("NEW1"), "MRG|OLD1^^^H1^MR"),
    m.message("ORU^R01", "C12", m.pid(), "OBR|1|R1|R1|GLU^血糖|||20260501080000",
              "OBX|1|NM|2339-0^Glucose||7.8|mmol/L|||||F|||20260501081000",
              "OBX|2|NM|8480-6^SBP||150|mm[Hg]|||||F"),
]
CHARSETS = ["UNICODE UTF-8", "GB 18030-2000", "GBK", "8859/1", "ASCII", "CHINESE", "KOI8-R", "no-such-charset", ""]

field_values = st.one_of(
    st.text(max_size=30),
    st.text(alphabet="0123456789+-.^~\\&|", max_size=20),
    st.sampled_from(["", "20260503093000", "2026-05-03", "99999999999999", "00000000", "20261399", "202605031261",
                     "20260503093000+2500", "19000101", "21991231235959.9999-0800", "MR", "CP", "Y", "N", "NM",
                     "^PRN^CP^^86^13812345678", "~~~", "^^^^^^^^^^^^^^^^^^^^", "张三", "\x00", "\ud800"[0:0] + "x"]),
    st.text(alphabet="张三李四内分泌科", min_size=1, max_size=10),
    st.builds(lambda n: "9" * n, st.integers(1, 5000)),
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    segments = draw(st.sampled_from(BASES)).strip("\r").split("\r")
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["field", "component", "drop", "duplicate", "swap", "charset", "separators",
                                   "truncate", "junk", "repeat"]))
        if not segments:
            break
        # mostly the message's body: a broken header is refused at once and tests little beyond it
        i = draw(st.integers(0, len(segments) - 1) if draw(st.integers(0, 9)) == 0 else
                 st.integers(min(1, len(segments) - 1), len(segments) - 1))
        fields = segments[i].split("|")
        if op == "field":
            j = draw(st.integers(1, max(1, len(fields) + 2)))
            fields += [""] * (j + 1 - len(fields))
            fields[j] = draw(field_values)
            segments[i] = "|".join(fields)
        elif op == "component" and len(fields) > 1:
            j = draw(st.integers(1, len(fields) - 1))
            parts = fields[j].split("^")
            k = draw(st.integers(0, len(parts) + 2))
            parts += [""] * (k + 1 - len(parts))
            parts[k] = draw(field_values)
            fields[j] = "^".join(parts)
            segments[i] = "|".join(fields)
        elif op == "drop":
            del segments[i]
        elif op == "duplicate":
            segments.insert(i, segments[i])
        elif op == "swap" and len(segments) > 1:
            k = draw(st.integers(0, len(segments) - 1))
            segments[i], segments[k] = segments[k], segments[i]
        elif op == "charset" and segments[0].startswith("MSH"):
            head = segments[0].split("|")
            head += [""] * (18 - len(head))
            head[17] = draw(st.sampled_from(CHARSETS))
            segments[0] = "|".join(head)
        elif op == "separators" and segments[0].startswith("MSH"):
            segments[0] = segments[0][:3] + draw(st.text(min_size=0, max_size=6)) + segments[0][8:]
        elif op == "truncate":
            segments[i] = segments[i][:draw(st.integers(0, len(segments[i])))]
        elif op == "junk":
            segments.insert(i, draw(st.text(max_size=40)))
        elif op == "repeat" and len(fields) > 3:
            fields[3] = "~".join([fields[3]] * draw(st.integers(2, 50)))
            segments[i] = "|".join(fields)
    text = "\r".join(segments) + draw(st.sampled_from(["\r", "\n", "\r\n", ""]))
    encoding = draw(st.sampled_from(["utf-8"] * 6 + ["gb18030", "latin-1", "utf-16"]))
    raw = text.encode(encoding, errors="replace")
    if draw(st.booleans()):  # a flipped byte somewhere
        at = draw(st.integers(0, max(0, len(raw) - 1)))
        raw = raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1:]
    return raw


@pytest.fixture
def engine(database_url, settings, clock):
    journeys = [j for j in plugin_journeys().values() if j.name == "outpatient-visit"]
    eng = h.make_engine(database_url, settings, clock, journeys, {"wechat": h.RecordingChannel("wechat"),
                                                                   "sms": h.RecordingChannel("sms")})
    yield eng
    eng.close()


def _msa(ack: bytes) -> str:
    text = ack.decode("latin-1")
    msa = next((s for s in text.split("\r") if s.startswith("MSA")), "")
    return msa.split(msa[3] if len(msa) > 3 else "|")[1] if msa else ""


@FUZZ
@given(raw=mutated())
@example(raw=m.siu("S12", "X1").replace("UNICODE UTF-8", "KOI8-R").encode("utf-8"))
@example(raw=m.siu("S12", "X2").replace("|^^^20260503093000", "|^^^20260503093000+2500").encode())
@example(raw=("MSH|^~\\&|" + "\r").encode())
@example(raw=m.siu("S12", "X3").replace("MSH|^~\\&|", "MSH||").encode())
@example(raw=m.siu("S12", "X4").replace("\rPID", "\r\rPID").encode())  # an empty segment: IndexError in hl7
@example(raw=m.siu("S12", "X5").replace("\rPID", "\r|PID").encode())  # a segment without a name
def test_every_hl7_message_gets_an_answer_and_a_refused_one_stores_nothing(engine, raw):
    source = Hl7Source.from_options("hl7", {})
    source.bind(engine)
    before = h.snapshot(engine)
    ack = source.handle(raw)
    code = _msa(ack)
    assert code in ("AA", "AE", "AR"), ack
    assert b"incident" not in ack, ack  # an answer from the last-resort handler: an unforeseen exception
    if code != "AA":
        assert h.snapshot(engine) == before

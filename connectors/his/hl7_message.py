"""Reading one HL7 v2 message: its encoding (MSH-18), fields by path, and the events it carries."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Mapping
from zoneinfo import ZoneInfo

import hl7

from carepath.connectors.his.hl7_mapping import PREGNANCY_DATING, MessageMap
from carepath.connectors.his.hl7_phone import patient_phone, repetitions, telecom
from carepath.connectors.his.related_mapping import RELATIONSHIPS, added_payload, relationship_of
from carepath.connectors.his.identity import his_event
from carepath.definition.events import EventIn

#: HL7 table 0211 names (and what Chinese HIS vendors put in MSH-18) -> Python codecs.
CHARSETS: dict[str, str] = {
    "ASCII": "ascii", "8859/1": "latin-1", "UNICODE UTF-8": "utf-8", "UTF-8": "utf-8", "UNICODE": "utf-8",
    "GB 18030-2000": "gb18030", "GB18030": "gb18030", "GB 18030": "gb18030", "GBK": "gbk", "GB2312": "gb2312",
    "CHINESE": "gb18030",
}


class Hl7Problem(Exception):
    """The message cannot be applied: answered ``AE`` with an ERR segment naming ``location``."""

    def __init__(self, location: str, message: str, code: str = "102") -> None:
        super().__init__(f"{location}: {message}")
        self.location = location  # e.g. "SCH-11.4"
        self.code = code  # HL7 table 0357: 100 segment sequence, 101 required field missing, 102 data type


class Hl7Unsupported(Exception):
    """A message type this source does not map: answered ``AR``."""


@dataclass(frozen=True)
class Hl7Message:
    """A decoded, parsed message and its header facts."""

    parsed: hl7.Message
    text: str
    control_id: str
    kind: str  # "SIU^S12"
    version: str

    def value(self, paths: str) -> str:
        """The first non-empty value among ``A|B`` paths (``SEG-F`` or ``SEG-F.C``), else ``""``."""
        for path in paths.split("|"):
            found = self._one(path.strip())
            if found:
                return found
        return ""

    def _one(self, path: str) -> str:
        seg, _, rest = path.partition("-")
        field, _, comp = rest.partition(".")
        try:
            segment = self.parsed.segment(seg)
        except KeyError:
            return ""
        return _component(segment, int(field), int(comp or 1))

    def segments(self, name: str) -> list[hl7.Segment]:
        try:
            return list(self.parsed.segments(name))
        except KeyError:
            return []


def raw_control_id(raw: bytes) -> str:
    """MSH-10 read from the undecoded header, for answering a message that cannot be decoded."""
    header = raw.split(b"\r", 1)[0].decode("latin-1")
    fields = header.split(header[3]) if header.startswith("MSH") and len(header) > 3 else []
    return fields[9] if len(fields) > 9 and fields[9].isascii() else ""


def decode(raw: bytes, default_charset: str = "utf-8") -> str:
    """Text of a message in the character set its MSH-18 names (``default_charset`` when empty)."""
    header = raw.split(b"\r", 1)[0].decode("latin-1")
    if not header.startswith("MSH") or len(header) < 8:
        raise Hl7Problem("MSH", "the message does not start with an MSH segment", code="100")
    fields = header.split(header[3])  # fields[1] is MSH-2: MSH-1 is the separator itself
    declared = fields[17].split(header[4])[0].strip() if len(fields) > 17 else ""
    charset = CHARSETS.get(declared.upper(), declared) if declared else default_charset
    try:
        codecs.lookup(charset)
    except LookupError:
        raise Hl7Problem("MSH-18", f"unknown character set {declared!r}") from None
    try:
        return raw.decode(charset)
    except UnicodeDecodeError as exc:
        raise Hl7Problem("MSH-18", f"bytes are not valid {declared or charset} at offset {exc.start}") from None


def parse(raw: bytes, default_charset: str = "utf-8") -> Hl7Message:
    """Decode and parse; problems name the segment or field."""
    text = decode(raw, default_charset).replace("\r\n", "\r").replace("\n", "\r")
    # empty and nameless segments (a doubled CR, a stray "|...") make the library's segment look-ups fail
    text = "\r".join(s for s in text.split("\r") if s.strip() and s[:1] not in "|^~\\&")
    try:
        parsed = hl7.parse(text)
    except Exception as exc:  # the library raises several kinds for malformed input
        raise Hl7Problem("MSH", f"cannot parse message: {exc}", code="100") from None
    msg = Hl7Message(parsed=parsed, text=text, control_id="", kind="", version="")
    control_id = msg.value("MSH-10")
    if not control_id:
        raise Hl7Problem("MSH-10", "message control id is empty", code="101")
    code, trigger = msg.value("MSH-9.1"), msg.value("MSH-9.2")
    if not code or not trigger:
        raise Hl7Problem("MSH-9", "message type is empty", code="101")
    return Hl7Message(parsed=parsed, text=text, control_id=control_id, kind=f"{code}^{trigger}",
                      version=msg.value("MSH-12.1"))


_DTM = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,4})?)?)?)?)?)?([+-]\d{4})?$")


def hl7_time(value: str, location: str, tz: ZoneInfo) -> datetime:
    """An HL7 DTM (``YYYYMMDD[HHMM[SS[.S]]][+ZZZZ]``), in ``tz`` when it carries no offset."""
    parsed = None
    if _DTM.match(value):
        try:
            parsed = hl7.parse_datetime(value)
        except (ValueError, TypeError):
            parsed = None
    if parsed is None:
        raise Hl7Problem(location, f"{value!r} is not an HL7 date/time (YYYYMMDDHHMMSS)")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=tz)


def _paths(mapping: MessageMap, name: str) -> str:
    return mapping.fields.get(name, "")


def _patient_record(msg: Hl7Message, tz: ZoneInfo, codes: Mapping[str, str]) -> dict:
    """Demographics and conditions from PID and DG1 (only what the message carries)."""
    record: dict = {}
    family, given = msg.value("PID-5.1"), msg.value("PID-5.2")
    if family or given:
        record["name"] = f"{family}{given}" if _cjk(family + given) else " ".join(p for p in (given, family) if p)
    pid = msg.segments("PID")
    phone = patient_phone(pid[0]) if pid else ""
    if phone:
        record["phone"] = phone
    birth = msg.value("PID-7.1")
    if birth:
        record["birth_date"] = hl7_time(birth, "PID-7", tz).date().isoformat()
    sex = msg.value("PID-8.1").upper()
    if sex:
        record["sex"] = {"M": "M", "F": "F"}.get(sex, "O")
    conditions = [codes.get(c, c) for c in (_component(s, 3) for s in msg.segments("DG1")) if c]
    if conditions:
        record["conditions"] = conditions
    return record


def _component(segment: hl7.Segment, field: int, component: int = 1) -> str:
    """Component ``component`` of the first repetition of ``segment``'s field ``field`` (``""`` if absent)."""
    try:
        value = segment[field]
    except IndexError:
        return ""
    if not value:
        return ""
    first = value[0]
    if isinstance(first, hl7.Repetition):
        return str(first[component - 1]).strip() if component <= len(first) else ""
    return str(value).strip() if component == 1 else ""


def _cjk(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def _mrn(msg: Hl7Message) -> str:
    """PID-3: the repetition typed ``MR`` (medical record number), else the first."""
    pid = msg.segments("PID")
    if not pid:
        raise Hl7Problem("PID", "no PID segment: the message names no patient", code="100")
    try:
        reps = pid[0][3]
    except IndexError:
        reps = None
    ids = []
    if reps and not isinstance(reps[0], hl7.Repetition):
        reps = [hl7.Repetition(None, [str(reps)])]
    for rep in reps or []:
        parts = [str(c).strip() for c in rep]
        if parts and parts[0]:
            ids.append((parts[4] if len(parts) > 4 else "", parts[0]))
    if not ids:
        raise Hl7Problem("PID-3", "patient identifier list is empty", code="101")
    return next((value for kind, value in ids if kind == "MR"), ids[0][1])


def events_of(msg: Hl7Message, *, system: str, messages: Mapping[str, MessageMap], vitals: Mapping[str, str],
              codes: Mapping[str, str], tz: ZoneInfo) -> list[EventIn]:
    """Every event ``msg`` carries; raises :class:`Hl7Problem` or :class:`Hl7Unsupported` before any is built."""
    mapping = messages.get(msg.kind)
    if mapping is None:
        raise Hl7Unsupported(f"message type {msg.kind} is not mapped by this source")
    mrn = _mrn(msg)
    payload: dict = {}
    for name in mapping.fields:
        value = msg.value(_paths(mapping, name))
        if not value:
            continue
        if name in mapping.times:
            value = hl7_time(value, _paths(mapping, name).split("|")[0], tz).isoformat()
        payload[name] = codes.get(value, value) if name in ("department", "report") else value
    for name in mapping.required:
        if not payload.get(name):
            raise Hl7Problem(_paths(mapping, name).split("|")[0], f"{name} is required for {msg.kind}", code="101")
    when_raw = msg.value(mapping.occurred_at)
    if not when_raw:
        raise Hl7Problem("MSH-7", "no time for the event (EVN-2 or MSH-7)", code="101")
    occurred = hl7_time(when_raw, mapping.occurred_at.split("|")[0], tz)
    record = _patient_record(msg, tz, codes)
    if record:
        payload["patient"] = record
    identity = tuple(payload.get(n) or (mrn if n == "mrn" else "") for n in mapping.identity) or (msg.control_id,)
    if mapping.event == "patient.updated":
        identity = (mrn, *identity)
    out = [his_event(system, mapping.event, mrn, occurred, identity, payload)]
    if msg.value("PID-30.1").upper() == "Y":
        died_raw = msg.value("PID-29.1")
        died = hl7_time(died_raw, "PID-29", tz) if died_raw else occurred
        out.append(his_event(system, "patient.deceased", mrn, died, (mrn,), {"deceased_at": died.isoformat()}))
    if msg.kind == "ORU^R01":
        out.extend(_vitals(msg, system, mrn, occurred, vitals, tz))
        out.extend(_pregnancy_dating(msg, system, mrn, occurred, tz))
    if msg.kind.startswith("ADT^"):  # family members and guardians (issue 19)
        out.extend(_next_of_kin(msg, system, mrn, occurred))
    return out


def _next_of_kin(msg: Hl7Message, system: str, mrn: str, occurred: datetime) -> list[EventIn]:
    """NK1 segments as ``patient.related_person_added`` (ref ``NK1/<set id>``: NK1-1, else its position)."""
    out = []
    for n, nk1 in enumerate(msg.segments("NK1"), start=1):
        name = (_component(nk1, 2) + _component(nk1, 2, 2)).strip()  # family name, given name
        found = [t for comps in repetitions(nk1, 5) if (t := telecom(comps)) is not None]
        phone = next((t for t in found if t.mobile), found[0] if found else None)
        role = RELATIONSHIPS.get(_component(nk1, 7).upper(), "")  # NK1-7 contact role, when NK1-3 says nothing
        relationship = relationship_of([_component(nk1, 3)], _component(nk1, 3, 2) or role)
        if not (name or phone):
            continue  # an NK1 naming nobody reachable
        ref = f"NK1/{_component(nk1, 1) or n}"
        payload = added_payload(ref, relationship, name or None, phone.number if phone else None)
        out.append(his_event(system, "patient.related_person_added", mrn, occurred, (mrn, ref, occurred.isoformat()),
                             payload))
    return out


def _vitals(msg: Hl7Message, system: str, mrn: str, occurred: datetime, vitals: Mapping[str, str],
            tz: ZoneInfo) -> list[EventIn]:
    out = []
    for n, obx in enumerate(msg.segments("OBX"), start=1):
        code = _component(obx, 3)
        kind = vitals.get(code)
        if kind is None:
            continue
        raw = _component(obx, 5)
        try:
            value = float(raw)
        except ValueError:
            raise Hl7Problem(f"OBX[{n}]-5", f"vital sign {code} value {raw!r} is not a number") from None
        when_raw = _component(obx, 14)
        when = hl7_time(when_raw, f"OBX[{n}]-14", tz) if when_raw else occurred
        out.append(his_event(system, "vitals.reading", mrn, when, (mrn, kind, when.isoformat()),
                             {"kind": kind, "code": code, "value": value, "unit": _component(obx, 6)}))
    return out


def _pregnancy_dating(msg: Hl7Message, system: str, mrn: str, occurred: datetime, tz: ZoneInfo) -> list[EventIn]:
    """An OBX of LOINC 8665-2 (last menstrual period start date, a DT or DTM value) as ``pregnancy.dated``: the
    day's midnight in the source's time zone (the catalogue's ``lmp``), once per patient and date."""
    out = []
    for n, obx in enumerate(msg.segments("OBX"), start=1):
        field = PREGNANCY_DATING.get(_component(obx, 3))
        if field is None:
            continue
        raw = _component(obx, 5)
        if not raw:
            raise Hl7Problem(f"OBX[{n}]-5", f"{_component(obx, 3)} (last menstrual period) has no date", code="101")
        day = hl7_time(raw, f"OBX[{n}]-5", tz).astimezone(tz).date()
        value = datetime(day.year, day.month, day.day, tzinfo=tz)
        out.append(his_event(system, "pregnancy.dated", mrn, occurred, (mrn, field, day.isoformat()),
                             {field: value.isoformat(), "method": "lmp"}))
    return out

"""HL7 v2 acknowledgements: AA after the event is stored, AE with an ERR naming the field, AR for what we refuse."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone

from carepath.connectors.his.hl7_message import Hl7Message

_LOCATION = re.compile(r"^(?P<seg>[A-Z][A-Z0-9]{2})(?:\[(?P<seq>\d+)\])?(?:-(?P<field>\d+)(?:\.(?P<comp>\d+))?)?$")


def error_location(location: str) -> str:
    """``SCH-11.4`` -> ERR-2 ``SCH^1^11^1^4`` (segment, sequence, field, repetition, component)."""
    m = _LOCATION.match(location)
    if not m:
        return ""
    parts = [m["seg"], m["seq"] or "1"]
    if m["field"]:
        parts += [m["field"], "1"]
        if m["comp"]:
            parts.append(m["comp"])
    return "^".join(parts)


def _escape(text: str) -> str:
    """Text safe inside one HL7 field (escape sequences for the delimiters)."""
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("&", "\\T\\")
    return out.replace("~", "\\R\\").replace("\r", " ").replace("\n", " ")


def ack(msg: Hl7Message | None, code: str, *, text: str = "", location: str = "", error_code: str = "",
        now: datetime | None = None, control_id: str = "") -> str:
    """The ACK segments for ``msg`` (or a bare one when the message could not be read at all)."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d%H%M%S")
    if msg is not None:
        send_app, send_fac = msg.value("MSH-5"), msg.value("MSH-6")
        recv_app, recv_fac = msg.value("MSH-3"), msg.value("MSH-4")
        trigger, version, charset = msg.value("MSH-9.2"), msg.version or "2.5", msg.value("MSH-18")
        control = msg.control_id
    else:
        send_app, send_fac, recv_app, recv_fac, trigger, version, charset, control = (
            "CAREPATH", "", "", "", "", "2.5", "", control_id)
    msh = ["MSH", "^~\\&", send_app or "CAREPATH", send_fac, recv_app, recv_fac, stamp, "",
           f"ACK^{trigger}^ACK" if trigger else "ACK", uuid.uuid4().hex[:20], "P", version]
    if charset:
        msh += [""] * 5 + [charset]
    segments = ["|".join(msh), "|".join(["MSA", code, control, _escape(text)[:80]])]
    if code != "AA":
        severity = "E"
        table = error_code or ("200" if code == "AR" else "207")
        segments.append("|".join(["ERR", "", error_location(location), f"{table}^{_escape(text)[:60]}^HL70357",
                                  severity, "", "", "", _escape(text)]))
    return "\r".join(segments) + "\r"

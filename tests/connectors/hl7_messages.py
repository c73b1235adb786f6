"""HL7 v2 test messages as a Chinese HIS sends them (segments joined by CR)."""

from __future__ import annotations

PID = "PID|1||{mrn}^^^H1^MR~110101195001011234^^^CHN^NNCHN||{family}^{given}||19500101|M|||北京市^^^^100000||13812345678{pid_tail}"


def message(kind: str, control_id: str, *segments: str, charset: str = "UNICODE UTF-8",
            stamp: str = "20260501090000") -> str:
    code, trigger = kind.split("^")
    structure = {"SIU": f"SIU_{trigger}", "ADT": "ADT_A01", "ORU": "ORU_R01"}[code]
    msh = (f"MSH|^~\\&|HIS|H1|CAREPATH|H1|{stamp}||{code}^{trigger}^{structure}|{control_id}|P|2.5|||||CHN|"
           f"{charset}")
    return "\r".join([msh, *segments]) + "\r"


def pid(mrn: str = "MRN001", family: str = "张", given: str = "三", deceased_at: str = "") -> str:
    tail = ("|" * 16 + f"{deceased_at}|Y") if deceased_at else ""
    return PID.format(mrn=mrn, family=family, given=given, pid_tail=tail)


def siu(trigger: str, control_id: str, appointment: str = "A1", start: str = "20260503093000",
        mrn: str = "MRN001", department: str = "心内科") -> str:
    return message(f"SIU^{trigger}", control_id,
                   f"SCH|{appointment}^HIS|{appointment}^HIS|||||^复诊||30|min|^^^{start}",
                   pid(mrn), "PV1|1|O|0101^心内科",
                   f"AIL|1||0101^{department}")


def adt(trigger: str, control_id: str, encounter: str = "V1", mrn: str = "MRN001", event_time: str = "20260501100000",
        extra: str = "", patient: str | None = None) -> str:
    pv1 = "|".join(["PV1", "1", "O", "0101^心内科", "", "A1", *[""] * 13, encounter]) + extra
    return message(f"ADT^{trigger}", control_id, f"EVN|{trigger}|{event_time}", patient or pid(mrn), pv1,
                   "DG1|1||E11.9^2型糖尿病^I10")

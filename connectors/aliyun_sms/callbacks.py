"""Alibaba Cloud SMS pushes: delivery receipts (SmsReport) and replies (SmsUp), as JSON arrays.

Receipt: ``[{phone_number, send_time, report_time, success, err_code, err_msg, sms_size, biz_id, out_id}]``.
Reply: ``[{phone_number, send_time, content, sign_name, dest_code, sequence_id}]``.
Both are answered ``{"code":0,"msg":"接收成功"}``; times are Beijing wall time ``yyyy-MM-dd HH:mm:ss``.
"""

from __future__ import annotations

import json

from carepath.connectors.sms_common.callbacks import Receipt, Reply, beijing_time, json_objects

ACK = json.dumps({"code": 0, "msg": "接收成功"}, ensure_ascii=False)


def parse_receipts(body: bytes) -> list[Receipt]:
    try:
        return [Receipt(provider_id=str(i["biz_id"]), phone=str(i["phone_number"]),
                        delivered=bool(i["success"]), code=str(i.get("err_code") or ""),
                        at=beijing_time(i.get("report_time") or i["send_time"]),
                        reference=str(i["out_id"]) if i.get("out_id") else None) for i in json_objects(body)]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"receipt lacks field {exc}") from None


def parse_replies(body: bytes) -> list[Reply]:
    try:
        return [Reply(source_id=str(i["sequence_id"]), phone=str(i["phone_number"]), text=str(i["content"]),
                      at=beijing_time(i["send_time"])) for i in json_objects(body)]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"reply lacks field {exc}") from None

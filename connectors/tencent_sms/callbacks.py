"""Tencent Cloud SMS pushes: delivery status (状态回执) and replies (上行).

Receipt: ``[{user_receive_time, nationcode, mobile, report_status: SUCCESS|FAIL, errmsg, description, sid}]``.
Reply: ``{extend, mobile, nationcode, sign, text, time}`` (one object, or an array of them).
Both are answered ``{"result":0,"errmsg":"OK"}``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

from carepath.connectors.sms_common.callbacks import Receipt, Reply, beijing_time, json_objects

ACK = json.dumps({"result": 0, "errmsg": "OK"})


def parse_receipts(body: bytes) -> list[Receipt]:
    try:
        return [Receipt(provider_id=str(i["sid"]), phone=str(i["mobile"]),
                        delivered=str(i["report_status"]).upper() == "SUCCESS", code=str(i.get("errmsg") or ""),
                        at=beijing_time(i["user_receive_time"])) for i in json_objects(body)]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"receipt lacks field {exc}") from None


def parse_replies(body: bytes) -> list[Reply]:
    """Replies carry no id: the dedup key is a digest of number, time and text."""
    replies = []
    try:
        for i in json_objects(body, single=True):
            at = datetime.fromtimestamp(int(i["time"]), timezone.utc)
            digest = hashlib.sha256(f"{i['mobile']}|{i['time']}|{i['text']}".encode()).hexdigest()[:24]
            replies.append(Reply(source_id=digest, phone=str(i["mobile"]), text=str(i["text"]), at=at))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"reply lacks field {exc}") from None
    except (OverflowError, OSError):  # a time past what a clock can hold
        raise ValueError("reply time is not a Unix time") from None
    return replies

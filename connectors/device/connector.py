"""``type = "device"``: readings from home devices, signed by the device cloud with a shared secret.

The body is JSON: ``{"reading_id", "patient_mrn", "measured_at" (ISO 8601 with offset), "device_id",
"measurements": [{"kind": "systolic_bp", "value": 150, "unit": "mmHg"}, ...]}``. Each measurement becomes one
``vitals.reading`` event whose ``source_id`` is ``<reading_id>:<kind>``, so a re-sent call stores nothing twice.
The signature and timestamp are checked before a byte of the body is parsed; a body past ``max_body`` bytes is
refused as not authentic.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from carepath.connectors.device.signing import verify
from carepath.definition.events import EventIn
from carepath.plugins.contracts import CallbackRequest, Capabilities, ConnectorConfig, HisSource

MAX_MEASUREMENTS = 20


class DeviceConfig(ConnectorConfig):
    secret: SecretStr = Field(description="the shared HMAC secret of the device cloud ({env = ...})")
    system: str | None = Field(None, description="the event source name (default device:<connector name>)")
    max_skew: timedelta = Field(timedelta(minutes=5), description="how far the signed timestamp may be from now")
    max_body: int = Field(64 * 1024, ge=256, le=1024 * 1024, description="the largest body accepted, in bytes")


class DeviceConnector(HisSource):
    """A home-device cloud posting readings to ``/hooks/device/<name>``: an event source that only receives
    pushes (nothing to poll), so it is of the ``his`` kind of connectors."""

    type_name: ClassVar[str] = "device"
    Config = DeviceConfig
    capabilities: ClassVar[Capabilities] = Capabilities(callbacks=True)
    emulator: ClassVar[str | None] = "carepath.connectors.device.emulator:serve"

    @property
    def source(self) -> str:
        return self.config.system or f"device:{self.name}"

    def verify_callback(self, request: CallbackRequest) -> bool:
        if request.method != "POST" or len(request.body) > self.config.max_body:
            return False
        headers = {k.lower(): v for k, v in request.headers.items()}
        return verify(self.config.secret.get_secret_value(), headers, request.body,
                      max_skew=self.config.max_skew.total_seconds())

    def parse_callback(self, request: CallbackRequest) -> list[Any]:
        data = json.loads(request.body)
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        reading_id, mrn = _text(data, "reading_id"), _text(data, "patient_mrn")
        try:
            measured_at = datetime.fromisoformat(_text(data, "measured_at"))
        except ValueError:
            raise ValueError("field measured_at: not an ISO 8601 time") from None
        if measured_at.tzinfo is None:
            raise ValueError("field measured_at: needs a UTC offset, e.g. 2026-05-02T08:00:00+08:00")
        measurements = data.get("measurements")
        if not isinstance(measurements, list) or not 1 <= len(measurements) <= MAX_MEASUREMENTS:
            raise ValueError(f"field measurements: a list of 1 to {MAX_MEASUREMENTS} measurements")
        device = data.get("device_id")
        events = []
        for i, m in enumerate(measurements):
            if not isinstance(m, dict) or not isinstance(m.get("kind"), str) or "value" not in m:
                raise ValueError(f"field measurements[{i}]: needs kind (text) and value")
            payload = {"kind": m["kind"], "value": m["value"], "unit": m.get("unit"),
                       "device_id": str(device) if device is not None else None}
            events.append(EventIn(type="vitals.reading", source=self.source, source_id=f"{reading_id}:{m['kind']}",
                                  patient_mrn=mrn, occurred_at=measured_at, payload=payload))
        return events


def _text(data: dict, name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > 128:
        raise ValueError(f"field {name}: required text (at most 128 characters)")
    return value.strip()

"""The device connector passes the connector conformance suite (secrets, bad callbacks change nothing)."""

from __future__ import annotations

from carepath.connectors.device.connector import DeviceConnector
from carepath.connectors.device.emulator import HomeDevice
from carepath.connectors.device.signing import signed_headers
from carepath.plugins.contracts import CallbackRequest
from carepath.plugins.testing import ConnectorConformance

SECRET = "conformance-device-secret-abcdef"


class TestDeviceConformance(ConnectorConformance):
    connector_class = DeviceConnector
    valid_config = {"secret": SECRET}
    invalid_configs = [{}, {"secret": SECRET, "max_body": 10}, {"secret": SECRET, "colour": "red"}]

    def good_callback(self, connector):
        body = HomeDevice("http://unused", SECRET).body("M1", [{"kind": "glucose", "value": 5.2, "unit": "mmol/L"}])
        return CallbackRequest(body=body, headers={k.lower(): v for k, v in signed_headers(SECRET, body).items()},
                               method="POST", path="/hooks/device/conformance")

    def bad_callbacks(self, connector):
        good = self.good_callback(connector)
        wrong = {k.lower(): v for k, v in signed_headers("not-the-secret", good.body).items()}
        stale = {k.lower(): v for k, v in signed_headers(SECRET, good.body, now=1_600_000_000).items()}
        return [*super().bad_callbacks(connector), CallbackRequest(body=good.body, headers=wrong, method="POST"),
                CallbackRequest(body=good.body, headers=stale, method="POST")]


def test_a_good_callback_becomes_one_reading_event_per_measurement():
    connector = DeviceConnector.from_options("cuff", {"secret": SECRET})
    body = HomeDevice("http://unused", SECRET, "cuff-9").body(
        "M7", [{"kind": "systolic_bp", "value": 150, "unit": "mmHg"}, {"kind": "diastolic_bp", "value": 95}],
        reading_id="r-1")
    request = CallbackRequest(body=body, headers={k.lower(): v for k, v in signed_headers(SECRET, body).items()})
    events = connector.handle_callback(request)
    assert [(e.type, e.source, e.source_id, e.patient_mrn, e.payload["value"]) for e in events] == [
        ("vitals.reading", "device:cuff", "r-1:systolic_bp", "M7", 150),
        ("vitals.reading", "device:cuff", "r-1:diastolic_bp", "M7", 95)]

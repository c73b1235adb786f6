"""The contract types, and the HIS and survey conformance suites on small connectors."""

from __future__ import annotations

from typing import ClassVar, Optional

import pytest
from pydantic import SecretStr

from carepath.plugins.contracts import (
    CallbackRequest,
    Capabilities,
    Channel,
    ConnectorConfig,
    ErrorKind,
    HisSource,
    Message,
    SurveyProvider,
    classify_http_status,
    connector_kind,
    secret_fields,
    secret_values,
)
from carepath.plugins.testing import HisSourceConformance, SurveyProviderConformance


def _message(body: str, category: str = "clinical", **data: str) -> Message:
    return Message(idempotency_key="k", channel="sms", patient_id=1, address="13912345678", title="", body=body,
                   template="t", category=category, data=dict(data))


def test_capabilities_report_what_a_message_breaks() -> None:
    caps = Capabilities(max_length=10, needs_opt_out_text=True, opt_out_text="拒收请回复R",
                        template_data_max=4, template_data_pattern=r"[^/:]*")
    assert caps.problems(_message("short")) == []
    found = caps.problems(_message("x" * 11 + "拒收请回复R", "marketing", name="abcdef", link="http://x"))
    assert any("at most 10" in p for p in found)
    assert any("data.name" in p and "at most 4" in p for p in found)
    assert any("data.link" in p and "does not match" in p for p in found)
    assert any("opt-out" in p for p in Capabilities(needs_opt_out_text=True, opt_out_text="回T退订")
               .problems(_message("sale!", "marketing")))


@pytest.mark.parametrize(("status", "kind"), [(200, None), (302, None), (400, ErrorKind.PERMANENT),
                                              (404, ErrorKind.PERMANENT), (408, ErrorKind.RETRYABLE),
                                              (429, ErrorKind.RETRYABLE), (503, ErrorKind.RETRYABLE)])
def test_http_status_classification(status: int, kind: ErrorKind | None) -> None:
    assert classify_http_status(status) is kind


class SecretConfig(ConnectorConfig):
    key: SecretStr
    backup_key: Optional[SecretStr] = None
    app: str = "a"


def test_secret_fields_and_values() -> None:
    assert secret_fields(SecretConfig) == {"key", "backup_key"}
    assert secret_values(SecretConfig(key="k1-secret")) == ["k1-secret"]


def test_callback_request_headers_are_case_insensitive() -> None:
    request = CallbackRequest(body=b"{}", headers={"X-Signature": "abc"})
    assert request.header("x-signature") == request.header("X-SIGNATURE") == "abc"
    assert request.header("missing") == ""


def test_connector_kinds() -> None:
    assert [connector_kind(c) for c in (Channel, HisSource, SurveyProvider)] == ["channel", "his", "survey"]
    with pytest.raises(ValueError):
        connector_kind(str)


class FeedConfig(ConnectorConfig):
    base_url: str
    token: SecretStr


class Feed(HisSource):
    type_name: ClassVar[str] = "test-feed"
    Config = FeedConfig

    def poll(self, cursor):
        return [], cursor


class TestFeedConformance(HisSourceConformance):
    connector_class = Feed
    valid_config = {"base_url": "https://his.example.org/fhir", "token": "feed-token-123"}
    invalid_configs = [{"base_url": "https://his.example.org/fhir"}, {"token": "x", "base_url": 3}]


class LinkConfig(ConnectorConfig):
    base_url: str = "https://survey.example.org"
    signing_key: SecretStr


class Links(SurveyProvider):
    type_name: ClassVar[str] = "test-survey"
    Config = LinkConfig

    def make_link(self, survey, patient_id, *, touchpoint_id=None):
        return f"{self.config.base_url}/s/{survey}?p={patient_id}&t={touchpoint_id}"


class TestSurveyConformance(SurveyProviderConformance):
    connector_class = Links
    valid_config = {"signing_key": "survey-key-123"}
    invalid_configs = [{}]

"""Messaging rules of the SMS channels: templates only, segments, Tencent's parameter length,
marketing (consent, opt-out text, 08:00–21:00), unsubscribe keywords, configuration checks."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from carepath.cli.plugins import config_app
from carepath.config import ConfigError, build_channels, load_config
from carepath.connectors.sms_common.replies import is_unsubscribe
from carepath.runtime.unsubscribe import reply_intent
from carepath.connectors.sms_common.segments import segment_count
from carepath.definition.events import EventIn, PatientIn
from carepath.definition.journey_files import read_journey_text
from carepath.plugins.contracts import ErrorKind, Message
from carepath.store.schema import Touchpoint

from tests.connectors.sms_helpers import ALIYUN, PROVIDERS, TENCENT, TOKEN, build, close, sms_options


@pytest.mark.parametrize("text, segments", [
    ("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3), ("{" * 80, 1), ("{" * 81, 2),
    ("医" * 70, 1), ("医" * 71, 2), ("医" * 134, 2), ("医" * 135, 3), ("a" * 69 + "医", 1), ("a" * 70 + "医", 2),
])
def test_segment_count(text: str, segments: int) -> None:
    assert segment_count(text) == segments


@pytest.mark.parametrize("text, stop", [("R", True), ("r", True), (" TD ", True), ("td\n", True), ("退订", True),
                                        (" 退订 ", True), ("退订。", True), ("TD!", True), ("T", True),
                                        ("TDX", False), ("R 谢谢", False), ("好的", False), ("请问怎么退订？", False),
                                        ("", False)])
def test_unsubscribe_keywords(text: str, stop: bool) -> None:
    assert (reply_intent(text) == "unsubscribe") is stop
    assert (reply_intent(text, ["stop", "不要再发"]) == "unsubscribe") is (text.strip() in ("stop",))
    with pytest.deprecated_call(match="carepath.runtime.unsubscribe.reply_intent"):
        assert is_unsubscribe(text) is stop  # the old name still answers, for one release


def _message(template: str = "sms_followup", category: str = "clinical", body: str = "您好", **context) -> Message:
    return Message(idempotency_key="k-rules", channel="sms", patient_id=1, address="13912345678", title="",
                   body=body, template=template, category=category,
                   context={"patient": {"surname": "张"}, **context})


@pytest.mark.parametrize("provider", [ALIYUN, TENCENT], ids=["aliyun", "tencent"])
def test_free_text_is_refused_and_unmapped_templates_are_named(provider) -> None:
    with provider.make_emulator(None) as emulator:
        channel = provider.channel_class.from_options("sms", sms_options(provider, emulator))
        result = channel.send(_message(template="not_registered"))
        assert (result.error_kind, result.error_code) == (ErrorKind.PERMANENT, "template_not_mapped")
        assert "not_registered" in result.error
        assert channel.unmapped_templates(["sms_followup", "not_registered", "other"]) == ["not_registered", "other"]
        assert emulator.calls["SendSms"] == 0


def test_tencent_parameter_over_12_characters_is_refused_before_sending() -> None:
    with TENCENT.make_emulator(None) as emulator:
        options = sms_options(TENCENT, emulator)
        options["templates"]["sms_followup"]["params"] = {"name": "{{ patient.surname }}", "where": "{{ where }}"}
        channel = TENCENT.channel_class.from_options("sms", options)
        result = channel.send(_message(where="上海市第六人民医院东院门诊楼"))
        assert result.error_kind is ErrorKind.PERMANENT
        assert result.error_code == "InvalidParameterValue.TemplateParameterLengthLimit"
        assert "'where'" in result.error and "14 characters" in result.error
        assert emulator.calls["SendSms"] == 0
        assert channel.send(_message(where="东院门诊楼")).ok
        enterprise = TENCENT.channel_class.from_options("sms2", {**options, "param_max_length": None})
        emulator.param_max_length = 50
        assert enterprise.send(_message(where="上海市第六人民医院东院门诊楼")).ok


@pytest.mark.parametrize("provider", [ALIYUN, TENCENT], ids=["aliyun", "tencent"])
def test_marketing_sms_must_carry_the_opt_out_text(provider) -> None:
    with provider.make_emulator(None) as emulator:
        channel = provider.channel_class.from_options("sms", sms_options(provider, emulator))
        refused = channel.send(_message(category="marketing", body="义诊活动本周六举行"))
        assert (refused.error_kind, refused.error_code) == (ErrorKind.PERMANENT, "opt_out_missing")
        assert channel.capabilities.needs_opt_out_text and channel.capabilities.opt_out_text == "拒收请回复R"
        assert channel.send(_message(category="marketing", body="义诊活动本周六举行，拒收请回复R")).ok


def test_marketing_sms_needs_consent_and_waits_for_08_00(database_url, settings, clock) -> None:
    body = "{{ patient.surname }}先生/女士，本周六义诊，欢迎参加。拒收请回复R"
    s = build(ALIYUN, database_url, settings, clock, via=["sms"], category="marketing", body=body)
    try:
        clock.set(datetime(2026, 5, 1, 11, 0, tzinfo=timezone.utc))  # 19:00 in Shanghai
        s.enroll()
        report = s.dispatch(timedelta(hours=1, minutes=1))  # 20:01 local: no marketing consent
        assert report.outcomes["skipped"] == 1 and s.emulator.messages == []
        assert "no marketing consent" in s.touchpoint().reason

        s.engine.upsert_patient(PatientIn(mrn="M2", name="李四", phone="13900000002"))
        s.engine.ingest(EventIn(type="consent.changed", source="his", source_id="c1", patient_mrn="M2",
                                occurred_at=clock.now(), payload={"purpose": "marketing", "granted": True}))
        s.engine.ingest(EventIn(type="encounter.discharged", source="his", source_id="enc-M2", patient_mrn="M2",
                                occurred_at=datetime(2026, 5, 1, 11, 45, tzinfo=timezone.utc), payload={}))
        # due at 20:45 local, but the worker only gets to it at 21:10: held for the marketing window
        report = s.dispatch(timedelta(minutes=69))
        assert report.outcomes["deferred"] == 1 and s.emulator.messages == []
        [held] = s.rows(Touchpoint, patient_id=2)
        assert held.due_at == datetime(2026, 5, 2, 0, 0, tzinfo=timezone.utc)  # 08:00 local
        clock.set(datetime(2026, 5, 2, 0, 0, 30, tzinfo=timezone.utc))
        assert s.engine.dispatch_due().sent == 1
        [message] = s.emulator.messages
        assert message.phone == "13900000002" and message.params == {"name": "李"}
    finally:
        close(s)


@pytest.fixture
def sms_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The environment variables the test configurations reference."""
    monkeypatch.setenv("SMS_SECRET", "secret-from-env-0001")
    monkeypatch.setenv("SMS_HOOK_TOKEN", TOKEN)
    return monkeypatch


def _toml(tmp_path: Path, provider, templates: str = "", *, endpoint: str = "http://127.0.0.1:9",
          secret_line: str = '{env = "SMS_SECRET"}') -> Path:
    creds = {"aliyun-sms": f'access_key_id = "LTAI-test-key"\naccess_key_secret = {secret_line}\n',
             "tencent-sms": f'secret_id = "AKID-test"\nsecret_key = {secret_line}\nsms_sdk_app_id = "1400000001"\n'}
    path = tmp_path / "carepath.toml"
    path.write_text(f'[connectors.sms]\ntype = "{provider.type_name}"\nendpoint = "{endpoint}"\n'
                    f'sign_name = "仁济医院"\ncallback_token = {{env = "SMS_HOOK_TOKEN"}}\n{creds[provider.type_name]}'
                    f'{templates}', encoding="utf-8")
    return path


@pytest.mark.parametrize("provider", [ALIYUN, TENCENT], ids=["aliyun", "tencent"])
def test_configuration_from_carepath_toml(provider, tmp_path: Path, sms_env) -> None:
    literal = _toml(tmp_path, provider, secret_line='"literal-secret-0001"')
    with pytest.raises(ConfigError) as info:
        load_config(literal)
    assert any("is a secret" in p.message for p in info.value.problems)
    assert "literal-secret-0001" not in str(info.value)

    mapped = ('[connectors.sms.templates.sms_followup]\ncode = "T1"\n'
              'params = { name = "{{ patient.surname }}", day = "{{ anchors.discharge | date }}" }\n')
    path = _toml(tmp_path, provider, mapped)
    [channel] = build_channels(load_config(path)).values()
    assert list(channel.config.templates["sms_followup"].params) == ["name", "day"]  # order kept
    assert channel.config.callback_token.get_secret_value() == TOKEN

    journey_text = ("name: j\nenroll: {events: [encounter.discharged]}\nsteps:\n"
                    "  - {id: a, stage: post_visit, on: encounter.discharged, send: {template: sms_followup, via: [sms]},"
                    " confirm_within: 2h}\n"
                    "  - {id: b, stage: post_visit, on: encounter.discharged, send: {template: survey_link, via: [sms]}}\n"
                    "templates: {sms_followup: 您好, survey_link: 问卷}\n")
    journey, problems = read_journey_text(journey_text, known_templates=set(),
                                          channels=build_channels(load_config(path)))
    assert [p.message for p in problems] == [
        "channel 'sms' cannot send template 'survey_link': map it to a provider template under "
        "[connectors.sms.templates.survey_link] in carepath.toml"]
    assert problems[0].step == "b"


def test_config_check_names_journey_templates_without_a_provider_template(tmp_path: Path, sms_env) -> None:
    path = _toml(tmp_path, ALIYUN, '[connectors.sms.templates.visit_reminder]\ncode = "T1"\n')
    path.write_text(path.read_text(encoding="utf-8") + '\n[journeys]\nenabled = ["outpatient-visit"]\n',
                    encoding="utf-8")  # the stock journey runs only where it is enabled
    result = CliRunner().invoke(config_app, ["check", "--config", str(path)])
    assert result.exit_code == 1, result.output
    assert "connectors.sms.templates: no provider template for 'booking_confirmation'" in result.output
    assert "'visit_reminder'" not in result.output.split("cannot go out")[1]


@pytest.mark.parametrize("type_name", sorted(p.type_name for p in PROVIDERS.values()))
def test_carepath_emulator_command_serves_the_provider(type_name: str) -> None:
    carepath = Path(sys.executable).with_name("carepath")
    if not carepath.exists():
        pytest.skip("the carepath console script is not installed next to this interpreter")
    process = subprocess.Popen([str(carepath), "emulator", type_name, "--port", "0"], stdout=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = process.stdout.readline()
        assert f"{type_name} emulator on http://127.0.0.1:" in line
        url = line.split(" on ")[1].split()[0]
        assert requests.get(f"{url}/_emulator/messages", timeout=5).json() == []
        unsigned = requests.post(url, data=b"{}", timeout=5).json()  # refused with the provider's error
        assert unsigned.get("Code") == "MissingParameter" if type_name == "aliyun-sms" else \
            unsigned["Response"]["Error"]["Code"] == "AuthFailure.SignatureFailure"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_journeys_validate_names_templates_an_sms_channel_cannot_send(tmp_path: Path, sms_env) -> None:
    from carepath.cli.journeys import app as journeys_app

    config = _toml(tmp_path, TENCENT, '[connectors.sms.templates.followup]\ncode = "T1"\n')
    sms_env.setenv("CAREPATH_CONFIG", str(config))
    path = tmp_path / "j.yaml"
    path.write_text("name: j\nenroll: {events: [encounter.discharged]}\nsteps:\n"
                    "  - {id: a, stage: post_visit, on: encounter.discharged, send: {template: followup, via: [sms]}}\n"
                    "  - {id: b, stage: post_visit, on: encounter.discharged, send: {template: survey, via: [sms]}}\n"
                    "templates: {followup: 您好, survey: 问卷}\n", encoding="utf-8")
    result = CliRunner().invoke(journeys_app, ["validate", str(path)])
    assert result.exit_code == 1, result.output
    assert "channel 'sms' cannot send template 'survey'" in result.output
    assert "cannot send template 'followup'" not in result.output

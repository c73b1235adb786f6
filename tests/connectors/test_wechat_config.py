"""Configuring the wechat channel in carepath.toml, its template map and WeChat's field rules."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest
import requests

from carepath.config import ConfigError, build_channels, load_config
from carepath.connectors.wechat.fields import FieldRuleError, apply_rule
from carepath.plugins.contracts import Message

from tests.connectors.wechat_support import AES_KEY, APPID, OPENID, SECRET, TOKEN, make_wechat
from tests.connectors.wechat_support import emulator  # noqa: F401 - fixtures

TOML = textwrap.dedent(f'''
    [connectors.wx]
    type = "wechat"
    kind = "template"
    appid = "{APPID}"
    secret = {{env = "WX_SECRET"}}
    token = {{env = "WX_TOKEN"}}
    encoding_aes_key = {{env = "WX_AES_KEY"}}

    [connectors.wx.templates.visit_reminder]
    template_id = "TPL-visit"
    url = "https://hospital.example.org/visit"
    data = {{thing1 = "{{{{ event.department }}}}", time2 = "{{{{ event.start }}}}"}}
''')


@pytest.fixture
def wechat_env(monkeypatch):
    for name, value in {"WX_SECRET": SECRET, "WX_TOKEN": TOKEN, "WX_AES_KEY": AES_KEY}.items():
        monkeypatch.setenv(name, value)


def test_toml_with_env_secrets_builds_a_channel_and_reports_unmapped_templates(tmp_path, wechat_env):
    path = tmp_path / "carepath.toml"
    path.write_text(TOML, encoding="utf-8")
    channel = build_channels(load_config(path))["wx"]
    assert channel.type_name == "wechat" and channel.address_kind == "openid"
    assert channel.config.secret.get_secret_value() == SECRET
    assert channel.unmapped_templates(["visit_reminder", "report_ready", "followup"]) == ["report_ready", "followup"]


def test_literal_secret_and_bad_template_expression_are_reported_with_their_keys(tmp_path, wechat_env):
    path = tmp_path / "carepath.toml"
    path.write_text(TOML.replace('{env = "WX_SECRET"}', '"plain-text-secret"')
                    .replace("{{ event.start }}", "{{ event.start "), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "connectors.wx.secret: is a secret" in text and "plain-text-secret" not in text
    assert "connectors.wx.templates.visit_reminder.data" in text and "data.time2" in text


@pytest.mark.parametrize(("key", "value", "sent"), [
    ("thing1", "一二三四五六七八九十一二三四五六七八九十", "一二三四五六七八九十一二三四五六七八九十"),
    ("thing1", "一二三四五六七八九十一二三四五六七八九十一", "一二三四五六七八九十一二三四五六七八九…"),
    ("time2", "2026-05-02T00:30:00+00:00", "2026年5月2日 08:30"),
    ("time2", "15:01", "15:01"),
    ("date3", "2026-05-02 10:00:00+08:00", "2026年5月2日"),
    ("date3", "2026-05-02", "2026年5月2日"),
    ("number4", " 42.5 ", "42.5"),
    ("phrase5", "已预约", "已预约"),
    ("keyword1", "classic template fields pass unchanged", "classic template fields pass unchanged"),
])
def test_field_rules_fit_values_before_sending(key, value, sent):
    assert apply_rule(key, value, "Asia/Shanghai") == sent


@pytest.mark.parametrize(("key", "value", "problem"), [
    ("number1", "forty-two", "data.number1 is not a number"),
    ("phrase2", "已经预约成功了", "data.phrase2 has 7 characters"),
    ("time3", "tomorrow morning", "data.time3 is not a 24-hour time"),
    ("thing4", "  ", "data.thing4 is empty"),
])
def test_values_that_cannot_fit_are_refused_naming_the_field(key, value, problem):
    with pytest.raises(FieldRuleError, match=problem):
        apply_rule(key, value)


def test_mini_program_variant_sends_page_state_and_language(emulator):
    channel = make_wechat(emulator.url, kind="miniprogram", miniprogram_state="trial", lang="en_US",
                          templates={"visit_reminder": {"template_id": "MP-1", "page": "pages/visit?id=7",
                                                        "data": {"phrase1": "已预约"}}})
    message = Message(idempotency_key="tp-1:wechat", channel="wechat", patient_id=1, address=OPENID, title="",
                      body="", template="visit_reminder", category="clinical")
    assert channel.send(message).ok
    [sent] = emulator.sent
    assert sent.kind == "miniprogram" and "client_msg_id" not in sent.body
    assert {k: sent.body[k] for k in ("page", "miniprogram_state", "lang", "template_id")} == {
        "page": "pages/visit?id=7", "miniprogram_state": "trial", "lang": "en_US", "template_id": "MP-1"}
    refused = channel.send(replace(message, template="not_mapped"))
    assert refused.error_kind.value == "permanent" and refused.error_code == "unmapped_template"


def test_carepath_emulator_wechat_serves_tokens_on_the_port_it_prints():
    env = {**os.environ, "WECHAT_EMULATOR_SECRET": "s3cret-from-env"}
    proc = subprocess.Popen([sys.executable, "-c", "from carepath.cli import main; main()", "emulator", "wechat", "--port", "0"],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        url = line.split("listening on ")[1].strip()
        answer = requests.post(f"{url}/cgi-bin/stable_token", timeout=5, json={
            "grant_type": "client_credential", "appid": "wxemulator0000001", "secret": "s3cret-from-env"}).json()
        wrong = requests.post(f"{url}/cgi-bin/stable_token", timeout=5, json={
            "grant_type": "client_credential", "appid": "wxemulator0000001", "secret": "nope"}).json()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert answer["expires_in"] == 7200 and len(answer["access_token"]) > 32
    assert wrong["errcode"] == 40125

"""carepath.toml: connector instances, secrets from the environment, problems with key paths."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

import carepath.config as config_module
from carepath.cli.plugins import config_app
from carepath.config import (
    ConfigError,
    build_channels,
    build_connectors,
    configured_channel_names,
    load_config,
)
from carepath.connectors.console import ConsoleChannel
from carepath.connectors.outbox import OutboxChannel
from carepath.plugins import Channel, ConnectorConfig, HisSource, SendResult, hookimpl
from carepath.plugins.manager import PluginManager, load_plugins

SECRET = "s3cret-value-never-shown"


class SmsConfig(ConnectorConfig):
    sign_name: str
    access_key: SecretStr
    timeout: float = 5.0


class SmsChannel(Channel):
    type_name: ClassVar[str] = "test-sms"
    Config = SmsConfig

    def send(self, message):
        return SendResult.sent("sms-1")


class Feed(HisSource):
    type_name: ClassVar[str] = "test-feed"


class ExtraConnectors:
    @hookimpl
    def carepath_connectors(self):
        return [SmsChannel, Feed]


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch) -> PluginManager:
    manager = load_plugins()
    manager.pm.register(ExtraConnectors(), name="extra-connectors")
    monkeypatch.setattr(config_module, "get_plugin_manager", lambda: manager)
    return manager


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "carepath.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path, manager: PluginManager) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, manager)
    assert SECRET not in str(info.value)
    return {p.path: p.message for p in info.value.problems}


GOOD = """
[connectors.sms]
type = "test-sms"
sign_name = "某医院"
access_key = {env = "SMS_KEY"}

[connectors.his]
type = "test-feed"

[connectors.dev]
type = "console"
"""


def test_valid_file_builds_instances(tmp_path: Path, manager: PluginManager, monkeypatch) -> None:
    monkeypatch.setenv("SMS_KEY", SECRET)
    config = load_config(write(tmp_path, GOOD), manager)
    assert config.connectors["sms"].config.access_key.get_secret_value() == SECRET
    assert {n: s.kind for n, s in config.connectors.items()} == {"sms": "channel", "his": "his", "dev": "channel"}
    channels = build_channels(config, manager)
    assert set(channels) == {"sms", "dev"} and isinstance(channels["sms"], SmsChannel)
    assert channels["sms"].name == "sms"
    assert isinstance(build_connectors(config, "his")["his"], Feed)
    assert configured_channel_names(config) == {"sms", "dev"}
    assert SECRET not in repr(config)


def test_carepath_config_env_names_the_file(tmp_path: Path, manager: PluginManager, monkeypatch) -> None:
    monkeypatch.setenv("SMS_KEY", SECRET)
    monkeypatch.setenv("CAREPATH_CONFIG", str(write(tmp_path, GOOD)))
    assert configured_channel_names() == {"sms", "dev"}


def test_no_file_means_default_channels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAREPATH_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config.path is None and config.connectors == {}
    channels = build_channels(config, load_plugins())
    assert type(channels["console"]) is ConsoleChannel and type(channels["outbox"]) is OutboxChannel
    assert {n: c.name for n, c in channels.items()} == {"console": "console", "outbox": "outbox"}
    assert configured_channel_names(config) == {"console", "outbox"}


def test_literal_secret_is_refused(tmp_path: Path, manager: PluginManager) -> None:
    path = write(tmp_path, f'[connectors.sms]\ntype = "test-sms"\nsign_name = "x"\naccess_key = "{SECRET}"\n')
    found = problems(path, manager)
    assert "environment variable" in found["connectors.sms.access_key"]


def test_missing_env_var_unknown_key_and_type_all_reported(tmp_path: Path, manager: PluginManager,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    path = write(tmp_path, """
[connectors.sms]
type = "test-sms"
sign_name = "x"
access_key = {env = "NOT_SET_ANYWHERE"}

[connectors.dev]
type = "console"
adress = "phone"

[connectors.fax]
type = "fax"

[connectors.nameless]
sign_name = "x"

[connectors.slow]
type = "test-sms"
access_key = {env = "PATH"}
timeout = "soon"

[database]
url = "sqlite://"
""")
    found = problems(path, manager)
    assert found["connectors.sms.access_key"] == "environment variable NOT_SET_ANYWHERE is not set"
    assert found["connectors.dev.adress"].startswith("unknown key (known for console: type, address")
    assert "unknown connector type 'fax'" in found["connectors.fax.type"] and "test-sms" in found["connectors.fax.type"]
    assert found["connectors.nameless.type"].startswith("required")
    assert found["connectors.slow.sign_name"] == "required key missing"
    assert "number" in found["connectors.slow.timeout"]
    assert "unknown section" in found["database"]


def test_bad_toml_and_missing_explicit_file(tmp_path: Path, manager: PluginManager) -> None:
    found = problems(write(tmp_path, "[connectors.sms\n"), manager)
    assert "not valid TOML" in found["carepath.toml"]
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nowhere.toml", manager)


def test_config_check_command(tmp_path: Path, manager: PluginManager, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setenv("SMS_KEY", SECRET)
    ok = runner.invoke(config_app, ["check", "--config", str(write(tmp_path, GOOD))])
    assert ok.exit_code == 0, ok.output
    assert "sms" in ok.output and "test-feed" in ok.output and "OK" in ok.output

    bad = write(tmp_path, f'[connectors.sms]\ntype = "test-sms"\nsign_name = "x"\naccess_key = "{SECRET}"\n')
    result = runner.invoke(config_app, ["check", "--config", str(bad)])
    assert result.exit_code == 1
    assert "connectors.sms.access_key" in result.output and SECRET not in result.output
    assert "Traceback" not in result.output


def test_config_check_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAREPATH_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(config_app, ["check"])
    assert result.exit_code == 0 and "default channels" in result.output

"""Loading carepath.toml never echoes a secret, whatever is wrong with it."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import BaseModel, SecretStr, field_validator

from carepath.config import ConfigError, load_config
from carepath.plugins import Channel, ConnectorConfig, SendResult, hookimpl
from carepath.plugins.manager import PluginManager, load_plugins

SECRET = "sk-live-7d2f9a41c0"
NUMERIC_SECRET = 918273645501


class Region(BaseModel):
    code: int


class VaultConfig(ConnectorConfig):
    app_key: SecretStr
    region: Region | None = None
    account: str = "default"

    @field_validator("app_key")
    @classmethod
    def _hex(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value().isalnum():  # a careless plugin echoes the value it refuses
            raise ValueError(f"app_key {v.get_secret_value()} must be letters and digits")
        return v

    @field_validator("account")
    @classmethod
    def _account(cls, v: str) -> str:
        if v.startswith("sk-"):
            raise ValueError(f"account {v} looks like a key")
        return v


class VaultChannel(Channel):
    type_name: ClassVar[str] = "test-vault"
    Config = VaultConfig

    def send(self, message):
        return SendResult.sent("v-1")


class VaultPlugin:
    @hookimpl
    def carepath_connectors(self):
        return [VaultChannel]


@pytest.fixture
def manager() -> PluginManager:
    """The installed plugins plus the vault connector (handed to load_config)."""
    manager = load_plugins()
    manager.pm.register(VaultPlugin(), name="vault-plugin")
    return manager


def refused(tmp_path: Path, manager: PluginManager, body: str) -> dict[str, str]:
    path = tmp_path / "carepath.toml"
    path.write_text('[connectors.vault]\ntype = "test-vault"\n' + body, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, manager)
    shown = str(info.value) + repr(info.value.problems)
    for secret in (SECRET, str(NUMERIC_SECRET), "7d2f9a41c0"):
        assert secret not in shown
    return {p.path: p.message for p in info.value.problems}


@pytest.mark.parametrize("literal", [str(NUMERIC_SECRET), f'["{SECRET}"]', f'{{ value = "{SECRET}" }}',
                                     f'"{SECRET}"'])
def test_a_literal_secret_of_any_type_is_refused_without_its_value(tmp_path, manager, literal):
    found = refused(tmp_path, manager, f"app_key = {literal}\n")
    assert "environment variable" in found["connectors.vault.app_key"]


def test_a_secret_from_the_environment_refused_by_its_validator_is_not_echoed(tmp_path, manager, monkeypatch):
    monkeypatch.setenv("VAULT_KEY", SECRET)
    found = refused(tmp_path, manager, 'app_key = {env = "VAULT_KEY"}\n')
    assert found == {"connectors.vault.app_key": "invalid secret (value error; the value is not shown)"}


def test_a_referenced_value_echoed_by_another_field_is_blanked(tmp_path, manager, monkeypatch):
    monkeypatch.setenv("VAULT_KEY", "abc123")
    monkeypatch.setenv("VAULT_ACCOUNT", SECRET)
    found = refused(tmp_path, manager, 'app_key = {env = "VAULT_KEY"}\naccount = {env = "VAULT_ACCOUNT"}\n'
                                       'region = {code = "north"}\n')
    assert found["connectors.vault.account"] == "Value error, account **** looks like a key"
    assert "connectors.vault.region.code" in found

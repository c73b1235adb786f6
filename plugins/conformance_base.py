"""The checks every connector kind shares (configuration, secret hygiene, inbound callbacks); the suites
plugins subclass are in :mod:`carepath.plugins.testing`."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Iterable, Mapping

import pydantic
import pytest

from carepath.plugins.contracts import (
    CallbackRejected,
    CallbackRequest,
    Connector,
    ConnectorConfig,
    secret_fields,
    secret_values,
)


ADDRESS_KINDS = {"phone", "openid", "none"}


def assert_secrets_absent(where: str, text: str, secrets: Iterable[str]) -> None:
    """Fail when any of ``secrets`` appears in ``text`` (without showing the secret)."""
    for secret in secrets:
        if secret and secret in text:
            pytest.fail(f"a secret value leaked into {where}")


class ConnectorConformance:
    """Checks every connector passes: configuration, secret hygiene, inbound callbacks.

    Attributes to set: ``connector_class``, ``valid_config`` (options as in
    ``carepath.toml``, secrets as plain test values), ``invalid_configs``.
    Methods to override when they apply: :meth:`bad_callbacks`,
    :meth:`good_callback`, :meth:`observe_state`.
    """

    connector_class: ClassVar[type[Connector]]
    valid_config: ClassVar[Mapping[str, Any]] = {}
    invalid_configs: ClassVar[list[Mapping[str, Any]]] = []
    #: the callback signature covers the body, so a tampered body must be refused
    #: (False for shared-token schemes, which authenticate the sender only)
    callback_signs_body: ClassVar[bool] = True

    # -- hooks for the plugin -------------------------------------------------------

    def connector_type(self) -> type[Connector]:
        """The connector class under test."""
        return self.connector_class

    def make_connector(self, config: Mapping[str, Any] | None = None, name: str = "conformance") -> Connector:
        """A connector built from ``config`` (``valid_config`` by default)."""
        return self.connector_type().from_options(name, self.valid_config if config is None else config)

    def secrets(self) -> list[str]:
        """Secret values of ``valid_config`` that must never leak."""
        return secret_values(self.connector_type().Config.model_validate(dict(self.valid_config)))

    def bad_callbacks(self, connector: Connector) -> list[CallbackRequest]:
        """Callbacks that must be rejected: add ones signed with a wrong secret, stale timestamps..."""
        found = [CallbackRequest(),
                 CallbackRequest(body=b'{"events": []}', headers={"content-type": "application/json"})]
        good = self.good_callback(connector)
        if self.callback_signs_body and good is not None and good.body:
            found.append(CallbackRequest(body=good.body + b" ", headers=good.headers, query=good.query,
                                         method=good.method, path=good.path))
        return found

    def good_callback(self, connector: Connector) -> CallbackRequest | None:
        """A correctly signed callback for ``connector``, or ``None`` when you cannot make one."""
        return None

    def observe_state(self, connector: Connector) -> Any:
        """A snapshot of whatever a callback could change (emulator records, rows); compared before/after."""
        return None

    # -- helpers -----------------------------------------------------------------------

    def _require_callbacks(self) -> None:
        if not self.connector_type().capabilities.callbacks:
            pytest.skip(f"{self.connector_type().__name__}: capabilities.callbacks is False (no inbound callbacks)")

    # -- configuration -----------------------------------------------------------------

    def test_declares_type_and_config(self) -> None:
        cls = self.connector_type()
        assert re.fullmatch(r"[a-z][a-z0-9_\-]*", cls.type_name or ""), \
            f"{cls.__name__}.type_name must be a lower-case identifier, got {cls.type_name!r}"
        assert issubclass(cls.Config, ConnectorConfig), f"{cls.__name__}.Config must subclass ConnectorConfig"
        assert cls.Config.model_config.get("extra") == "forbid", f"{cls.__name__}.Config must forbid unknown keys"

    def test_valid_config_accepted(self) -> None:
        connector = self.make_connector()
        assert isinstance(connector, self.connector_type())
        assert isinstance(connector.config, self.connector_type().Config)

    def test_invalid_configs_rejected(self) -> None:
        if not self.invalid_configs:
            pytest.skip("invalid_configs is empty: list option sets your Config must refuse")
        for options in self.invalid_configs:
            with pytest.raises(pydantic.ValidationError) as info:
                self.make_connector(options)
            errors = info.value.errors()
            assert errors and all(e.get("loc") or e.get("msg") for e in errors), "validation errors must say what"
            assert_secrets_absent("a configuration error", str(info.value), self.secrets())

    def test_unknown_key_rejected(self) -> None:
        with pytest.raises(pydantic.ValidationError) as info:
            self.make_connector({**self.valid_config, "no_such_option": 1})
        assert any(e["loc"] == ("no_such_option",) for e in info.value.errors())
        assert_secrets_absent("a configuration error", str(info.value), self.secrets())

    def test_secrets_absent_from_repr(self) -> None:
        cls = self.connector_type()
        if not secret_fields(cls.Config):
            pytest.skip(f"{cls.Config.__name__} declares no SecretStr field")
        connector = self.make_connector()
        secrets = self.secrets()
        assert secrets, "valid_config must give the secret fields test values"
        for where, text in [("repr(connector)", repr(connector)), ("str(connector)", str(connector)),
                            ("repr(config)", repr(connector.config)), ("str(config)", str(connector.config)),
                            ("config JSON", connector.config.model_dump_json())]:
            assert_secrets_absent(where, text, secrets)

    # -- inbound callbacks -------------------------------------------------------------

    def test_callback_capability_matches_implementation(self) -> None:
        cls = self.connector_type()
        verifies = cls.verify_callback is not Connector.verify_callback
        assert verifies == cls.capabilities.callbacks, (
            f"{cls.__name__} overrides verify_callback: declare Capabilities(callbacks=True)" if verifies
            else f"{cls.__name__} declares callbacks=True but does not override verify_callback")

    def test_callback_bad_signature_rejected(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._require_callbacks()
        connector = self.make_connector()
        parsed: list[CallbackRequest] = []
        monkeypatch.setattr(connector, "parse_callback", lambda request: parsed.append(request) or [])
        for index, request in enumerate(self.bad_callbacks(connector)):
            before = self.observe_state(connector)
            assert connector.verify_callback(request) is False, f"accepted bad callback #{index} of bad_callbacks()"
            with pytest.raises(CallbackRejected):
                connector.handle_callback(request)
            assert parsed == [], "parse_callback ran on a callback that failed verification"
            assert self.observe_state(connector) == before, "a rejected callback changed state"

    def test_callback_good_signature_accepted(self) -> None:
        self._require_callbacks()
        connector = self.make_connector()
        request = self.good_callback(connector)
        if request is None:
            pytest.skip("good_callback() not provided")
        assert connector.verify_callback(request) is True
        assert isinstance(connector.handle_callback(request), list)

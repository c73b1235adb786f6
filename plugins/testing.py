"""The connector conformance suite, for any plugin's own pytest run.

Subclass the base for your connector kind in a ``test_*.py`` file, name the
subclass ``Test...`` and fill in the class attributes::

    from carepath.plugins.testing import ChannelConformance

    class TestMyChannel(ChannelConformance):
        channel_class = MyChannel
        valid_config = {"url": "https://example.org/hook", "secret": "s3cret-for-tests"}
        invalid_configs = [{"url": "not a url", "secret": "x"}]

        def make_network_channel(self, url, timeout):
            return MyChannel("conformance", MyChannel.Config(url=url, secret="s3cret-for-tests", timeout=timeout))

Checks that do not apply to a connector are skipped with a reason, decided by
its ``capabilities`` (``network``, ``callbacks``) and ``Config``: a console
channel has no provider to time out, so its timeout checks are skipped, not
passed. The suite needs pytest; it uses only loopback servers on 127.0.0.1.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any, ClassVar, Iterable, Mapping

import pydantic
import pytest

from carepath.plugins._loopback import refused_url, silent_server, status_server
from carepath.plugins.contracts import (
    CallbackRejected,
    CallbackRequest,
    Channel,
    Connector,
    ConnectorConfig,
    ErrorKind,
    HisSource,
    Message,
    SendResult,
    SourceUnavailable,
    SurveyProvider,
    secret_fields,
    secret_values,
)

__all__ = [
    "ChannelConformance",
    "ConnectorConformance",
    "HisSourceConformance",
    "SurveyProviderConformance",
    "assert_secrets_absent",
    "refused_url",
    "silent_server",
    "status_server",
]

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


class ChannelConformance(ConnectorConformance):
    """Checks every :class:`Channel` passes, on top of :class:`ConnectorConformance`.

    Set ``channel_class``. Network channels (``capabilities.network``) also
    implement :meth:`make_network_channel` and usually override the
    ``channel`` fixture to point at their loopback emulator.
    """

    channel_class: ClassVar[type[Channel]]
    timeout: ClassVar[float] = 0.5
    timeout_margin: ClassVar[float] = 1.5
    RETRYABLE_STATUSES: ClassVar[tuple[int, ...]] = (429, 500, 502, 503, 504)
    PERMANENT_STATUSES: ClassVar[tuple[int, ...]] = (400, 401, 403, 404, 422)

    def connector_type(self) -> type[Connector]:
        return self.channel_class

    def make_network_channel(self, url: str, timeout: float) -> Channel:
        """A channel sending to ``url`` with a ``timeout`` in seconds (network channels must override)."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_network_channel(url, timeout)")

    def sample_message(self, key: str = "conformance-1") -> Message:
        """The message sent by the checks; its address must never show unmasked in logs."""
        return Message(idempotency_key=key, channel="conformance", patient_id=1, address="13912345678",
                       title="随访提醒", body="请按时复诊。Please come to your follow-up visit.",
                       template="conformance", category="clinical", data={"visit": "cardiology"})

    @pytest.fixture
    def channel(self) -> Channel:
        """A channel ready to send ``sample_message`` (override to bind a database or an emulator)."""
        if self.channel_class.capabilities.network:
            pytest.skip("network channel: override the `channel` fixture to point at your emulator")
        return self.make_connector()  # type: ignore[return-value]

    # -- helpers -----------------------------------------------------------------------

    def _require_network(self) -> None:
        if not self.channel_class.capabilities.network:
            pytest.skip(f"{self.channel_class.__name__}: capabilities.network is False (no provider to call)")

    def _send_within(self, channel: Channel, message: Message, limit: float) -> tuple[SendResult, float]:
        """Send in a thread; fail if it raises or has not returned within ``limit`` seconds."""
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["result"] = channel.send(message)
            except BaseException as exc:  # noqa: BLE001 - reported below
                outcome["error"] = exc

        started = time.monotonic()
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(limit)
        elapsed = time.monotonic() - started
        if worker.is_alive():
            pytest.fail(f"send() did not return within {limit:.1f} s")
        if "error" in outcome:
            pytest.fail(f"send() raised {type(outcome['error']).__name__} instead of returning a SendResult")
        result = outcome["result"]
        assert isinstance(result, SendResult), f"send() returned {type(result).__name__}, not SendResult"
        return result, elapsed

    def _check_hygiene(self, result: SendResult, message: Message, caplog: pytest.LogCaptureFixture,
                       output: str = "") -> None:
        hidden = [*self.secrets(), message.address]
        assert_secrets_absent("the SendResult error", f"{result.error} {result.error_code}", hidden)
        assert_secrets_absent("the logs", caplog.text, hidden)
        assert_secrets_absent("the output", output, hidden)

    def _network_send(self, url: str, caplog: pytest.LogCaptureFixture) -> tuple[SendResult, float]:
        caplog.set_level(logging.DEBUG)
        message = self.sample_message()
        result, elapsed = self._send_within(self.make_network_channel(url, self.timeout), message,
                                            self.timeout + self.timeout_margin)
        self._check_hygiene(result, message, caplog)
        return result, elapsed

    # -- sending -----------------------------------------------------------------------

    def test_capabilities_consistent(self) -> None:
        cls = self.channel_class
        caps = cls.capabilities
        assert caps.max_length is None or caps.max_length > 0
        assert caps.template_data_max is None or caps.template_data_max > 0
        assert not caps.needs_opt_out_text or caps.opt_out_text, "needs_opt_out_text without opt_out_text"
        if caps.template_data_pattern:
            re.compile(caps.template_data_pattern)
        assert self.make_connector().address_kind in ADDRESS_KINDS  # type: ignore[attr-defined]

    def test_send_returns_classified_result(self, channel: Channel, caplog: pytest.LogCaptureFixture,
                                            capsys: pytest.CaptureFixture[str]) -> None:
        caplog.set_level(logging.DEBUG)
        message = self.sample_message()
        result, _ = self._send_within(channel, message, 10)
        assert result.ok or result.error_kind in (ErrorKind.RETRYABLE, ErrorKind.PERMANENT), \
            "a failed SendResult must be classified retryable or permanent"
        captured = capsys.readouterr()
        self._check_hygiene(result, message, caplog, captured.out + captured.err)

    def test_same_idempotency_key_same_provider_id(self, channel: Channel) -> None:
        message = self.sample_message("conformance-idem")
        first, _ = self._send_within(channel, message, 10)
        second, _ = self._send_within(channel, message, 10)
        if not (first.ok and second.ok):
            pytest.skip("the channel did not accept the sample message")
        assert first.provider_id == second.provider_id, "a retry with the same idempotency key sent twice"

    def test_timeout_honoured(self, caplog: pytest.LogCaptureFixture) -> None:
        self._require_network()
        with silent_server() as server:
            result, elapsed = self._network_send(server.url, caplog)
        assert not result.ok and result.error_kind is ErrorKind.RETRYABLE, \
            f"a timeout must be retryable, got {result.error_kind}"
        assert elapsed <= self.timeout + self.timeout_margin

    def test_connection_refused_retryable(self, caplog: pytest.LogCaptureFixture) -> None:
        self._require_network()
        result, _ = self._network_send(refused_url(), caplog)
        assert not result.ok and result.error_kind is ErrorKind.RETRYABLE

    @pytest.mark.parametrize("status", RETRYABLE_STATUSES)
    def test_transient_errors_retryable(self, status: int, caplog: pytest.LogCaptureFixture) -> None:
        self._require_network()
        with status_server(status) as server:
            result, _ = self._network_send(server.url, caplog)
        assert not result.ok and result.error_kind is ErrorKind.RETRYABLE, \
            f"HTTP {status} must be retryable, got {result.error_kind}"

    @pytest.mark.parametrize("status", PERMANENT_STATUSES)
    def test_client_errors_permanent(self, status: int, caplog: pytest.LogCaptureFixture) -> None:
        self._require_network()
        with status_server(status) as server:
            result, _ = self._network_send(server.url, caplog)
        assert not result.ok and result.error_kind is ErrorKind.PERMANENT, \
            f"HTTP {status} must be permanent, got {result.error_kind}"


class HisSourceConformance(ConnectorConformance):
    """Checks every :class:`HisSource` passes (set ``connector_class``).

    Polling sources (``capabilities.network``) implement
    :meth:`make_network_source`; the suite then checks that a server that
    does not answer, refuses the connection or answers 5xx/429 makes
    :meth:`HisSource.poll` raise :class:`SourceUnavailable` within the timeout
    (so the caller keeps its cursor), never another exception.
    """

    connector_class: ClassVar[type[HisSource]]
    timeout: ClassVar[float] = 0.5
    timeout_margin: ClassVar[float] = 1.5
    UNAVAILABLE_STATUSES: ClassVar[tuple[int, ...]] = (429, 500, 502, 503, 504)

    def make_network_source(self, url: str, timeout: float) -> HisSource:
        """A source polling ``url`` with a ``timeout`` in seconds (polling sources must override)."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_network_source(url, timeout)")

    def test_is_his_source(self) -> None:
        assert issubclass(self.connector_type(), HisSource)

    def _poll_unavailable(self, url: str, caplog: pytest.LogCaptureFixture) -> float:
        if not self.connector_type().capabilities.network:
            pytest.skip(f"{self.connector_type().__name__}: capabilities.network is False (nothing to poll)")
        source = self.make_network_source(url, self.timeout)
        started = time.monotonic()
        with caplog.at_level(logging.DEBUG):
            with pytest.raises(SourceUnavailable):
                source.poll(None)
        assert_secrets_absent("the logs", caplog.text, self.secrets())
        return time.monotonic() - started

    def test_poll_timeout_is_unavailable(self, caplog: pytest.LogCaptureFixture) -> None:
        with silent_server() as server:
            elapsed = self._poll_unavailable(server.url, caplog)
        assert elapsed <= self.timeout + self.timeout_margin, f"poll took {elapsed:.1f} s past its timeout"

    def test_poll_refused_is_unavailable(self, caplog: pytest.LogCaptureFixture) -> None:
        self._poll_unavailable(refused_url(), caplog)

    @pytest.mark.parametrize("status", UNAVAILABLE_STATUSES)
    def test_poll_server_error_is_unavailable(self, status: int, caplog: pytest.LogCaptureFixture) -> None:
        with status_server(status) as server:
            self._poll_unavailable(server.url, caplog)


class SurveyProviderConformance(ConnectorConformance):
    """Checks every :class:`SurveyProvider` passes (set ``connector_class``)."""

    connector_class: ClassVar[type[SurveyProvider]]
    #: a survey name ``valid_config`` maps (providers that map surveys refuse unknown names)
    survey_name: ClassVar[str] = "conformance"

    def test_link_is_url_without_secrets(self) -> None:
        provider = self.make_connector()
        assert isinstance(provider, SurveyProvider)
        link = provider.make_link(self.survey_name, 1, touchpoint_id=1)
        assert re.match(r"https?://", link), f"make_link must return an http(s) URL, got {link!r}"
        assert_secrets_absent("the survey link", link, self.secrets())

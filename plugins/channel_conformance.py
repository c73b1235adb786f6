"""The channel conformance suite (sending, idempotency, timeouts, errors, look-ups), re-exported by
:mod:`carepath.plugins.testing`."""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import datetime, timezone
from typing import Any, ClassVar

import pytest

from carepath.plugins._loopback import refused_url, silent_server, status_server
from carepath.plugins.contracts import Channel, Connector, ErrorKind, LookupResult, LookupStatus, Message, SendResult
from carepath.plugins.conformance_base import ADDRESS_KINDS, ConnectorConformance, assert_secrets_absent


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

    def _require_lookup(self) -> None:
        if not self.channel_class.capabilities.lookup:
            pytest.skip(f"{self.channel_class.__name__}: capabilities.lookup is False (re-sends rely on the "
                        "provider deduplicating by idempotency key)")

    def _lookup_within(self, channel: Channel, message: Message, limit: float) -> LookupResult:
        """Look up in a thread; fail if it raises or has not returned within ``limit`` seconds."""
        result, _ = self._within("lookup", lambda: channel.lookup(message, datetime.now(timezone.utc)),
                                 LookupResult, limit)
        assert isinstance(result.status, LookupStatus), "LookupResult.status must be a LookupStatus"
        return result

    def _require_network(self) -> None:
        if not self.channel_class.capabilities.network:
            pytest.skip(f"{self.channel_class.__name__}: capabilities.network is False (no provider to call)")

    @staticmethod
    def _within(name: str, call: Any, expected: type, limit: float) -> tuple[Any, float]:
        """Run ``call`` in a thread; fail if it raises, has not returned within ``limit`` seconds,
        or returns something other than ``expected``."""
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["result"] = call()
            except BaseException as exc:  # noqa: BLE001 - reported below
                outcome["error"] = exc

        started = time.monotonic()
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(limit)
        elapsed = time.monotonic() - started
        if worker.is_alive():
            pytest.fail(f"{name}() did not return within {limit:.1f} s")
        if "error" in outcome:
            pytest.fail(f"{name}() raised {type(outcome['error']).__name__} instead of returning a "
                        f"{expected.__name__}")
        result = outcome["result"]
        assert isinstance(result, expected), f"{name}() returned {type(result).__name__}, not {expected.__name__}"
        return result, elapsed

    def _send_within(self, channel: Channel, message: Message, limit: float) -> tuple[SendResult, float]:
        """Send in a thread; fail if it raises or has not returned within ``limit`` seconds."""
        return self._within("send", lambda: channel.send(message), SendResult, limit)

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

    # -- reconciling unknown attempts (capabilities.lookup) ------------------------------

    def test_lookup_capability_matches_implementation(self) -> None:
        cls = self.channel_class
        implements = cls.lookup is not Channel.lookup
        assert implements == cls.capabilities.lookup, (
            f"{cls.__name__} overrides lookup: declare Capabilities(lookup=True)" if implements
            else f"{cls.__name__} declares lookup=True but does not override lookup")

    def test_lookup_finds_an_accepted_message(self, channel: Channel, caplog: pytest.LogCaptureFixture) -> None:
        self._require_lookup()
        caplog.set_level(logging.DEBUG)
        message = self.sample_message("conformance-lookup")
        sent, _ = self._send_within(channel, message, 10)
        if not sent.ok:
            pytest.skip("the channel did not accept the sample message")
        found = self._lookup_within(channel, message, 10)
        assert found.status is LookupStatus.ACCEPTED, f"lookup of a message just sent answered {found.status.value}"
        assert found.provider_id, "lookup of an accepted message must name its provider id (receipts match by it)"
        assert_secrets_absent("the LookupResult detail", found.detail or "", [*self.secrets(), message.address])
        assert_secrets_absent("the logs", caplog.text, [*self.secrets(), message.address])

    def test_lookup_of_a_message_never_sent_is_not_accepted(self, channel: Channel) -> None:
        self._require_lookup()
        found = self._lookup_within(channel, self.sample_message("conformance-never-sent"), 10)
        assert found.status in (LookupStatus.NOT_FOUND, LookupStatus.UNKNOWN), \
            "lookup answered accepted for a key never sent: a crashed message would never go out"
        assert found.provider_id is None

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

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
its ``capabilities`` (``network``, ``callbacks``, ``lookup``) and ``Config``: a console
channel has no provider to time out, so its timeout checks are skipped, not
passed. The suite needs pytest; it uses only loopback servers on 127.0.0.1.
"""

from __future__ import annotations

import logging
import re
import time
from typing import ClassVar

import pytest

from carepath.plugins._loopback import refused_url, silent_server, status_server
from carepath.plugins.contracts import HisSource, SourceUnavailable, SurveyProvider
from carepath.plugins.channel_conformance import ChannelConformance
from carepath.plugins.conformance_base import ConnectorConformance, assert_secrets_absent

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

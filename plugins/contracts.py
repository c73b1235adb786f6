"""Connector contracts: the small typed base classes every connector implements.

Three kinds of connector share one base (:class:`Connector`): a name, a
pydantic configuration model (``Config``, unknown keys are errors, secrets are
``SecretStr`` fields) and the inbound callback contract (verify, then parse).

- :class:`Channel` sends messages (``send(message) -> SendResult``);
- :class:`HisSource` yields hospital events since a cursor, or receives pushes;
- :class:`SurveyProvider` makes patient-specific survey links.
"""

from __future__ import annotations

import enum
import re
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Iterable, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, SecretBytes, SecretStr


class ErrorKind(str, enum.Enum):
    """How the dispatcher treats a failed send."""

    RETRYABLE = "retryable"  # try the same channel again later (backoff)
    PERMANENT = "permanent"  # this channel cannot deliver this message: fall to the next


@dataclass(frozen=True, slots=True)
class Message:
    """One rendered message ready for a channel.

    ``address`` holds the decrypted contact for the channel's address kind; a
    connector must never log it unmasked. ``idempotency_key`` is stable across
    retries of the same touchpoint on the same channel: connectors pass it to
    the provider's dedup field (WeChat ``client_msg_id``, SMS ``OutId``).
    """

    idempotency_key: str
    channel: str
    patient_id: int
    address: str
    title: str
    body: str
    template: str
    category: str
    data: dict[str, Any] = field(default_factory=dict)
    #: What the journey's template saw (``patient``, ``event``, ``anchors``, ``journey``, ``now``):
    #: connectors that map a carepath template to a provider template render each provider
    #: field from it with :func:`carepath.definition.expressions.render`. Never logged.
    context: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class SendResult:
    """Outcome of one provider call.

    ``error`` is shown to operators: it must never contain a secret or an
    unmasked address.
    """

    ok: bool
    provider_id: str | None = None
    error_kind: ErrorKind | None = None
    error_code: str | None = None
    error: str | None = None
    cost: float | None = None
    #: a retryable failure's hint: try again no sooner than this (account problems, rate limits)
    retry_after: timedelta | None = None
    #: accepted, but nothing reaches the patient until someone confirms it (WeCom mass messages): the
    #: delivery is recorded ``pending_confirmation`` and the channel reports the outcome as a receipt later
    pending: bool = False

    @classmethod
    def sent(cls, provider_id: str | None, cost: float | None = None) -> "SendResult":
        """The provider accepted the message."""
        return cls(ok=True, provider_id=provider_id, cost=cost)

    @classmethod
    def awaiting_confirmation(cls, provider_id: str) -> "SendResult":
        """The provider took the message but holds it until a person confirms it (``pending_confirmation``)."""
        return cls(ok=True, provider_id=provider_id, pending=True)

    @classmethod
    def retryable(cls, code: str, error: str = "", retry_after: timedelta | None = None) -> "SendResult":
        """A transient failure (timeout, 5xx, rate limit): retry later on the same channel."""
        return cls(ok=False, error_kind=ErrorKind.RETRYABLE, error_code=code, error=error, retry_after=retry_after)

    @classmethod
    def permanent(cls, code: str, error: str = "") -> "SendResult":
        """This channel cannot deliver this message: fall through to the next one."""
        return cls(ok=False, error_kind=ErrorKind.PERMANENT, error_code=code, error=error)

    @property
    def retryable_error(self) -> bool:
        return self.error_kind is ErrorKind.RETRYABLE


class LookupStatus(str, enum.Enum):
    """What the provider says about an earlier call carrying an idempotency key."""

    ACCEPTED = "accepted"  # the provider took the message: do not send it again
    NOT_FOUND = "not_found"  # the provider never took it: sending again is safe
    UNKNOWN = "unknown"  # the provider cannot tell yet (look up again later)


@dataclass(frozen=True, slots=True)
class LookupResult:
    """Answer of :meth:`Channel.lookup` for one earlier attempt."""

    status: LookupStatus
    provider_id: str | None = None
    delivered: bool | None = None
    cost: float | None = None
    detail: str | None = None


def classify_http_status(status: int) -> ErrorKind | None:
    """The usual HTTP classification: ``None`` for 2xx/3xx, retryable for 408/429/5xx, else permanent."""
    if status < 400:
        return None
    if status in (408, 425, 429) or status >= 500:
        return ErrorKind.RETRYABLE
    return ErrorKind.PERMANENT


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a connector can carry and do; the dispatcher, validator and conformance suite respect these.

    - ``max_length``: longest message body in characters (SMS segments, WeChat fields);
    - ``needs_opt_out_text`` / ``opt_out_text``: marketing messages must carry this text;
    - ``template_data_max`` / ``template_data_pattern``: rules every template data value
      must follow (WeChat ``thing`` fields: 20 characters; SMS variables: no URLs...);
    - ``network``: the connector talks to a provider over the network (the
      conformance suite then checks timeouts and error classification);
    - ``callbacks``: the connector accepts inbound callbacks (receipts, replies,
      pushes), so the suite checks that bad signatures are rejected;
    - ``lookup``: the connector implements :meth:`Channel.lookup`, so an attempt
      whose outcome is unknown (the worker died during the call) is reconciled
      with the provider before the message is sent again.
    """

    max_length: int | None = None
    needs_opt_out_text: bool = False
    opt_out_text: str = ""
    template_data_max: int | None = None
    template_data_pattern: str | None = None
    network: bool = False
    callbacks: bool = False
    lookup: bool = False

    def problems(self, message: Message) -> list[str]:
        """What in ``message`` breaks these rules (empty when it fits)."""
        found: list[str] = []
        if self.max_length is not None and len(message.body) > self.max_length:
            found.append(f"body has {len(message.body)} characters, at most {self.max_length} allowed")
        if (self.needs_opt_out_text and message.category == "marketing" and self.opt_out_text
                and self.opt_out_text not in message.body):
            found.append(f"marketing message lacks the opt-out text {self.opt_out_text!r}")
        pattern = re.compile(self.template_data_pattern) if self.template_data_pattern else None
        for key, value in message.data.items():
            text = str(value)
            if self.template_data_max is not None and len(text) > self.template_data_max:
                found.append(f"data.{key} has {len(text)} characters, at most {self.template_data_max} allowed")
            if pattern is not None and not pattern.fullmatch(text):
                found.append(f"data.{key} does not match {self.template_data_pattern!r}")
        return found


class ConnectorConfig(BaseModel):
    """Base of every connector's configuration model.

    Unknown keys are errors. Secrets are ``pydantic.SecretStr`` fields: they
    never show in ``repr``, and ``carepath.toml`` must reference them from the
    environment (``secret = {env = "NAME"}``) rather than spell them out.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


def _is_secret_annotation(annotation: Any) -> bool:
    if annotation in (SecretStr, SecretBytes):
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return any(_is_secret_annotation(a) for a in typing.get_args(annotation))
    return False


def secret_fields(config_model: type[BaseModel]) -> set[str]:
    """Names of the fields of ``config_model`` declared as ``SecretStr``/``SecretBytes``."""
    return {name for name, f in config_model.model_fields.items() if _is_secret_annotation(f.annotation)}


def secret_values(config: BaseModel) -> list[str]:
    """The plain values of the secret fields of ``config`` (for leak checks; never log them)."""
    values: list[str] = []
    for name in secret_fields(type(config)):
        value = getattr(config, name, None)
        if isinstance(value, (SecretStr, SecretBytes)):
            raw = value.get_secret_value()
            values.append(raw.decode(errors="replace") if isinstance(raw, bytes) else raw)
    return [v for v in values if v]


@dataclass(frozen=True)
class CallbackRequest:
    """One inbound HTTP callback as a connector sees it (header names lower-cased)."""

    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    method: str = "POST"
    path: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", {k.lower(): v for k, v in self.headers.items()})

    def header(self, name: str, default: str = "") -> str:
        """A header value by case-insensitive name."""
        return self.headers.get(name.lower(), default)


class CallbackRejected(Exception):
    """An inbound callback failed authentication; nothing was parsed or changed."""


@dataclass(frozen=True, slots=True)
class Veto:
    """Returned by ``carepath_before_send`` to stop a message; ``reason`` is recorded."""

    reason: str


class Connector:
    """Common base: a named, configured connector that may accept inbound callbacks.

    Subclasses set ``type_name`` (the ``type`` used in ``carepath.toml``),
    ``Config`` (a :class:`ConnectorConfig` subclass) and ``capabilities``.
    """

    type_name: ClassVar[str] = ""
    Config: ClassVar[type[ConnectorConfig]] = ConnectorConfig
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: ``"module:function"`` of this connector's loopback emulator, run by
    #: ``carepath emulator TYPE``: ``function(host: str, port: int) -> None``
    #: serves until interrupted, after printing the address it listens on.
    emulator: ClassVar[str | None] = None

    def __init__(self, name: str, config: ConnectorConfig | None = None) -> None:
        self.name = name
        self.config = config if config is not None else self.Config()

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any]) -> "Connector":
        """Validate ``options`` with ``Config`` (raises ``pydantic.ValidationError``) and build."""
        return cls(name, cls.Config.model_validate(dict(options)))

    def bind(self, engine: Any) -> None:
        """Called once when an engine starts using this connector (database access, clock)."""

    # -- inbound callbacks: verify first, parse only what verified ------------------

    def verify_callback(self, request: CallbackRequest) -> bool:
        """Is ``request`` authentic (signature, shared secret)? Must not change any state.

        The default accepts nothing: a connector without callbacks rejects all.
        """
        return False

    def parse_callback(self, request: CallbackRequest) -> list[Any]:
        """Turn a verified callback into events (``carepath.definition.events.EventIn``).

        Only called after :meth:`verify_callback` returned ``True``.
        """
        return []

    def callback_reply(self, request: CallbackRequest) -> tuple[int, str]:
        """HTTP status and body answered to an accepted callback (providers expect their own)."""
        return 200, '{"ok": true}'

    def handle_callback(self, request: CallbackRequest) -> list[Any]:
        """Verify then parse; raises :class:`CallbackRejected` (with nothing parsed) when not authentic."""
        if not self.verify_callback(request):
            raise CallbackRejected(f"{self.type_name or type(self).__name__} {self.name!r}: callback not authentic")
        return self.parse_callback(request)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class Channel(Connector):
    """A way to reach a patient (WeChat, SMS, console, outbox, ...).

    Subclasses set ``type_name``, ``address_kind`` (which patient contact it
    needs: ``phone``, ``openid``, ``none``), optionally ``medium`` and
    ``Config``; they implement :meth:`send`. :meth:`send_batch` may be
    overridden when the provider takes many messages per call. ``send`` never
    raises for provider trouble: it returns a :class:`SendResult` classified
    retryable or permanent.
    """

    address_kind: ClassVar[str] = "phone"
    #: for a channel whose sends wait for a person's confirmation (:meth:`SendResult.awaiting_confirmation`):
    #: a message still unconfirmed this long after it was sent falls back like an undelivered one
    #: (:mod:`carepath.runtime.fallback`), even on a step without ``confirm_within``
    confirmation_window: timedelta | None = None
    #: what the channel is to a patient (``sms``, ``wechat``): the instance name journeys conventionally use
    #: for it (``via: [wechat, sms]``), accepted by ``carepath journeys validate`` where no carepath.toml
    #: names the instances; empty when only the type name applies
    medium: ClassVar[str] = ""
    #: whether :meth:`send`, :meth:`send_batch` or :meth:`lookup` read ``Message.context`` (a provider template's
    #: parameters rendered from it): a channel that sends only the rendered title and body says ``False``, and
    #: the dispatcher then loads nothing for it that only the context would carry (the patients' portraits)
    reads_context: ClassVar[bool] = True

    def send(self, message: Message) -> SendResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        """Send several messages; the default sends them one by one."""
        return [self.send(m) for m in messages]

    def unmapped_templates(self, names: Iterable[str]) -> list[str]:
        """Which of these carepath templates this channel cannot send.

        Providers that only send templates registered with them (Chinese SMS,
        WeChat) map each carepath template to a provider template in their
        configuration; a template without a mapping cannot go out on that
        channel. ``carepath config check`` and ``journeys validate`` report
        them. The default (free text) can send any template.
        """
        return []

    def unsubscribe_consents(self, channels: Mapping[str, "Channel"]) -> list[tuple[str, str]]:
        """The ``(purpose, channel name)`` consents an unsubscribe reply ("TD", "退订") received on this
        channel withdraws; ``channels`` are every configured channel by name.

        The engine reads the reply (:mod:`carepath.runtime.unsubscribe`); the channel only says how far
        it reaches. Default: clinical and marketing messages on this channel.
        """
        return [("clinical", self.name), ("marketing", self.name)]

    def lookup(self, message: Message, attempted_at: datetime) -> LookupResult:
        """Ask the provider whether an earlier call for ``message`` was accepted.

        Only called when ``capabilities.lookup`` is true, for an attempt whose
        outcome is unknown. ``message`` is the same message (same idempotency
        key and address) as the attempt made at ``attempted_at``. Providers that
        do not deduplicate by key (Chinese SMS) need this to keep a retry from
        sending twice.
        """
        raise NotImplementedError(f"{type(self).__name__} has no lookup")


class SourceUnavailable(Exception):
    """The HIS could not be read now (timeout, refused, 5xx, 429): poll again later, cursor unchanged."""


class HisSource(Connector):
    """A hospital information system feed: polls events since a cursor and/or receives pushes.

    Pushes (FHIR subscriptions, HL7 over HTTP) arrive through the callback
    contract: :meth:`verify_callback` then :meth:`parse_callback`.
    """

    def poll(self, cursor: str | None) -> tuple[Iterable[Any], str | None]:  # pragma: no cover
        """Return ``(events, new_cursor)``; events are :class:`carepath.definition.events.EventIn`.

        The caller stores every event before it stores ``new_cursor``, so a
        crash in between re-reads, and the events' dedup keys make that
        harmless. Raise :class:`SourceUnavailable` for transient trouble.
        """
        raise NotImplementedError


class SurveyProvider(Connector):
    """A survey service: patient-specific links out, responses back as events (via callbacks)."""

    def make_link(self, survey: str, patient_id: int, *, touchpoint_id: int | None = None) -> str:  # pragma: no cover
        """A URL for this patient to answer ``survey``; responses must map back to the patient."""
        raise NotImplementedError


CONNECTOR_KINDS: dict[str, type[Connector]] = {"channel": Channel, "his": HisSource, "survey": SurveyProvider}


def connector_kind(cls: type) -> str:
    """``channel``, ``his`` or ``survey`` for a connector class (``ValueError`` otherwise)."""
    for kind, base in CONNECTOR_KINDS.items():
        if isinstance(cls, type) and issubclass(cls, base):
            return kind
    raise ValueError(f"{cls!r} is not a Channel, HisSource or SurveyProvider subclass")

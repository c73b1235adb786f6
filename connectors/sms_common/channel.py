"""The send, lookup and callback flow both Chinese SMS providers share.

A provider connector subclasses :class:`SmsChannel` and supplies the wire
half: ``_submit`` (one SendSms call for one number), ``_query`` (find an
earlier call by its idempotency key), the table of its codes
(:attr:`SmsChannel.outcomes`) and its callback parsers. Everything else lives
here once:

- template-only sending: no mapping, no message; parameters rendered in the sandbox;
- marketing messages must carry the opt-out text;
- neither provider deduplicates, so a call whose outcome is unknown (read
  timeout, dropped connection) is looked up before the message is sent again,
  and a key already accepted in this process returns its first answer;
- codes are classified: rate limits rest the number, blacklisted numbers
  withdraw SMS consent, account problems raise one operator alert and hold
  messages instead of failing patients one by one;
- cost is the segment count (70/67 Chinese, 160/153 GSM-7, sign included).
"""

from __future__ import annotations

import enum
import hashlib
import importlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import ModuleType
from typing import Any, ClassVar, Iterable, Mapping

import requests
from sqlalchemy import select
from urllib3.exceptions import NewConnectionError

from carepath.connectors.sms_common.callbacks import (
    SMS_PURPOSES,
    PatientResolver,
    Receipt,
    Reply,
    callback_kind,
    consent_withdrawals,
    receipt_events,
    reply_events,
)
from carepath.connectors.sms_common.config import DEFAULT_OPT_OUT, SmsConfig
from carepath.connectors.sms_common.numbers import national
from carepath.connectors.sms_common.segments import segment_count, signed_text
from carepath.connectors.sms_common.templates import ParamError, TemplateMapping, render_params, unmapped
from carepath.masking import mask_phone
from carepath.plugins.contracts import (
    CallbackRequest,
    Capabilities,
    Channel,
    ErrorKind,
    LookupResult,
    LookupStatus,
    Message,
    SendResult,
    classify_http_status,
)
from carepath.store.schema import Delivery, Touchpoint

log = logging.getLogger(__name__)
UTC = timezone.utc
_MEMO_SIZE = 20_000


class Outcome(str, enum.Enum):
    """What a provider code means for carepath."""

    OK = "ok"
    RETRY = "retry"  # transient: the same channel later
    RATE_LIMIT = "rate_limit"  # transient, and this number rests for a while
    UNSUBSCRIBED = "unsubscribed"  # the number refuses SMS: withdraw consent, permanent
    PERMANENT = "permanent"  # bad number, template, sign, content: this channel cannot carry it
    ACCOUNT = "account"  # the account cannot send at all: operator alert, hold messages


@dataclass(frozen=True)
class ProviderAnswer:
    """What the provider said about one number of one call."""

    code: str
    detail: str = ""
    provider_id: str | None = None
    fee: int | None = None
    http_status: int = 200


class SmsChannel(Channel):
    """Base of the Chinese SMS channels (template-only, no provider deduplication)."""

    address_kind: ClassVar[str] = "phone"
    medium: ClassVar[str] = "sms"
    Config: ClassVar[type[SmsConfig]] = SmsConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        max_length=500, needs_opt_out_text=True, opt_out_text=DEFAULT_OPT_OUT, network=True, callbacks=True,
        lookup=True)
    #: provider code -> outcome; codes not listed are classified by HTTP status
    outcomes: ClassVar[Mapping[str, Outcome]] = {}
    #: the provider's push formats (its package's ``callbacks`` module): ``ACK`` (the body
    #: answering an accepted push), ``parse_receipts(body)`` and ``parse_replies(body)``
    push_format: ClassVar[ModuleType]
    config: SmsConfig

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A provider package holds ``channel``, ``callbacks`` (its push formats) and ``emulator`` (``serve``)."""
        super().__init_subclass__(**kwargs)
        package = cls.__module__.rpartition(".")[0]
        if "push_format" not in cls.__dict__:
            cls.push_format = importlib.import_module(f"{package}.callbacks")
        if "emulator" not in cls.__dict__:
            cls.emulator = f"{package}.emulator:serve"

    def __init__(self, name: str, config: SmsConfig | None = None) -> None:
        super().__init__(name, config)
        self.engine: Any = None
        self._lock = threading.Lock()
        self._accepted: OrderedDict[str, SendResult] = OrderedDict()
        self._uncertain: dict[str, datetime] = {}
        self._resting: dict[str, tuple[int, datetime]] = {}
        self._down_until: datetime | None = None
        self._session = requests.Session()

    def bind(self, engine: Any) -> None:
        self.engine = engine

    @property
    def source(self) -> str:
        """The ``source`` of events this connector produces."""
        return f"{self.type_name}:{self.name}"

    def now(self) -> datetime:
        """The engine's clock once bound (signatures and dates follow it), else the wall clock."""
        return self.engine.clock.now() if self.engine is not None else datetime.now(UTC)

    def sms_channel_names(self) -> list[str]:
        """Every SMS channel of the engine: an unsubscribe applies to all of them."""
        if self.engine is None:
            return [self.name]
        return sorted(n for n, c in self.engine.channels.items() if isinstance(c, SmsChannel)) or [self.name]

    def unsubscribe_consents(self, channels: Mapping[str, Channel]) -> list[tuple[str, str]]:
        """An SMS opt-out ("TD", "退订") reaches the number, whichever SMS account carries it: both purposes
        on every SMS channel."""
        names = sorted(n for n, c in channels.items() if isinstance(c, SmsChannel)) or [self.name]
        return [(purpose, name) for name in names for purpose in SMS_PURPOSES]

    def unmapped_templates(self, names: Iterable[str]) -> list[str]:
        return unmapped(self.config.templates, names)

    # -- the provider's half -----------------------------------------------------------

    def _submit(self, message: Message, mapping: TemplateMapping, params: dict[str, str],
                sign_name: str) -> ProviderAnswer:  # pragma: no cover - abstract
        """One SendSms call for ``message.address``; raises ``requests`` exceptions."""
        raise NotImplementedError

    def _query(self, message: Message, attempted_at: datetime) -> LookupResult:  # pragma: no cover - abstract
        """Find the call carrying ``message.idempotency_key``; raises ``requests`` exceptions."""
        raise NotImplementedError

    def _post_json(self, url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        """POST within the configured timeout; the HTTP status and the JSON object answered (``{}`` if none)."""
        response = self._session.post(url, timeout=self.config.timeout, **kwargs)
        try:
            data = response.json()
        except ValueError:
            data = {}
        return response.status_code, data if isinstance(data, dict) else {}

    def _check_params(self, mapping: TemplateMapping, params: dict[str, str]) -> SendResult | None:
        """Provider rules on parameter values checked before sending (``None``: fine)."""
        return None

    # -- sending -------------------------------------------------------------------------

    def send(self, message: Message) -> SendResult:
        cfg = self.config
        mapping = cfg.templates.get(message.template)
        if mapping is None:
            return SendResult.permanent("template_not_mapped", f"template {message.template!r} has no provider "
                                        f"template in connectors.{self.name}.templates")
        if message.category == "marketing" and cfg.opt_out_text and cfg.opt_out_text not in message.body:
            return SendResult.permanent("opt_out_missing", f"marketing SMS must carry {cfg.opt_out_text!r}")
        try:
            params = render_params(mapping, message.context)
        except ParamError as exc:
            return SendResult.permanent("template_param", str(exc))
        problem = self._check_params(mapping, params)
        if problem is not None:
            return problem
        key = message.idempotency_key
        with self._lock:
            if key in self._accepted:
                return self._accepted[key]
        held = self._held(message)
        if held is not None:
            return held
        earlier = self._uncertain.get(key) or self._unresolved_attempt(message)
        if earlier is not None:
            found = self.lookup(message, earlier)
            if found.status is LookupStatus.ACCEPTED:
                return self._remember(key, SendResult.sent(found.provider_id, found.cost or self._segments(message)))
            if found.status is LookupStatus.UNKNOWN:
                return SendResult.retryable("lookup_pending", "an earlier call's outcome is not known yet")
        sign = mapping.sign_name or cfg.sign_name
        attempted_at = self.now()
        to = mask_phone(message.address)
        try:
            answer = self._submit(message, mapping, params, sign)
        except requests.exceptions.ConnectTimeout:
            return SendResult.retryable("connect_timeout", f"no connection within {cfg.timeout:g} s")
        except requests.exceptions.ConnectionError as exc:
            if not _never_connected(exc):
                log.warning("%s %s: connection lost for %s; looking it up", self.type_name, self.name, to)
                return self._after_uncertain(message, attempted_at, exc)
            return SendResult.retryable("connection", "could not connect to the provider")
        except (requests.exceptions.Timeout, requests.exceptions.ConnectionError) as exc:
            # the provider may have taken the message before the answer was lost
            log.warning("%s %s: no answer for %s (%s); looking it up", self.type_name, self.name, to,
                        type(exc).__name__)
            return self._after_uncertain(message, attempted_at, exc)
        except requests.RequestException as exc:
            return SendResult.retryable("request_error", type(exc).__name__)
        except ValueError as exc:  # not JSON: a proxy or a broken answer
            return SendResult.retryable("bad_answer", str(exc)[:200])
        return self._classify(message, answer)

    def _unresolved_attempt(self, message: Message) -> datetime | None:
        """When an earlier call with this key has no recorded outcome (its worker died during the call).

        The dispatcher writes a ``sending`` row before each call; besides the
        current call's own row, another one still ``sending`` (or ``unknown``)
        means a call whose answer was lost, and the provider must be asked first.
        """
        if self.engine is None:
            return None
        touchpoint_key, _, channel = message.idempotency_key.rpartition(":")
        with self.engine.db.connect() as conn:
            started = conn.execute(select(Delivery.created_at).join(Touchpoint, Touchpoint.id == Delivery.touchpoint_id)
                                   .where(Touchpoint.idempotency_key == touchpoint_key, Delivery.channel == channel,
                                          Delivery.status.in_(("sending", "unknown")))
                                   .order_by(Delivery.id)).scalars().all()
        return started[0] if len(started) > 1 else None

    def _after_uncertain(self, message: Message, attempted_at: datetime, exc: Exception) -> SendResult:
        found = self.lookup(message, attempted_at)
        if found.status is LookupStatus.ACCEPTED:
            return self._remember(message.idempotency_key,
                                  SendResult.sent(found.provider_id, found.cost or self._segments(message)))
        if found.status is LookupStatus.UNKNOWN:
            with self._lock:
                self._uncertain[message.idempotency_key] = attempted_at
        code = "timeout" if isinstance(exc, requests.exceptions.Timeout) else "connection"
        return SendResult.retryable(code, f"no answer within {self.config.timeout:g} s; "
                                          f"lookup: {found.status.value}")

    def _classify(self, message: Message, answer: ProviderAnswer) -> SendResult:
        outcome = self.outcomes.get(answer.code)
        if outcome is None:
            kind = classify_http_status(answer.http_status)
            outcome = Outcome.OK if kind is None and answer.provider_id else \
                Outcome.RETRY if kind is ErrorKind.RETRYABLE else Outcome.PERMANENT
        key = message.idempotency_key
        detail = f"{answer.code}: {answer.detail}"[:300]
        if outcome is Outcome.OK:
            with self._lock:
                self._resting.pop(_number_key(message.address), None)
                self._uncertain.pop(key, None)
            return self._remember(key, SendResult.sent(answer.provider_id, answer.fee or self._segments(message)))
        if outcome is Outcome.RATE_LIMIT:
            rest = self._rest_number(message.address)
            return SendResult.retryable(answer.code, detail, retry_after=rest)
        if outcome is Outcome.RETRY:
            return SendResult.retryable(answer.code, detail)
        if outcome is Outcome.ACCOUNT:
            return self._account_problem(answer.code, detail)
        if outcome is Outcome.UNSUBSCRIBED:
            self._withdraw_consent(message, answer.code)
        return SendResult.permanent(answer.code, detail)

    def _segments(self, message: Message) -> int:
        mapping = self.config.templates.get(message.template)
        sign = (mapping.sign_name if mapping else None) or self.config.sign_name
        return segment_count(signed_text(sign, message.body))

    def _remember(self, key: str, result: SendResult) -> SendResult:
        with self._lock:
            self._accepted[key] = result
            self._uncertain.pop(key, None)
            while len(self._accepted) > _MEMO_SIZE:
                self._accepted.popitem(last=False)
        return result

    # -- holding messages: resting numbers, a connector that is down -------------------------

    def _held(self, message: Message) -> SendResult | None:
        now = self.now()
        with self._lock:
            if self._down_until is not None and now < self._down_until:
                return SendResult.retryable("connector_down", "provider account problem: messages held",
                                            retry_after=self._down_until - now)
            strikes = self._resting.get(_number_key(message.address))
        if strikes is not None and now < strikes[1]:
            return SendResult.retryable("number_resting", "this number hit the provider's rate limit",
                                        retry_after=strikes[1] - now)
        return None

    def _rest_number(self, address: str) -> timedelta:
        number = _number_key(address)
        with self._lock:
            count = self._resting.get(number, (0, None))[0] + 1
            rest = timedelta(seconds=self.config.rate_limit_backoff * 2 ** (count - 1))
            self._resting[number] = (count, self.now() + rest)
        return rest

    def _account_problem(self, code: str, detail: str) -> SendResult:
        hold = timedelta(seconds=self.config.account_backoff)
        with self._lock:
            self._down_until = self.now() + hold
        log.error("%s %s: provider account problem %s: holding messages for %s", self.type_name, self.name, code, hold)
        if self.engine is not None:
            from carepath.runtime.alerts import CONNECTOR_DOWN, raise_alert

            try:
                raise_alert(self.engine, kind=CONNECTOR_DOWN, source=self.source, code=code, detail=detail)
            except Exception:  # noqa: BLE001 - the alert must not lose the message's outcome
                log.exception("%s %s: could not record the operator alert", self.type_name, self.name)
        return SendResult.retryable(code, detail, retry_after=hold)

    def _withdraw_consent(self, message: Message, code: str) -> None:
        if self.engine is None:
            return
        mrn = PatientResolver(self.engine).by_patient_id(message.patient_id)
        if not mrn:
            return
        log.info("%s %s: %s refuses SMS (%s): withdrawing SMS consent", self.type_name, self.name,
                 mask_phone(message.address), code)
        for event in consent_withdrawals(self, mrn, f"refused:{message.idempotency_key}", self.now(), code):
            try:
                self.engine.ingest(event, dispatch_urgent=False)
            except Exception:  # noqa: BLE001 - the send result still stands
                log.exception("%s %s: could not record the consent change", self.type_name, self.name)

    # -- lookup --------------------------------------------------------------------------

    def lookup(self, message: Message, attempted_at: datetime) -> LookupResult:
        try:
            found = self._query(message, attempted_at)
        except (requests.RequestException, ValueError) as exc:
            return LookupResult(LookupStatus.UNKNOWN, detail=f"lookup failed: {type(exc).__name__}")
        if found.status is LookupStatus.NOT_FOUND and \
                self.now() - attempted_at < timedelta(seconds=self.config.lookup_grace):
            return LookupResult(LookupStatus.UNKNOWN, detail="not reported yet")
        if found.status is LookupStatus.ACCEPTED and found.cost is None:
            found = LookupResult(found.status, found.provider_id, found.delivered, self._segments(message),
                                 found.detail)
        return found

    # -- inbound callbacks ---------------------------------------------------------------

    def verify_callback(self, request: CallbackRequest) -> bool:
        token = self.config.callback_token.get_secret_value() if self.config.callback_token else None
        return callback_kind(request, self.type_name, self.name, token) is not None

    def parse_callback(self, request: CallbackRequest) -> list[Any]:
        token = self.config.callback_token.get_secret_value() if self.config.callback_token else None
        kind = callback_kind(request, self.type_name, self.name, token)
        if kind == "receipts":
            receipts: list[Receipt] = self.push_format.parse_receipts(request.body)
            return receipt_events(self, receipts)
        replies: list[Reply] = self.push_format.parse_replies(request.body)
        return reply_events(self, replies)

    def callback_reply(self, request: CallbackRequest) -> tuple[int, str]:
        return 200, self.push_format.ACK


def _never_connected(exc: requests.exceptions.ConnectionError) -> bool:
    """The connection was refused or never made: the request cannot have reached the provider."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError)


def _number_key(address: str) -> str:
    """A number's key in memory (never the number itself)."""
    return hashlib.sha256(national(address).encode()).hexdigest()[:16]

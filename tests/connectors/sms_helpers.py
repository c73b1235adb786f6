"""Shared set-up of the SMS tests: each provider's emulator and channel, a journey, the plugins' web
routes over real loopback HTTP (``tests.live_app``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable

from sqlalchemy import select

from carepath.connectors.aliyun_sms.channel import AliyunSmsChannel
from carepath.connectors.aliyun_sms.emulator import AliyunSmsEmulator
from carepath.connectors.outbox import OutboxChannel, OutboxConfig
from carepath.connectors.sms_common.channel import SmsChannel
from carepath.connectors.sms_common.emulator import SmsEmulator
from carepath.connectors.tencent_sms.channel import TencentSmsChannel
from carepath.connectors.tencent_sms.emulator import TencentSmsEmulator
from carepath.definition.dsl import after, anchor, enroll_on, journey, send, step, template
from carepath.definition.events import EventIn, PatientIn
from carepath.definition.model import Journey
from carepath.engine import Engine
from carepath.runtime.clock import VirtualClock
from carepath.settings import Settings
from carepath.store.schema import Consent, Delivery, StaffTask, Touchpoint

from tests.live_app import LiveApp, plugin_app

PHONE = "13912345678"
TOKEN = "hook-token-0123456789abcdef"
SIGN = "仁济医院"
# rendered: 66 characters; with the sign (6 more) it is 72, over 70: the message takes two segments
BODY = ("{{ patient.surname }}先生/女士您好，您已出院，请按医嘱按时服药，注意休息，避免剧烈运动，"
        "如有发热、伤口红肿或其他不适，请及时到我院复诊。祝您早日康复！")


@dataclass(frozen=True)
class Provider:
    """How to build one provider's emulator and channel."""

    type_name: str
    channel_class: type[SmsChannel]
    make_emulator: Callable[..., SmsEmulator]
    credentials: Callable[[SmsEmulator], dict[str, Any]]
    template_code: str
    blacklist_code: str
    rate_limit_code: str
    account_code: str
    bad_signature_code: str


ALIYUN = Provider(
    "aliyun-sms", AliyunSmsChannel,
    lambda clock, **kw: AliyunSmsEmulator("LTAI-test-key", "aliyun-secret-0001", clock=clock,
                                          templates={"SMS_100001": BODY.replace("{{ patient.surname }}", "${name}")},
                                          **kw),
    lambda emu: {"access_key_id": emu.access_key_id, "access_key_secret": emu.access_key_secret},
    "SMS_100001", "isv.BLACK_KEY_CONTROL_LIMIT", "isv.BUSINESS_LIMIT_CONTROL", "isv.AMOUNT_NOT_ENOUGH",
    "SignatureDoesNotMatch")
TENCENT = Provider(
    "tencent-sms", TencentSmsChannel,
    lambda clock, **kw: TencentSmsEmulator("AKID-test", "tencent-secret-0001", "1400000001", clock=clock,
                                           templates={"1000001": BODY.replace("{{ patient.surname }}", "{1}")}, **kw),
    lambda emu: {"secret_id": emu.secret_id, "secret_key": emu.secret_key, "sms_sdk_app_id": emu.sms_sdk_app_id},
    "1000001", "FailedOperation.PhoneNumberInBlacklist", "LimitExceeded.PhoneNumberDailyLimit",
    "FailedOperation.InsufficientBalanceInSmsPackage", "AuthFailure.SignatureFailure")
PROVIDERS = {"aliyun": ALIYUN, "tencent": TENCENT}


def sms_options(provider: Provider, emulator: SmsEmulator, **overrides: Any) -> dict[str, Any]:
    """Connector options pointing at ``emulator``, with the follow-up template mapped."""
    return {"endpoint": emulator.url, "sign_name": SIGN, "callback_token": TOKEN, "timeout": 2,
            "templates": {"sms_followup": {"code": provider.template_code,
                                           "params": {"name": "{{ patient.surname }}"}}},
            **provider.credentials(emulator), **overrides}


def followup_journey(via: list[str], *, confirm_within: str | None = None, category: str = "clinical",
                     body: str = BODY, team: str | None = None) -> Journey:
    return journey("sms-followup", enroll=enroll_on("encounter.discharged"),
                   anchors={"discharge": anchor(set_by=["encounter.discharged"])}, team=team,
                   steps=[step("followup", "post_visit", after("discharge", "1h"), send("sms_followup", via=via),
                               category=category, confirm_within=confirm_within)],
                   templates=[template("sms_followup", body=body)])


@dataclass
class Setup:
    engine: Engine
    emulator: SmsEmulator
    channel: SmsChannel
    clock: VirtualClock
    provider: Provider
    hooks: LiveApp | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def enroll(self, mrn: str = "M1", phone: str = PHONE) -> None:
        self.engine.upsert_patient(PatientIn(mrn=mrn, name="张三", phone=phone))
        self.engine.ingest(EventIn(type="encounter.discharged", source="his", source_id=f"enc-{mrn}",
                                   patient_mrn=mrn, occurred_at=self.clock.now(), payload={}))

    def dispatch(self, after: timedelta = timedelta(hours=1, minutes=1)):
        self.clock.advance(after)
        return self.engine.dispatch_due()

    def rows(self, model: Any, **where: Any) -> list[Any]:
        q = select(model.__table__).order_by(model.id)
        for col, value in where.items():
            q = q.where(getattr(model, col) == value)
        with self.engine.db.connect() as conn:
            return list(conn.execute(q))

    def touchpoint(self) -> Any:
        [tp] = self.rows(Touchpoint)
        return tp

    def deliveries(self) -> list[Any]:
        return self.rows(Delivery)

    def consents(self) -> list[Any]:
        return self.rows(Consent)

    def tasks(self) -> list[Any]:
        return self.rows(StaffTask)

    def hook_url(self, kind: str, token: str = TOKEN) -> str:
        assert self.hooks is not None
        return f"{self.hooks.url}/hooks/{self.provider.type_name}/sms/{token}/{kind}"


def build(provider: Provider, database_url: str, settings: Settings, clock: VirtualClock, *,
          via: list[str] | None = None, options: dict[str, Any] | None = None, hooks: bool = False,
          emulator_options: dict[str, Any] | None = None, **journey_options: Any) -> Setup:
    """An engine with channel ``sms`` (the provider, on its emulator) and ``outbox``; call ``close(setup)``."""
    emulator = provider.make_emulator(clock.now, **(emulator_options or {})).__enter__()
    channel = provider.channel_class.from_options("sms", sms_options(provider, emulator, **(options or {})))
    outbox = OutboxChannel("outbox", OutboxConfig(address="phone"))
    engine = Engine(database_url, journeys=[followup_journey(via or ["sms", "outbox"], **journey_options)],
                    channels={"sms": channel, "outbox": outbox}, templates={}, clock=clock, settings=settings)
    setup = Setup(engine, emulator, channel, clock, provider)  # type: ignore[arg-type]
    if hooks:
        setup.hooks = LiveApp(plugin_app(engine)).__enter__()
    return setup


def close(setup: Setup) -> None:
    if setup.hooks is not None:
        setup.hooks.__exit__(None, None, None)
    setup.emulator.close()
    setup.engine.close()

"""WeCom test support: the emulator, an engine with the ``wecom`` channel and an SMS channel behind it (on their
emulators), and the web hooks served by uvicorn."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import select

from carepath.connectors.aliyun_sms.channel import AliyunSmsChannel
from carepath.connectors.wecom import WecomChannel, check_wecom_confirmations
from carepath.connectors.wecom.emulator import WecomEmulator
from carepath.definition.events import EventIn, PatientIn
from carepath.engine import Engine
from carepath.store.schema import Delivery, Touchpoint

from tests.connectors.sms_helpers import ALIYUN, PHONE, followup_journey, sms_options
from tests.live_app import LiveApp, plugin_app

CORPID = "ww0123456789abcdef"
SECRET = "contact-secret-for-tests-01"
TOKEN = "wecomtoken01"
AES_KEY = base64.b64encode(bytes(range(1, 33))).decode().rstrip("=")
STAFF = "hm_li"
EXTERNAL = "wmPatientExternal0001"
COMMUNITY_CHAT = "wrDiabetesGroup0001"
KFID = "wkHospitalService01"


def wecom_options(api_base: str, **overrides: Any) -> dict[str, Any]:
    """Options as a hospital writes them in carepath.toml (secrets resolved)."""
    return {"corpid": CORPID, "secret": SECRET, "token": TOKEN, "encoding_aes_key": AES_KEY, "api_base": api_base,
            "timeout": 3, "welcome_text": "您好，我是您的健康管理师。", "open_kfid": KFID,
            "communities": {"diabetes": {"chat_id": COMMUNITY_CHAT, "owner": STAFF, "title": "糖友会"}},
            **overrides}


@pytest.fixture
def wecom_emulator() -> Iterator[WecomEmulator]:
    with WecomEmulator(corpid=CORPID, secret=SECRET, token=TOKEN, encoding_aes_key=AES_KEY) as wc:
        wc.add_group(COMMUNITY_CHAT, STAFF, "糖友会")
        yield wc


@dataclass
class World:
    """An engine sending a follow-up ``via: [wecom, sms]``, the two emulators and the hooks."""

    engine: Engine
    wecom: WecomChannel
    emulator: WecomEmulator
    sms: Any
    hooks: LiveApp
    clock: Any

    @property
    def hook(self) -> str:
        return f"{self.hooks.url}/hooks/wecom/wecom"

    def patient(self, mrn: str = "M1") -> int:
        return self.engine.upsert_patient(PatientIn(mrn=mrn, name="张三", phone=PHONE))

    def bind(self, patient_id: int, external: str = EXTERNAL, staff: str = STAFF) -> None:
        answer = self.emulator.add_contact(self.hook, staff, external, self.wecom.contact_state(patient_id))
        assert (answer.status_code, answer.text) == (200, "success"), answer.text

    def discharge(self, mrn: str = "M1") -> None:
        self.engine.ingest(EventIn(type="encounter.discharged", source="his", source_id=f"enc-{mrn}",
                                   patient_mrn=mrn, occurred_at=self.clock.now(), payload={}))
        self.clock.advance(timedelta(hours=1, minutes=1))
        self.engine.dispatch_due()

    def confirmations(self) -> int:
        return check_wecom_confirmations(self.engine)

    def deliveries(self) -> list[tuple[str, str]]:
        with self.engine.db.connect() as conn:
            rows = conn.execute(select(Delivery.channel, Delivery.status).order_by(Delivery.id))
            return [(r.channel, r.status) for r in rows]

    def touchpoint(self) -> Any:
        with self.engine.db.connect() as conn:
            [tp] = conn.execute(select(Touchpoint.__table__)).all()
        return tp


@pytest.fixture
def make_world(database_url, settings, clock, wecom_emulator) -> Iterator[Callable[..., World]]:
    """``make_world(**wecom_overrides)``: an engine with ``wecom`` then ``sms``, both on their emulators."""
    made: list[World] = []

    def _make(**overrides: Any) -> World:
        sms_emulator = ALIYUN.make_emulator(clock.now).__enter__()
        sms = AliyunSmsChannel.from_options("sms", sms_options(ALIYUN, sms_emulator))
        wecom = WecomChannel.from_options("wecom", wecom_options(wecom_emulator.url, confirm_within=3600,
                                                                 **overrides))
        engine = Engine(database_url, journeys=[followup_journey(["wecom", "sms"])],
                        channels={"wecom": wecom, "sms": sms}, templates={}, clock=clock, settings=settings)
        hooks = LiveApp(plugin_app(engine)).__enter__()
        made.append(World(engine, wecom, wecom_emulator, sms_emulator, hooks, clock))  # type: ignore[arg-type]
        return made[-1]

    yield _make
    for done in made:
        done.hooks.__exit__(None, None, None)
        done.sms.close()
        done.engine.close()


@pytest.fixture
def world(make_world) -> World:
    return make_world()

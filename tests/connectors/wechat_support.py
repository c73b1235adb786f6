"""WeChat test support: the emulator, channels pointed at it, and the web hooks served by uvicorn.

Test modules import the fixtures they use (``emulator``, ``wechat_engine``) from here, so other
connectors' tests can keep their own fixtures in this folder without a shared conftest.
"""

from __future__ import annotations

import base64
from contextlib import contextmanager
from typing import Any, Iterator

import pytest

from carepath.connectors.outbox import OutboxChannel, OutboxConfig
from carepath.connectors.wechat import WechatChannel
from carepath.connectors.wechat.emulator import WechatEmulator
from carepath.definition.dsl import enroll_on, journey, on, send, step, template
from carepath.definition.events import EventIn, PatientIn
from carepath.engine import Engine

from tests.live_app import LiveApp, plugin_app

APPID = "wxa1b2c3d4e5f60001"
SECRET = "app-secret-for-tests-0001"
TOKEN = "callbacktoken01"
AES_KEY = base64.b64encode(bytes(range(32))).decode().rstrip("=")
TEMPLATE_ID = "TPL-visit-0001"
OPENID = "oPatientOpenid0001"
PATIENT = PatientIn(mrn="M1", name="张三", phone="13812341234", openid=OPENID)
VISIT_MAP = {"template_id": TEMPLATE_ID, "url": "https://hospital.example.org/visit",
             "data": {"thing1": "{{ event.department }}", "time2": "{{ event.start }}",
                      "thing3": "{{ patient.name }}"}}
VISIT_JOURNEY = journey(
    "visit", enroll=enroll_on("appointment.booked"),
    steps=[step("remind", "pre_visit", on("appointment.booked"), send("visit_reminder", via=["wechat", "outbox"]),
                category="transactional")],
    templates=[template("visit_reminder", "{{ patient.name }}，{{ event.department }} {{ event.start }}", "就诊提醒")])


def wechat_options(api_base: str, **overrides: Any) -> dict[str, Any]:
    """Options as a hospital writes them in carepath.toml (secrets resolved)."""
    return {"appid": APPID, "secret": SECRET, "token": TOKEN, "encoding_aes_key": AES_KEY, "api_base": api_base,
            "timeout": 3, "templates": {"visit_reminder": VISIT_MAP}, **overrides}


def make_wechat(api_base: str, name: str = "wechat", **overrides: Any) -> WechatChannel:
    return WechatChannel.from_options(name, wechat_options(api_base, **overrides))  # type: ignore[return-value]


@pytest.fixture
def emulator() -> Iterator[WechatEmulator]:
    with WechatEmulator(appid=APPID, secret=SECRET, token=TOKEN, encoding_aes_key=AES_KEY) as wx:
        yield wx


@pytest.fixture
def wechat_engine(database_url, settings, clock, emulator):
    """``wechat_engine(**wechat_overrides)``: an engine with the ``wechat`` channel (on the emulator) then ``outbox``."""
    made: list[Engine] = []

    def _make(worker_id: str | None = None, **overrides: Any) -> Engine:
        channels = {"wechat": make_wechat(emulator.url, **overrides), "outbox": OutboxChannel(
            "outbox", OutboxConfig(address="phone"))}
        engine = Engine(database_url, journeys=[VISIT_JOURNEY], channels=channels, templates={}, clock=clock,
                        settings=settings, worker_id=worker_id)
        made.append(engine)
        return engine

    yield _make
    for engine in made:
        engine.close()


def booked(clock, mrn: str = "M1", n: int = 1, department: str = "心内科", start: str = "2026-05-02T08:30:00+08:00"):
    return EventIn(type="appointment.booked", source="his", source_id=f"appt-{mrn}-{n}", patient_mrn=mrn,
                   occurred_at=clock.now(), payload={"department": department, "start": start})


@contextmanager
def serve_hooks(engine: Engine) -> Iterator[str]:
    """The plugins' web routes bound to ``engine``, on uvicorn at 127.0.0.1 and a free port; yields the base URL."""
    with LiveApp(plugin_app(engine)) as live:
        yield live.url

"""Issue 20.2: links in messages go through a signed redirect; a click counts once, previews and forgeries never."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select

from carepath.definition.dsl import enroll_on, journey, on, send, step, template
from carepath.serve import WebServer
from carepath.store.schema import Event
from carepath.web.app import create_app
from tests.engine import helpers as h
from tests.portrait.helpers import loaded_config, view

TARGET = "https://edu.example-hospital.cn/articles/child-medication-safety"
BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) MicroMessenger/8.0.47 NetType/WIFI"


def _journey():
    return journey("education", enroll=enroll_on("visit.checked_in"),
                   templates=[template("article", f"儿童用药安全：{TARGET}。更多见 https://edu.example-hospital.cn/ 。")],
                   steps=[step("article", "post_visit", on("visit.checked_in"), send("article", ["sms"]))])


def _sent_body(database_url, settings, clock, config) -> tuple[object, h.RecordingChannel, str]:
    sms = h.RecordingChannel("sms")
    engine = h.make_engine(database_url, settings, clock, [_journey()], {"sms": sms}, config=config)
    engine.upsert_patient(h.PatientIn(mrn="M1", name="张三", phone="13812341234"))
    engine.ingest(h.Events(clock)("visit.checked_in"))
    assert engine.dispatch_due().sent == 1
    return engine, sms, sms.messages[0].body


@pytest.fixture
def served(database_url, settings, clock, tmp_path):
    config = loaded_config(tmp_path, '[surveys]\nbase_url = "http://127.0.0.1:1"\n')
    engine, sms, body = _sent_body(database_url, settings, clock, config)
    web = WebServer(create_app(engine, routers=[]), "127.0.0.1", 0)
    host, port = web.start()
    base = f"http://{host}:{port}"
    links = [base + path for path in re.findall(r"http://127\.0\.0\.1:1(/c/[0-9a-z.]+)", body)]
    yield engine, body, links
    web.stop()
    engine.close()


def _clicks(engine) -> list[dict]:
    with engine.db.connect() as conn:
        return [p for (p,) in conn.execute(select(Event.payload).where(Event.type == "message.clicked"))]


def test_a_click_counts_once_and_lands_on_the_target(served, clock):
    engine, body, links = served
    assert TARGET not in body and len(links) == 2 and all(len(link.rsplit("/", 1)[1]) <= 20 for link in links)
    assert "张三" not in body and "M1" not in links[0]
    first = requests.get(links[0], headers={"User-Agent": BROWSER}, allow_redirects=False, timeout=10)
    assert first.status_code == 302 and first.headers["location"] == TARGET
    again = requests.get(links[0], headers={"User-Agent": BROWSER}, allow_redirects=False, timeout=10)
    assert again.status_code == 302 and again.headers["location"] == TARGET
    assert [c["touchpoint_id"] for c in _clicks(engine)] == [1]  # counted once
    assert view(engine).portrait.clicks_30d == 1
    other = requests.get(links[1], headers={"User-Agent": BROWSER}, allow_redirects=False, timeout=10)
    assert other.headers["location"] == "https://edu.example-hospital.cn/"  # the sentence's full stop stayed out
    assert len(_clicks(engine)) == 2


@pytest.mark.parametrize("method, agent", [
    ("HEAD", BROWSER),
    ("GET", "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"),
    ("GET", "WhatsApp/2.23.20.0"),
    ("GET", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
    ("GET", "TelegramBot (like TwitterBot)"),
    ("GET", ""),
])
def test_previews_and_head_requests_count_nothing(served, method, agent):
    engine, _, links = served
    answer = requests.request(method, links[0], headers={"User-Agent": agent}, allow_redirects=False, timeout=10)
    assert answer.status_code == 302 and answer.headers["location"] == TARGET
    assert _clicks(engine) == []


def test_forged_and_expired_links_reach_the_target_and_count_nothing(served, clock):
    engine, _, links = served
    head, _, mac = links[0].rpartition(".")
    forged = f"{head}.{'0' * len(mac)}"
    answer = requests.get(forged, headers={"User-Agent": BROWSER}, allow_redirects=False, timeout=10)
    assert answer.status_code == 302 and answer.headers["location"] == TARGET
    other_message = links[0].replace("/c/1.", "/c/2.")  # a real link id on another touchpoint: signature fails
    assert requests.get(other_message, headers={"User-Agent": BROWSER}, allow_redirects=False,
                        timeout=10).headers["location"] == TARGET
    unknown = requests.get(links[0].rsplit("/", 1)[0] + "/zz.zz.0000000000", allow_redirects=False, timeout=10)
    assert unknown.status_code == 404 and "链接无效" in unknown.text
    clock.advance(timedelta(days=91))  # past [clicks] link_ttl (90 days)
    late = requests.get(links[0], headers={"User-Agent": BROWSER}, allow_redirects=False, timeout=10)
    assert late.status_code == 302 and late.headers["location"] == TARGET
    assert _clicks(engine) == []


def test_a_hospital_can_opt_out(database_url, settings, clock, tmp_path):
    config = loaded_config(tmp_path, "[clicks]\nenabled = false\n")
    engine, _, body = _sent_body(database_url, settings, clock, config)
    engine.close()
    assert TARGET in body and "/c/" not in body

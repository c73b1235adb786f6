"""wjx and Tencent Wenjuan pushes over real HTTP: authentic ones are stored once, others change nothing."""

from __future__ import annotations

import pytest

from carepath.connectors.surveys.emulators import TencentEmulator, WjxEmulator
from carepath.connectors.surveys.provider_maps import SurveyMap
from carepath.connectors.surveys.tencent_wenjuan import TencentWenjuan
from carepath.connectors.surveys.wjx import WjxSurveys
from carepath.plugins.testing import SurveyProviderConformance
from carepath.runtime.survey_links import survey_token
from carepath.store.personal_data import reveal_payload
from carepath.store.schema import Event, SurveyResponse
from tests.engine import helpers as h
from tests.live_app import LiveApp, plugin_app

PUSH_SECRET = "wjx-push-secret-for-tests"
PATH_TOKEN = "tencent-path-token-for-tests"
SURVEY = {"outpatient-satisfaction": {"id": "88001234", "url": "https://www.wjx.cn/vm/abcd.aspx",
                                      "questions": {"q1": "nps", "q2": "satisfaction", "q3": "wait"}}}


@pytest.fixture
def providers(visit):
    wjx = WjxSurveys.from_options("wjx", {"push_secret": PUSH_SECRET, "surveys": SURVEY})
    tencent = TencentWenjuan.from_options("wenjuan", {"path_token": PATH_TOKEN, "surveys": {
        "outpatient-satisfaction": {**SURVEY["outpatient-satisfaction"], "id": "svy-77",
                                    "url": "https://wj.qq.com/s2/77/abcd/"}}})
    for connector in (wjx, tencent):
        connector.bind(visit.engine)
        visit.engine.connectors[connector.name] = connector
    return wjx, tencent


def stored(engine) -> list:
    return h._rows(engine, SurveyResponse)


def test_wjx_push_signed_is_stored_once_and_forged_changes_nothing(visit, providers):
    token = visit.invite()
    wjx = WjxEmulator(PUSH_SECRET)
    with LiveApp(plugin_app(visit.engine)) as live:
        url = f"{live.url}/hooks/wjx/wjx"
        forged = WjxEmulator("not-the-secret").payload("88001234", {"q1": 3, "q2": 2}, token)
        assert wjx.push(url, forged).status_code == 401
        tampered = {**wjx.payload("88001234", {"q1": 10, "q2": 5}, token), "activity": "88009999"}
        assert wjx.push(url, tampered).status_code == 401
        assert stored(visit.engine) == []
        good = wjx.payload("88001234", {"q1": 3, "q2": 2, "q3": "3"}, token, joinid=1207)
        for _ in range(3):  # wjx resends until it sees success
            assert wjx.push(url, good).status_code == 200
    [response] = stored(visit.engine)
    assert response.touchpoint_id == int(token.split(".")[0]) and response.nps == 3
    wait = next(i for i in reveal_payload(response.response, visit.engine.cipher)["item"] if i["linkId"] == "wait")
    assert wait["answer"][0]["valueCoding"]["code"] == "too-long"  # option 3 of the questionnaire
    assert [e.payload["nps_category"] for e in h._rows(visit.engine, Event) if e.type == "survey.completed"] \
        == ["detractor"]


def test_wjx_link_carries_the_token_in_its_custom_parameter(visit, providers):
    wjx, _ = providers
    link = wjx.make_link("outpatient-satisfaction", 1, touchpoint_id=5)
    assert link == f"https://www.wjx.cn/vm/abcd.aspx?sojumpparm={survey_token(visit.engine.cipher, 5)}"


def test_tencent_push_needs_the_path_token(visit, providers):
    token = visit.invite()
    tencent = TencentEmulator()
    with LiveApp(plugin_app(visit.engine)) as live:
        base = f"{live.url}/hooks/tencent-wenjuan/wenjuan"
        payload = tencent.payload("svy-77", {"q1": 9, "q2": 5, "q3": ("1",)}, token)
        assert tencent.push(f"{base}/wrong-token-of-some-length", payload).status_code == 401
        assert tencent.push(base, payload).status_code in (404, 405)
        assert stored(visit.engine) == []
        assert tencent.push(f"{base}/{PATH_TOKEN}", payload).status_code == 200
        assert tencent.push(f"{base}/{PATH_TOKEN}", payload).status_code == 200  # a resend
        update = tencent.payload("svy-77", {"q1": 0}, token, action="answer.update",
                                 answer_id=payload["payload"]["answer_id"])
        assert tencent.push(f"{base}/{PATH_TOKEN}", update).status_code == 200
    [response] = stored(visit.engine)
    assert (response.nps, response.provider) == (9, "tencent-wenjuan:wenjuan")


def test_an_authentic_push_without_a_valid_link_token_is_acknowledged_not_stored(visit, providers):
    visit.invite()
    wjx = WjxEmulator(PUSH_SECRET)
    with LiveApp(plugin_app(visit.engine)) as live:
        answer = wjx.push(f"{live.url}/hooks/wjx/wjx", wjx.payload("88001234", {"q1": 8, "q2": 4}, "99.forged"))
    assert answer.status_code == 200
    assert stored(visit.engine) == []


class TestWjxConformance(SurveyProviderConformance):
    connector_class = WjxSurveys
    survey_name = "outpatient-satisfaction"
    callback_signs_body = False  # wjx signs activity + index only (PROTOCOLS.md), not the whole body
    valid_config = {"push_secret": PUSH_SECRET, "surveys": SURVEY}
    invalid_configs = [{"surveys": SURVEY}, {"push_secret": PUSH_SECRET, "surveys": {"x": {"id": "1"}}}]

    def make_connector(self, config=None, name="conformance"):
        connector = super().make_connector(config, name)
        connector.bind(_KeyedEngine())
        return connector

    def good_callback(self, connector):
        import json

        from carepath.plugins.contracts import CallbackRequest

        body = json.dumps(WjxEmulator(PUSH_SECRET).payload("88001234", {"q1": 9}, "1.x")).encode()
        return CallbackRequest(body=body, headers={"content-type": "application/json"}, method="POST")

    def test_callback_good_signature_accepted(self) -> None:
        connector = self.make_connector()
        assert connector.verify_callback(self.good_callback(connector))


class _KeyedEngine:
    """Just enough engine for a link: a cipher with a lookup key."""

    def __init__(self) -> None:
        import os

        from carepath.store.crypto import Cipher

        self.cipher = Cipher({"k1": os.urandom(32)}, "k1")


class TestTencentWenjuanConformance(SurveyProviderConformance):
    connector_class = TencentWenjuan
    survey_name = "outpatient-satisfaction"
    callback_signs_body = False  # Tencent Wenjuan does not sign: the secret is in the path
    valid_config = {"path_token": PATH_TOKEN, "surveys": {"outpatient-satisfaction": {
        "id": "svy-77", "url": "https://wj.qq.com/s2/77/abcd/", "questions": {"q1": "nps"}}}}
    invalid_configs = [{"path_token": "short"}, {"surveys": {}}]

    def make_connector(self, config=None, name="conformance"):
        connector = super().make_connector(config, name)
        connector.bind(_KeyedEngine())
        return connector

    def good_callback(self, connector):
        from carepath.plugins.contracts import CallbackRequest

        return CallbackRequest(body=b'{"action": "answer.update", "payload": {"answer_id": "a-1"}}',
                               path=f"/hooks/tencent-wenjuan/{connector.name}/{PATH_TOKEN}", method="POST")

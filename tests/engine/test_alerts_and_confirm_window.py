"""Operator alerts are recorded once per quiet period; ``confirm_within`` and ``team`` load, export and version."""

from __future__ import annotations

from datetime import timedelta

from carepath.definition.dsl import after, anchor, enroll_on, journey, send, step
from carepath.definition.journey_files import journey_to_yaml, read_journey_text
from carepath.engine import Engine
from carepath.runtime.alerts import CONNECTOR_DOWN, mark_emitted, pending_alerts, raise_alert


def test_alert_recorded_once_per_quiet_period_then_published(database_url, settings, clock) -> None:
    engine = Engine(database_url, journeys=[], channels={}, templates={}, clock=clock, settings=settings)
    try:
        assert raise_alert(engine, kind=CONNECTOR_DOWN, source="aliyun-sms:sms", code="isv.AMOUNT_NOT_ENOUGH",
                           detail="no balance")
        clock.advance(timedelta(minutes=10))
        assert not raise_alert(engine, kind=CONNECTOR_DOWN, source="aliyun-sms:sms", code="isv.AMOUNT_NOT_ENOUGH",
                               detail="no balance")
        assert raise_alert(engine, kind=CONNECTOR_DOWN, source="tencent-sms:sms", code="AuthFailure.SecretIdNotFound",
                           detail="credentials refused")
        alerts = pending_alerts(engine)
        assert [(a.source, a.code) for a in alerts] == [("aliyun-sms:sms", "isv.AMOUNT_NOT_ENOUGH"),
                                                        ("tencent-sms:sms", "AuthFailure.SecretIdNotFound")]
        mark_emitted(engine, [alerts[0].id])
        assert [a.source for a in pending_alerts(engine)] == ["tencent-sms:sms"]
        clock.advance(timedelta(minutes=31))
        assert raise_alert(engine, kind=CONNECTOR_DOWN, source="aliyun-sms:sms", code="isv.AMOUNT_NOT_ENOUGH",
                           detail="still no balance")
    finally:
        engine.close()


def _journey(**kw):
    return journey("j", enroll=enroll_on("encounter.discharged"), anchors={"d": anchor(set_by=["encounter.discharged"])},
                   steps=[step("a", "post_visit", after("d", "1h"), send("t", via=["sms"]), **kw)])


def test_confirm_window_and_team_round_trip_and_change_the_version() -> None:
    plain = _journey()
    watched = journey("j", enroll=plain.enroll, anchors=plain.anchors, team="cardiology",
                      steps=[step("a", "post_visit", after("d", "1h"), send("t", via=["sms"]), confirm_within="2h")])
    assert watched.steps[0].confirm_within == timedelta(hours=2) and watched.team == "cardiology"
    assert watched.version != plain.version
    text = journey_to_yaml(watched)
    assert "confirm_within: 2h" in text and "team: cardiology" in text
    loaded, problems = read_journey_text(text, known_templates={"t"})
    assert problems == [] and loaded.version == watched.version
    assert "confirm_within" not in journey_to_yaml(plain) and "team" not in journey_to_yaml(plain)
    assert "confirm_within" not in plain.to_json()["steps"][0] or plain.to_json()["steps"][0]["confirm_within"] is None

"""Links patients receive (issue 16, point 6): one public base URL, defaulting to what serve listens on,
checked by ``carepath config check``."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from carepath.config import CarepathConfig, load_config
from carepath.definition.dsl import survey
from carepath.engine import Engine
from carepath.runtime.survey_links import survey_context
from carepath.settings import Settings
from carepath.teams import SurveySettings
from carepath.web.links import WebSettings, is_loopback

from tests.cli.conftest import Cli, wechat_toml

WECHAT = wechat_toml("LINKS_WX_SECRET", "LINKS_WX_TOKEN")


def _link(database_url: str, settings: Settings, config: CarepathConfig, served_at: str | None = None) -> str:
    engine = Engine(database_url, journeys=[], channels={}, settings=settings, config=config)
    try:
        engine.served_at = served_at
        action = survey("outpatient-satisfaction", via=["sms"])
        return survey_context(engine, SimpleNamespace(id=7, patient_id=1), action)["link"]
    finally:
        engine.close()


def test_survey_links_default_to_where_serve_listens(database_url: str, settings: Settings) -> None:
    assert _link(database_url, settings, CarepathConfig()).startswith("http://127.0.0.1:8787/s/7.")
    moved = settings.model_copy(update={"serve_port": 9000, "serve_host": "0.0.0.0"})
    assert _link(database_url, moved, CarepathConfig()).startswith("http://127.0.0.1:9000/s/7.")
    assert _link(database_url, settings, CarepathConfig(), served_at="http://10.1.2.3:41234").startswith(
        "http://10.1.2.3:41234/s/7.")
    public = CarepathConfig(web=WebSettings(public_url="https://care.example-hospital.cn/cp/"))
    assert _link(database_url, settings, public).startswith("https://care.example-hospital.cn/cp/s/7.")
    older = CarepathConfig(surveys=SurveySettings(base_url="https://survey.example-hospital.cn"))
    assert _link(database_url, settings, older).startswith("https://survey.example-hospital.cn/s/7.")


def test_config_check_warns_when_patients_would_get_a_loopback_link(workdir: Path, cli: Cli, monkeypatch) -> None:
    monkeypatch.setenv("LINKS_WX_SECRET", "a-wechat-app-secret")
    monkeypatch.setenv("LINKS_WX_TOKEN", "callbacktoken")
    config = workdir / "carepath.toml"
    config.write_text(WECHAT, encoding="utf-8")
    checked = cli("config", "check")
    assert checked.exit_code == 0, checked.output  # a warning, not an error: the file is valid
    assert "warning: web.public_url (not set): patients' links would start with http://127.0.0.1:8787, which " \
           "only this machine can open, yet channel(s) wechat reach patients" in checked.stderr
    report = json.loads(cli("config", "check", "--json").stdout)
    assert report["public_url"] == "http://127.0.0.1:8787" and len(report["warnings"]) == 1

    config.write_text(WECHAT + '\n[web]\npublic_url = "https://care.example-hospital.cn"\n', encoding="utf-8")
    fine = cli("config", "check")
    assert fine.exit_code == 0 and "warning" not in fine.stderr
    assert "patients' links start with: https://care.example-hospital.cn" in fine.stdout
    assert load_config(config).web.public_url == "https://care.example-hospital.cn"

    # development channels reach nobody: a loopback link is what one expects there
    config.write_text('[connectors.sms]\ntype = "outbox"\n', encoding="utf-8")
    assert "warning" not in cli("config", "check").stderr
    config.write_text('[web]\npublic_url = "carepath.example"\n', encoding="utf-8")
    bad = cli("config", "check")
    assert bad.exit_code == 1 and "web.public_url" in bad.stderr


def test_loopback_addresses() -> None:
    assert is_loopback("http://127.0.0.1:8787") and is_loopback("http://localhost/x") and is_loopback("http://[::1]:80")
    assert not is_loopback("https://care.example-hospital.cn") and not is_loopback("http://10.0.0.5:8787")

"""Loading plugins: built-ins, entry points, the allow-list, broken plugins, hook helpers."""

from __future__ import annotations

import dataclasses

import pytest

from carepath.plugins import Message, Veto, hookimpl
from carepath.plugins.manager import load_plugins

from tests.plugins.plugin_samples import BROKEN_PLUGIN, GOOD_PLUGIN, InstallPlugin


def test_builtins_register_through_the_same_hooks() -> None:
    manager = load_plugins()
    types = manager.connector_types()
    assert {"console", "outbox"} <= set(types)
    assert {"console", "outbox", "journeys"} <= set(manager.records)
    assert all(manager.records[n].builtin for n in ("console", "outbox", "journeys"))


def test_installed_plugin_is_discovered_with_its_version(install_plugin: InstallPlugin) -> None:
    install_plugin("pager", GOOD_PLUGIN, version="2.3.4")
    manager = load_plugins()
    assert "pager" in manager.connector_types()
    record = manager.records["pager"]
    assert (record.distribution, record.version, record.builtin) == ("carepath-pager", "2.3.4", False)
    info = next(i for i in manager.describe() if i.name == "pager")
    assert info.hooks == ["carepath_connectors", "carepath_templates"]
    assert (info.connectors, info.templates) == (["pager"], ["page"])


def test_broken_plugin_is_reported_by_name_and_reason_while_others_load(install_plugin: InstallPlugin) -> None:
    install_plugin("broken", BROKEN_PLUGIN)
    install_plugin("pager", GOOD_PLUGIN)
    manager = load_plugins()
    [failure] = [f for f in manager.failures if f.name == "broken"]
    assert "ModuleNotFoundError" in failure.reason and "acme_sdk_that_is_not_installed" in failure.reason
    assert "broken" not in manager.records
    assert {"pager", "console", "outbox"} <= set(manager.connector_types())


def test_allow_list_is_honoured(install_plugin: InstallPlugin, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin("broken", BROKEN_PLUGIN)
    install_plugin("pager", GOOD_PLUGIN)
    monkeypatch.setenv("CAREPATH_PLUGINS", "pager")
    manager = load_plugins()
    assert "pager" in manager.records and "broken" not in manager.records
    assert "broken" in manager.disabled and not [f for f in manager.failures if f.name == "broken"]
    assert {"console", "outbox"} <= set(manager.connector_types()), "built-ins always load"


def test_allow_list_naming_a_missing_plugin_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREPATH_PLUGINS", "nowhere")
    [failure] = [f for f in load_plugins().failures if f.name == "nowhere"]
    assert "not installed" in failure.reason


def test_unknown_hook_and_bad_signature_are_reported(install_plugin: InstallPlugin) -> None:
    header = "from carepath.plugins import hookimpl\n\n@hookimpl\n"
    install_plugin("typo", header + "def carepath_conectors():\n    return []\n")
    install_plugin("badsig", header + "def carepath_event(evt):\n    pass\n")
    manager = load_plugins()
    reasons = {f.name: f.reason for f in manager.failures}
    assert "carepath_conectors" in reasons["typo"]
    assert "evt" in reasons["badsig"]
    assert "typo" not in manager.records and "badsig" not in manager.records
    assert manager.pm.get_plugin("typo") is None


def test_entry_point_may_not_take_a_builtin_name(install_plugin: InstallPlugin) -> None:
    install_plugin("console", GOOD_PLUGIN)
    manager = load_plugins()
    assert any(f.name == "console" and "built-in" in f.reason for f in manager.failures)
    assert manager.records["console"].builtin


class Redactor:
    @hookimpl
    def carepath_before_send(self, message):
        return dataclasses.replace(message, body=message.body.replace("13912345678", "139****5678"))


class Censor:
    @hookimpl
    def carepath_before_send(self, touchpoint, message):
        return Veto(f"touchpoint {touchpoint}: forbidden word") if "forbidden" in message.body else None


def _message(body: str) -> Message:
    return Message(idempotency_key="k", channel="sms", patient_id=1, address="13912345678", title="", body=body,
                   template="t", category="clinical")


def test_before_send_redacts_and_vetoes_in_turn() -> None:
    manager = load_plugins()
    manager.pm.register(Redactor(), name="redactor")
    manager.pm.register(Censor(), name="censor")
    redacted = manager.before_send(7, _message("call 13912345678"))
    assert isinstance(redacted, Message) and redacted.body == "call 139****5678"
    veto = manager.before_send(7, _message("a forbidden word"))
    assert veto == Veto("touchpoint 7: forbidden word")


def test_event_observers_run_even_when_one_fails(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    class Failing:
        @hookimpl
        def carepath_event(self, event):
            raise RuntimeError("observer bug")

    class Recording:
        @hookimpl
        def carepath_event(self, event):
            seen.append(event)

    manager = load_plugins()
    manager.pm.register(Recording(), name="recording")
    manager.pm.register(Failing(), name="failing")
    manager.notify_event("visit.checked_in")
    assert seen == ["visit.checked_in"]
    assert "failing" in caplog.text and "observer bug" in caplog.text


def test_segments_and_web_routes_are_collected() -> None:
    from fastapi import APIRouter

    router = APIRouter()

    class Provider:
        @hookimpl
        def carepath_segments(self):
            return {"elderly": "patient.age >= 65"}

        @hookimpl
        def carepath_web_routes(self):
            return router

    manager = load_plugins()
    manager.pm.register(Provider(), name="provider")
    assert manager.segments()["elderly"] == "patient.age >= 65"
    assert router in manager.web_routers()


def test_plugins_list_shows_broken_plugins_with_their_reason(install_plugin: InstallPlugin) -> None:
    from typer.testing import CliRunner

    from carepath.cli.plugins import plugins_app
    from carepath.plugins.manager import get_plugin_manager

    install_plugin("broken", BROKEN_PLUGIN)
    install_plugin("pager", GOOD_PLUGIN, version="2.3.4")
    get_plugin_manager.cache_clear()
    try:
        result = CliRunner().invoke(plugins_app, ["list"])
    finally:
        get_plugin_manager.cache_clear()
    assert result.exit_code == 0, result.output
    assert "failed to load" in result.output and "acme_sdk_that_is_not_installed" in result.output
    assert "carepath-pager 2.3.4" in result.output and "Traceback" not in result.output

"""Issue 20.4: content performance per template and segment on known deliveries, clicks and replies; the chart."""

from __future__ import annotations

import json
import warnings
from datetime import timedelta

import pytest

from carepath.content_chart import ChartError, chart_text, cjk_font, draw_chart
from carepath.definition.dsl import enroll_on, journey, on, send, step, template
from carepath.definition.events import PatientIn
from carepath.runtime.clicks import Click, record_click
from tests.engine import helpers as h
from tests.portrait.helpers import cli


def _journey():
    return journey("education", enroll=enroll_on("visit.checked_in"),
                   templates=[template("article", "https://edu.example.cn/a", title="儿童用药安全"),
                              template("reminder", "明天复诊", title="复诊提醒")],
                   steps=[step("article", "post_visit", on("visit.checked_in"), send("article", ["sms"])),
                          step("reminder", "post_visit", on("report.ready"), send("reminder", ["sms"]))])


@pytest.fixture
def known(database_url, settings, clock):
    """10 articles (6 delivered, 7 clicked, 3 replied), 5 reminders (5 delivered, 1 replied); one late reply."""
    with h.running_engine(database_url, settings, clock, [_journey()], {"sms": h.RecordingChannel("sms")}) as eng:
        ev = h.Events(clock)
        start = clock.now()
        for i in range(10):
            eng.upsert_patient(PatientIn(mrn=f"P{i}", name="患者", phone=f"1380000000{i}"))
            eng.ingest(ev("visit.checked_in", mrn=f"P{i}"))
        assert eng.dispatch_due().sent == 10
        article = {tp.patient_id: tp for tp in h.touchpoints(eng, step="article")}
        patients = sorted(article)
        for pid in patients[:6]:
            provider_id = h.deliveries(eng, article[pid].id)[0].provider_id
            eng.ingest(ev("message.delivered", {"provider_id": provider_id}, mrn=f"P{pid - 2}"))
        for pid in patients[:7]:
            record_click(eng, Click("https://edu.example.cn/a", article[pid].id, 1, counts=True))
        clock.advance(timedelta(hours=2))
        for pid in patients[:3]:
            eng.ingest(ev("message.replied", {"text": "好"}, mrn=f"P{pid - 2}"))
        clock.set(start + timedelta(days=1))
        for pid in patients[:5]:
            eng.ingest(ev("report.ready", {"report": "血常规"}, mrn=f"P{pid - 2}"))
        assert eng.dispatch_due().sent == 5
        for tp in h.touchpoints(eng, step="reminder"):
            eng.ingest(ev("message.delivered", {"provider_id": h.deliveries(eng, tp.id)[0].provider_id},
                          mrn="P0"))
        clock.advance(timedelta(hours=1))
        eng.ingest(ev("message.replied", {"text": "收到"}, mrn=f"P{patients[4] - 2}"))
        clock.set(start + timedelta(hours=80))
        eng.ingest(ev("message.replied", {"text": "迟到的回复"}, mrn=f"P{patients[9] - 2}"))
        yield eng, start


def test_rates_per_template_with_the_numbers_behind_them(known, monkeypatch, settings, database_url):
    eng, start = known
    since = start.date().isoformat()
    result = cli(monkeypatch, settings, database_url, "report", "content", "--since", since, "--json")
    assert result.exit_code == 0, result.output
    lines = {(line["template"], line["segment"]): line for line in json.loads(result.output)["lines"]}
    article, reminder = lines[("article", "")], lines[("reminder", "")]
    assert (article["sent"], article["delivered"], article["clicked"], article["replied"]) == (10, 6, 7, 3)
    assert (article["delivery_rate"], article["click_rate"], article["reply_rate"]) == (60.0, 70.0, 30.0)
    assert (reminder["sent"], reminder["delivered"], reminder["clicked"], reminder["replied"]) == (5, 5, 0, 1)
    assert (reminder["delivery_rate"], reminder["reply_rate"]) == (100.0, 20.0)
    # at the time of the article every patient had one interaction (the visit): medium activity
    assert lines[("article", "activity-medium")]["sent"] == 10
    table = cli(monkeypatch, settings, database_url, "report", "content", "--since", since)
    assert "儿童用药安全" in table.output and "7 (70%)" in table.output


def _font_or_skip(text: str) -> str:
    try:
        return cjk_font(text)[0]
    except ChartError as exc:
        pytest.skip(f"no CJK font installed (CI installs fonts-wqy-microhei): {exc}")


def test_the_chart_draws_its_chinese_labels_with_real_glyphs(known, tmp_path, monkeypatch, settings, database_url):
    eng, start = known
    _font_or_skip("儿童用药安全复诊提醒")
    png = tmp_path / "content.png"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = cli(monkeypatch, settings, database_url, "report", "content", "--since",
                     start.date().isoformat(), "--chart", str(png), "--no-segments")
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    missing = [str(w.message) for w in caught if "missing from" in str(w.message)]
    assert missing == [], missing
    family, path = cjk_font(chart_text(["儿童用药安全\n(n=10)", "复诊提醒\n(n=5)"], "内容效果"))
    assert family and path


def test_the_glyph_check_catches_a_font_without_chinese(tmp_path):
    """The check above can fail: drawing the same labels in a Latin-only font warns of missing glyphs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plt.rcParams["font.family"] = ["DejaVu Sans"]
        fig, ax = plt.subplots()
        ax.set_title("儿童用药安全")
        fig.savefig(tmp_path / "latin.png")
        plt.close(fig)
    assert any("missing from" in str(w.message) for w in caught)
    lines = [{"title": "复诊提醒", "sent": 5, "delivery_rate": 100.0, "click_rate": 0.0, "reply_rate": 20.0}]
    _font_or_skip("复诊提醒内容效果")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        draw_chart(lines, "内容效果", tmp_path / "ok.png")
    assert not [w for w in caught if "missing from" in str(w.message)]

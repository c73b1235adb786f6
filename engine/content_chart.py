"""The PNG bar chart of ``carepath report content --chart FILE``: delivery, click and reply rates per template.

Labels are Chinese (template titles), so the chart is drawn with a font that covers every
character of its text: :func:`cjk_font` looks through the fonts matplotlib knows for one
whose character map has them all (Noto Sans CJK, WenQuanYi, Source Han... on Debian:
``apt-get install fonts-noto-cjk`` or ``fonts-wqy-microhei``) and the chart is not drawn,
with that advice, when there is none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

PREFERRED = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei",
             "Microsoft YaHei", "PingFang SC", "SimHei", "AR PL UMing CN")
SERIES = (("delivered", "送达率"), ("clicked", "点击率"), ("replied", "回复率"))
Y_LABEL = "占发送量 %"


class ChartError(Exception):
    """The chart cannot be drawn (no font for its labels)."""


def _covers(path: str, text: str) -> bool:
    from matplotlib import ft2font

    try:
        charmap = ft2font.FT2Font(path).get_charmap()
    except (OSError, RuntimeError, ValueError):
        return False
    return all(ord(ch) in charmap for ch in set(text) if not ch.isspace())


def cjk_font(text: str) -> tuple[str, str]:
    """``(family, file)`` of an installed font that has a glyph for every character of ``text``."""
    from matplotlib import font_manager

    fonts = sorted(font_manager.fontManager.ttflist,
                   key=lambda f: (f.name not in PREFERRED, PREFERRED.index(f.name) if f.name in PREFERRED else 0))
    for font in fonts:
        if _covers(font.fname, text):
            return font.name, font.fname
    raise ChartError("no installed font has glyphs for the chart's Chinese labels: install one (Debian: "
                     "apt-get install fonts-noto-cjk, or fonts-wqy-microhei) and run the command again")


def chart_text(labels: Iterable[str], title: str) -> str:
    return "".join(labels) + title + Y_LABEL + "".join(name for _, name in SERIES) + "%0123456789"


def draw_chart(lines: list[dict], title: str, path: Path) -> str:
    """Draw grouped bars (rates of messages sent) per template to ``path``; returns the font family used."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{line['title']}\n(n={line['sent']})" for line in lines]
    family, _ = cjk_font(chart_text(labels, title))
    plt.rcParams["font.family"] = [family]
    plt.rcParams["axes.unicode_minus"] = False
    width = 0.8 / len(SERIES)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(lines) + 2), 4.5), dpi=110)
    for i, (key, name) in enumerate(SERIES):
        values = [_rate(line, key) for line in lines]
        xs = [x + (i - 1) * width for x in range(len(lines))]
        bars = ax.bar(xs, values, width=width, label=name)
        ax.bar_label(bars, labels=[f"{v:g}%" for v in values], fontsize=8, padding=2)
    ax.set_xticks(range(len(lines)), labels)
    ax.set_ylabel(Y_LABEL)
    ax.set_ylim(0, 110)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return family


def _rate(line: dict, key: str) -> float:
    return {"delivered": line["delivery_rate"], "clicked": line["click_rate"],
            "replied": line["reply_rate"]}[key] or 0.0

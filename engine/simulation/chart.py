"""The PNG of ``carepath simulate --chart FILE``: messages per day per channel over staff tasks per day per team.

Drawn with matplotlib's Agg backend, as ``carepath report content --chart`` is; labels are the
journeys' own names (channel, team), so a CJK font is looked up only when one of them needs it.
"""

from __future__ import annotations

from pathlib import Path

from carepath.content_chart import cjk_font


def draw_simulation_chart(figures: dict, path: Path) -> None:
    """Stacked bars of messages per day by channel, and lines of staff tasks per day by team, peaks marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = list(figures["messages_per_day"])
    channels = sorted({c for per in figures["messages_per_day"].values() for c in per})
    teams = figures["staff_tasks"]["teams"]
    run = figures["run"]
    title = f"{', '.join(run['journeys'])}: {run['patients']} patients, {run['days']} days, seed {run['seed']}"
    text = title + "".join(channels) + "".join(teams)
    if not text.isascii():
        plt.rcParams["font.family"] = [cjk_font(text)[0]]
    xs = list(range(len(days)))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(7.0, 0.12 * len(days) + 4), 6.5), dpi=100, sharex=True)
    base = [0] * len(days)
    for channel in channels:
        values = [figures["messages_per_day"][d].get(channel, 0) for d in days]
        top.bar(xs, values, bottom=base, label=channel, width=0.85)
        base = [b + v for b, v in zip(base, values)]
    top.set_ylabel("messages sent per day")
    top.set_title(title)
    if channels:
        top.legend(loc="upper left")
    per_day = figures["staff_tasks"]["per_day"]
    for team, info in teams.items():
        values = [per_day.get(d, {}).get(team, 0) for d in days]
        line, = bottom.plot(xs, values, marker=".", label=f"{team} (peak {info['peak']} on {info['peak_day']})")
        if info["peak_day"] in days:
            bottom.annotate("peak", (days.index(info["peak_day"]), info["peak"]), textcoords="offset points",
                            xytext=(0, 6), ha="center", fontsize=8, color=line.get_color())
    bottom.set_ylabel("staff tasks opened per day")
    if teams:
        bottom.legend(loc="upper left", fontsize=8)
    step = max(1, len(days) // 12)
    bottom.set_xticks(xs[::step], [d[5:] for d in days[::step]], rotation=45)
    bottom.set_xlabel("day (hospital time)")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)

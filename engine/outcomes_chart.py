"""The PNG chart of ``carepath report outcomes JOURNEY --chart FILE``: each measure's rate per arm with its
95 % interval as an error bar, one panel per experiment (labels are ASCII: no CJK font needed)."""

from __future__ import annotations

from pathlib import Path

from carepath.outcomes_report import OutcomesReport


def draw_outcomes(report: OutcomesReport, path: Path) -> None:
    """Draw grouped bars (measures × arms) with Wilson intervals to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [e for e in report.experiments if e.arms]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 4 * len(panels)), squeeze=False)
    labels = report.labels
    for ax, exp in zip(axes[:, 0], panels):
        keys = [k for k in labels if k in exp.arms[0].rates]
        width = 0.8 / len(exp.arms)
        for i, arm in enumerate(exp.arms):
            rates = [arm.rates[k] for k in keys]
            xs = [j + i * width for j in range(len(keys))]
            heights = [r.rate or 0 for r in rates]
            errors = [[(r.rate or 0) - (r.low or 0) for r in rates], [(r.high or 0) - (r.rate or 0) for r in rates]]
            ax.bar(xs, heights, width, yerr=errors, capsize=3, label=f"{arm.name} (n={arm.patients})")
        ax.set_xticks([j + width * (len(exp.arms) - 1) / 2 for j in range(len(keys))])
        ax.set_xticklabels([labels[k] for k in keys], rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("% of patients (95 % CI)")
        ax.set_title(f"{report.journey}: experiment {exp.experiment}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

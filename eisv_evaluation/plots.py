"""DET curves and score histograms of an evaluation, drawn to PNG with matplotlib (Agg)."""

import numpy as np

from eisv_io.atomic_files import atomic_path

from .evaluation import group_masks
from .scoring import error_rates

# Axis ticks of a DET plot, in percent.
_TICKS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 40]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_det(scores, trials, path, title="DET curve"):
    """DET curve (miss vs false alarm on normal-deviate axes) for all trials and each group with both classes."""
    from scipy.stats import norm

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 6))
    clip = lambda rates: norm.ppf(np.clip(rates, 5e-4, 1 - 5e-4))
    for name, mask in group_masks(trials).items():
        labels = trials.label[mask]
        if labels.min() == labels.max() or (name != "all" and not name.startswith("condition/")):
            continue
        miss, false_alarm, _ = error_rates(scores[mask], labels)
        axis.plot(clip(false_alarm), clip(miss), label=name.replace("condition/", ""), lw=2 if name == "all" else 1)
    ticks = norm.ppf(np.array(_TICKS) / 100)
    axis.set_xticks(ticks, [f"{t:g}" for t in _TICKS])
    axis.set_yticks(ticks, [f"{t:g}" for t in _TICKS])
    axis.set_xlim(ticks[0], ticks[-1])
    axis.set_ylim(ticks[0], ticks[-1])
    axis.plot([ticks[0], ticks[-1]], [ticks[0], ticks[-1]], ":", color="grey", lw=0.8)
    axis.set_xlabel("false alarm rate (%)")
    axis.set_ylabel("miss rate (%)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    _save(figure, path)


def plot_histograms(scores, trials, path, title="Score distributions"):
    """One panel per condition group: histogram of its target and non-target scores."""
    plt = _pyplot()
    groups = [(name, mask) for name, mask in group_masks(trials).items() if name.startswith("condition/")]
    groups = groups or [("all", np.ones(len(trials), bool))]
    columns = min(3, len(groups))
    rows = (len(groups) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    bins = np.linspace(scores.min(), scores.max() + 1e-9, 50)
    for axis, (name, mask) in zip(axes.flat, groups):
        for label, colour, text in ((0, "tab:red", "non-target"), (1, "tab:blue", "target")):
            values = scores[mask & (trials.label == label)]
            if values.size:
                axis.hist(values, bins=bins, density=True, alpha=0.5, color=colour, label=f"{text} ({values.size})")
        axis.set_title(name.replace("condition/", ""), fontsize=9)
        axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(groups):]:
        axis.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    _save(figure, path)


def _save(figure, path):
    plt = _pyplot()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)

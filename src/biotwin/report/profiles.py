"""Figure of profile likelihoods: one panel per parameter (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from biotwin.identify import Profiles


def plot_profiles(profiles: Profiles, path: str | Path, *, title: str | None = None) -> Path:
    """The profiles PL(theta) - J(x*) against each parameter, with the threshold and the interval.

    Each panel shows one parameter's profile (dots where another parameter sits on its bound are
    hollow), the threshold Delta = chi2_1(confidence)/2 as a dashed line, the likelihood-ratio
    confidence interval shaded (up to the explored range where it is open) and the optimum as a
    dotted line; the title gives the verdict. Parameters estimated on a log scale get a log axis.
    When a profile found a better optimum than the one given, the figure says so. The figure is
    written to ``path`` (PNG or SVG by its suffix) through a temporary file.
    """
    from matplotlib.ticker import FuncFormatter, NullFormatter

    from biotwin.objective import from_scale
    from biotwin.report.plots import pyplot, save_figure

    plt = pyplot()

    path = Path(path)
    n = max(len(profiles), 1)
    columns = min(n, 3)
    rows = int(np.ceil(n / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.4 * rows), squeeze=False)
    colour = plt.rcParams["axes.prop_cycle"].by_key()["color"][0]
    percent = f"{100 * profiles.confidence:g} %"
    short = FuncFormatter(lambda value, _: f"{value:.3g}")
    for axis, p in zip(axes.flat, profiles):
        values, rise = p.values, p.rise
        low, high = p.interval
        # An open end is shaded up to where the profile was explored.
        shown_low = low if np.isfinite(p.lower) else float(values.min())
        shown_high = high if np.isfinite(p.upper) else float(values.max())
        axis.axvspan(shown_low, shown_high, color=colour, alpha=0.15, linewidth=0, label=f"{percent} interval")
        axis.plot(values, rise, "-", color=colour, linewidth=1.2)
        axis.plot(values[~p.pinned], rise[~p.pinned], "o", color=colour, markersize=3.5, label="profile")
        if p.pinned.any():
            axis.plot(values[p.pinned], rise[p.pinned], "o", markerfacecolor="none", color=colour, markersize=3.5,
                      label="another parameter on its bound")
        axis.axhline(p.threshold, color="0.35", linestyle="--", linewidth=1, label=f"threshold {p.threshold:.2f}")
        axis.axvline(float(from_scale(p.optimum, p.scale)), color="0.5", linestyle=":", linewidth=1)
        if p.scale != "lin":
            axis.set_xscale("log")
            # Label minor ticks only when the axis spans less than a decade (else they collide).
            decades = np.log10(float(values.max()) / float(values.min())) if values.size > 1 else 0.0
            axis.xaxis.set_major_formatter(short)
            axis.xaxis.set_minor_formatter(short if decades < 1 else NullFormatter())
        axis.tick_params(axis="x", which="both", labelsize=8)
        bottom = min(0.0, float(np.min(rise))) - 0.05 * p.threshold
        axis.set_ylim(bottom, 2.5 * p.threshold)
        axis.set_title(f"{p.name}: {p.verdict}", fontsize=10)
        axis.set_xlabel(p.name)
        axis.set_ylabel("NLL − min")
        if axis is axes.flat[0]:
            axis.legend(fontsize=7, frameon=False, loc="best")
    for axis in axes.flat[len(profiles):]:
        axis.set_visible(False)
    heading = title or ""
    if profiles.improved and profiles.better_nll is not None:
        note = (f"a profile reached NLL {profiles.better_nll:.4g} < {profiles.best_nll:.4g} at the given optimum: "
                "refit from the better point")
        heading = f"{heading}\n{note}" if heading else note
    if heading:
        figure.suptitle(heading, fontsize=10)
    figure.tight_layout()
    return save_figure(figure, path)

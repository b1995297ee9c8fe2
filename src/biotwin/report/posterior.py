"""Figures of a posterior: marginals and pairs of the parameters, predictive bands over the data.

Static matplotlib figures (Agg, no display needed), written through a temporary file so that a
failure leaves nothing half-written, in the style of :mod:`biotwin.report.plots`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from biotwin.report.plots import panel_grid, pyplot, save_figure

if TYPE_CHECKING:
    from biotwin.infer import Posterior, Predictive

#: Above this many parameters the pair plot shows the marginals only (n^2 panels get unreadable).
MAX_PAIRS = 8
#: Points per off-diagonal panel of the pair plot (a random subset of the draws, fixed seed).
PAIR_POINTS = 1500


def plot_posterior(
    posterior: Posterior, path: str | Path, *, reference: Mapping[str, float] | None = None, title: str | None = None,
    pairs: bool | None = None,
) -> Path:
    """Marginal histograms of every parameter (linear scale), and pairwise scatter plots below them.

    Each chain's draws are stacked in one histogram per parameter, with the posterior median and
    the central 90 % interval marked; ``reference`` values (a truth, a published estimate) are
    drawn as dashed lines. ``pairs`` (default: up to :data:`MAX_PAIRS` parameters) adds the
    lower triangle of scatter plots, which shows correlations the marginals hide.
    """
    plt = pyplot()
    samples = posterior.samples
    names = list(samples)
    n = len(names)
    pairs = n <= MAX_PAIRS if pairs is None else pairs
    if pairs:
        figure, axes = plt.subplots(n, n, figsize=(2.2 * n + 1.0, 2.2 * n + 0.6), squeeze=False)
    else:
        columns = min(n, 4)
        rows = int(np.ceil(n / columns))
        figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False)
    flat = {name: values.ravel() for name, values in samples.items()}
    subset = np.random.default_rng(0).choice(posterior.chains * posterior.draws,
                                             size=min(PAIR_POINTS, posterior.chains * posterior.draws), replace=False)
    for i, name in enumerate(names):
        axis = axes[i, i] if pairs else axes.flat[i]
        values = flat[name]
        low, median, high = np.quantile(values, [0.05, 0.5, 0.95])
        axis.hist(values, bins=40, color="#4c72b0", alpha=0.8)
        axis.axvline(median, color="k", linewidth=1)
        for edge in (low, high):
            axis.axvline(edge, color="k", linewidth=0.8, linestyle=":")
        if reference and name in reference:
            axis.axvline(reference[name], color="#c44e52", linewidth=1.2, linestyle="--")
        axis.set_title(f"{name}\n{median:.4g} [{low:.4g}, {high:.4g}]", fontsize=8)
        axis.set_yticks([])
        axis.tick_params(labelsize=7)
        if pairs:
            for j in range(n):
                if j < i:
                    other = axes[i, j]
                    other.plot(flat[names[j]][subset], values[subset], ".", markersize=1.5, alpha=0.4, color="#4c72b0")
                    if reference and name in reference and names[j] in reference:
                        other.plot(reference[names[j]], reference[name], "x", color="#c44e52", markersize=6)
                    other.tick_params(labelsize=7)
                    if j == 0:
                        other.set_ylabel(name, fontsize=8)
                    if i == n - 1:
                        other.set_xlabel(names[j], fontsize=8)
                elif j > i:
                    axes[i, j].set_visible(False)
    if not pairs:
        for axis in axes.flat[n:]:
            axis.set_visible(False)
    heading = title or "Posterior"
    figure.suptitle(f"{heading}: {posterior.chains} chains x {posterior.draws} draws, max R-hat {posterior.max_rhat:.3f}, "
                    f"min bulk ESS {posterior.min_ess:.0f}, {posterior.divergences} divergences", fontsize=9)
    figure.tight_layout()
    return save_figure(figure, path)


def plot_predictive(predictive: Predictive, path: str | Path, *, title: str | None = None) -> Path:
    """The posterior predictive bands of every observable over its measurements, one panel per experiment.

    Per observable: the central band (``predictive.level``) as a shaded area, the median as a
    line and the measured values as dots, at the measurement times.
    """
    plt = pyplot()
    measurements = predictive.measurements
    experiments = list(dict.fromkeys(measurements.experiment))
    observables = list(dict.fromkeys(measurements.observable))
    figure, axes = panel_grid(len(experiments))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, experiment in zip(axes.flat, experiments):
        for j, observable in enumerate(observables):
            if not any(e == experiment and o == observable for e, o in zip(measurements.experiment, measurements.observable)):
                continue
            band = predictive.bands(experiment, observable)
            colour = colours[j % len(colours)]
            axis.fill_between(band["time"], band["lower"], band["upper"], color=colour, alpha=0.25, linewidth=0,
                              label=f"{observable} {predictive.level:.0%} band")
            axis.plot(band["time"], band["median"], "-", color=colour, linewidth=1.2, label=f"{observable} median")
            axis.plot(band["time"], band["value"], "o", color=colour, markersize=3.5, label=f"{observable} data")
        axis.set_title(experiment if len(experiments) > 1 else (title or experiment))
        axis.set_xlabel("time")
        axis.legend(fontsize=7, frameon=False)
    figure.suptitle(f"{title + ': ' if title and len(experiments) > 1 else ''}posterior predictive, "
                    f"{predictive.coverage:.0%} of the data inside the {predictive.level:.0%} bands", fontsize=9)
    figure.tight_layout()
    return save_figure(figure, path)

"""Static figures for notebooks and papers (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from biotwin.data import Dataset
from biotwin.simulate import Solution


def pyplot():
    """matplotlib's pyplot on the Agg backend: figures are written to files, never shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: str | Path, dpi: int = 130) -> Path:
    """Write a matplotlib figure to ``path`` (PNG or SVG by its suffix) atomically, and close it."""
    from biotwin.io.files import atomic_write

    try:
        return atomic_write(path, lambda temporary: figure.savefig(temporary, dpi=dpi))
    finally:
        pyplot().close(figure)


def plot_fit(
    curves: Mapping[str, Solution], path: str | Path, dataset: Dataset | None = None, *, title: str | None = None
) -> Path:
    """Simulated observables (lines) and, when ``dataset`` is given, the measurements (dots).

    One panel per entry of ``curves``, which maps experiment names to solutions (usually on a
    dense grid). The figure is
    written to ``path`` (PNG or SVG by its suffix) through a temporary file, so a failure leaves
    nothing half-written.
    """
    plt = pyplot()
    path = Path(path)
    n = len(curves)
    columns = min(n, 3)
    rows = int(np.ceil(n / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.6 * rows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    unit = dataset.time_unit if dataset is not None else None
    for axis, (name, solution) in zip(axes.flat, curves.items()):
        experiment = dataset[name] if dataset is not None else None
        for j, observable in enumerate(solution.observable_names):
            colour = colours[j % len(colours)]
            axis.plot(solution.times, solution.observable(observable), "-", color=colour, label=f"{observable} (model)")
            if experiment is not None and observable in experiment.observables:
                times, values = experiment.observed(observable)
                axis.plot(times, values, "o", color=colour, markersize=4, label=f"{observable} (data)")
        for dose in experiment.doses if experiment is not None else ():
            axis.axvline(dose.time, color="0.6", linestyle=":", linewidth=1)
        axis.set_title(name if n > 1 else (title or name))
        axis.set_xlabel(f"time ({unit})" if unit else "time")
        axis.legend(fontsize=8, frameon=False)
    for axis in axes.flat[n:]:
        axis.set_visible(False)
    if title and n > 1:
        figure.suptitle(title)
    figure.tight_layout()
    return save_figure(figure, path)


def plot_waterfall(calibration, path: str | Path, *, title: str | None = None) -> Path:
    """The waterfall of a multi-start fit: each start's final NLL, best first, minus the best.

    Flat steps are local optima reached by several starts; the first step's width is the number
    of starts that converged to the best fit. Failed starts (infinite NLL) are marked at the top.
    """
    plt = pyplot()
    values = calibration.waterfall - calibration.best_nll
    finite = np.isfinite(values)
    figure, axis = plt.subplots(figsize=(6.0, 3.8))
    ranks = np.arange(1, values.size + 1)
    shown = np.where(finite, values, np.nan) + 1e-3  # a log axis: 1e-3 marks "at the best"
    axis.semilogy(ranks, shown, "o-", markersize=4)
    if not finite.all():
        top = np.nanmax(shown) * 3 if finite.any() else 1.0
        axis.plot(ranks[~finite], np.full((~finite).sum(), top), "x", color="C3", label="failed")
        axis.legend(frameon=False, fontsize=8)
    axis.axhline(0.1 + 1e-3, color="0.5", linestyle="--", linewidth=1)
    axis.set_xlabel("start (sorted by final NLL)")
    axis.set_ylabel("NLL - best NLL (+0.001)")
    axis.set_title(title or f"{calibration.converged} of {values.size} starts reached the best fit")
    figure.tight_layout()
    return save_figure(figure, path)

"""Static figures for notebooks and papers (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from biotwin.data import Dataset
from biotwin.simulate import Solution

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from biotwin.report.folder import TwinResults
    from biotwin.twin import Twin


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


def panel_grid(n: int, width: float = 5.2, height: float = 3.6) -> tuple[Figure, np.ndarray[Axes]]:
    """A figure with ``n`` panels, at most three a row (the panels beyond ``n`` hidden), and its axes."""
    plt = pyplot()
    columns = min(max(n, 1), 3)
    rows = int(np.ceil(max(n, 1) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    for axis in axes.flat[n:]:
        axis.set_visible(False)
    return figure, axes


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
    figure, axes = panel_grid(n)
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
    if title and n > 1:
        figure.suptitle(title)
    figure.tight_layout()
    return save_figure(figure, path)


def plot_twin(source: str | Path | Twin | TwinResults, path: str | Path | None = None, *, draws: int = 200, seed: int = 0,
              title: str | None = None) -> Figure:
    """A twin's fit to its data, one panel per experiment, with posterior predictive bands when there is a posterior.

    ``source`` is a twin folder, a :class:`~biotwin.twin.Twin` (plotted at its model's parameter
    values) or :class:`~biotwin.report.folder.TwinResults`. Each observable is drawn as its
    measurements (dots), the best fit (line) and, from ``draws`` posterior draws, the 50 % and
    90 % predictive bands (shaded). Returns the matplotlib figure; with ``path`` it is also
    written there (PNG or SVG by its suffix).
    """
    from biotwin.report.folder import results_of
    from biotwin.report.trajectories import LEVELS, trajectories

    results = results_of(source)
    curves = trajectories(results, draws=draws, seed=seed)
    dataset = results.twin.dataset
    figure, axes = panel_grid(len(dataset))
    colours = pyplot().rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, experiment in zip(axes.flat, dataset):
        curve = curves[experiment.name]
        for j, name in enumerate(curve.names):
            colour = colours[j % len(colours)]
            if curve.quantiles is not None:
                for level, alpha in zip(LEVELS, (0.15, 0.3)):
                    lower, upper = curve.band(name, level)
                    axis.fill_between(curve.times, lower, upper, color=colour, alpha=alpha, linewidth=0,
                                      label=f"{name} {level:.0%} band")
            axis.plot(curve.times, curve.best[:, curve.column(name)], "-", color=colour, label=f"{name} best fit")
            if name in experiment.observables:
                times, values = experiment.observed(name)
                axis.plot(times, values, "o", color=colour, markersize=4, label=f"{name} data")
        for dose in experiment.doses:
            axis.axvline(dose.time, color="0.6", linestyle=":", linewidth=1)
        axis.set_title(experiment.name, fontsize=10)
        axis.set_xlabel(f"time ({dataset.time_unit})" if dataset.time_unit else "time")
        axis.legend(fontsize=7, frameon=False)
    figure.suptitle(title or results.name)
    figure.tight_layout()
    if path is not None:
        save_figure(figure, path)
    return figure


def plot_waterfall(calibration, path: str | Path, *, title: str | None = None) -> Path:
    """The waterfall of a multi-start fit: each start's final NLL, best first, minus the best.

    Flat steps are local optima reached by several starts; the first step's width is the number
    of starts that converged to the best fit. Failed starts (infinite NLL) are marked at the top,
    abandoned ones (stopped where they could not catch up with the best) ringed. The NLL of the
    nominal parameter values is a dotted line, or, where they fit better than every start, a
    note of by how much.
    """
    plt = pyplot()
    values = calibration.waterfall - calibration.best_nll
    finite = np.isfinite(values)
    figure, axis = plt.subplots(figsize=(6.0, 3.8))
    ranks = np.arange(1, values.size + 1)
    shown = np.where(finite, values, np.nan) + 1e-3  # a log axis: 1e-3 marks "at the best"
    axis.semilogy(ranks, shown, "o-", markersize=4)
    abandoned = np.array([s.abandoned for s in calibration.starts], dtype=bool)
    if abandoned.any():
        axis.plot(ranks[abandoned], shown[abandoned], "o", markersize=9, markerfacecolor="none", color="C1",
                  label="abandoned (could not catch up)")
    if not finite.all():
        top = np.nanmax(shown) * 3 if finite.any() else 1.0
        axis.plot(ranks[~finite], np.full((~finite).sum(), top), "x", color="C3", label="failed")
    nominal = calibration.nominal_nll - calibration.best_nll
    if np.isfinite(nominal) and nominal >= 0:
        axis.axhline(nominal + 1e-3, color="C2", linestyle=":", linewidth=1.5, label="nominal values")
    elif np.isfinite(nominal):
        axis.text(0.02, 0.96, f"nominal values: {-nominal:.3g} below the best start", transform=axis.transAxes,
                  va="top", fontsize=8, color="C3")
    if axis.get_legend_handles_labels()[0]:
        axis.legend(frameon=False, fontsize=8)
    axis.axhline(0.1 + 1e-3, color="0.5", linestyle="--", linewidth=1)
    axis.set_xlabel("start (sorted by final NLL)")
    axis.set_ylabel("NLL - best NLL (+0.001)")
    axis.set_title(title or f"{calibration.converged} of {values.size} starts reached the best fit")
    figure.tight_layout()
    return save_figure(figure, path)

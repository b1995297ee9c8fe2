"""Figures of virtual experiments: scenarios side by side, median and 50%/90% bands per quantity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from biotwin.experiment import Forecast
from biotwin.report.plots import pyplot, save_figure


def plot_forecasts(forecasts: Mapping[str, Forecast], path: str | Path, *, quantities: Sequence[str] | None = None,
                   title: str | None = None, time_unit: str | None = None) -> Path:
    """One panel per quantity (default: every state and observable); each scenario's median as a line,
    its central 50% band darker and 90% band lighter, doses marked at the bottom."""
    plt = pyplot()
    first = next(iter(forecasts.values()))
    shown = list(quantities or first.quantities)
    columns = min(len(shown), 3)
    rows = int(np.ceil(len(shown) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.6 * rows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for axis, quantity in zip(axes.flat, shown):
        for k, (name, forecast) in enumerate(forecasts.items()):
            colour = colours[k % len(colours)]
            bands = forecast.bands(quantity)
            axis.fill_between(forecast.times, bands["q05"], bands["q95"], color=colour, alpha=0.15, linewidth=0)
            axis.fill_between(forecast.times, bands["q25"], bands["q75"], color=colour, alpha=0.3, linewidth=0)
            failed = f", {forecast.n_failed} failed" if forecast.n_failed else ""
            axis.plot(forecast.times, bands["median"], color=colour, label=f"{name}{failed}")
            for dose in forecast.scenario.boluses():
                axis.plot(dose.time, 0, marker="^", color=colour, markersize=5, clip_on=False,
                          transform=axis.get_xaxis_transform())
        axis.set_title(quantity)
        axis.set_xlabel(f"time ({time_unit})" if time_unit else "time")
        axis.legend(fontsize=8, frameon=False)
    for axis in axes.flat[len(shown):]:
        axis.set_visible(False)
    draws = first.draws
    figure.suptitle(title or f"median, 50% and 90% bands over {draws} {first.source} draw{'s' if draws > 1 else ''}")
    figure.tight_layout()
    return save_figure(figure, path)

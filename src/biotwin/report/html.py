"""The report of a twin folder: one self-contained HTML file that opens offline.

plotly.js is inlined and the equations are MathML, so the file needs no network. The plotly.js
is a bundle of v4.1.1 (the version the ``plotly`` package of ``pyproject.toml`` ships) with only
the traces the report draws (scatter, histogram, contour, heat map), vendored in
``report/vendor`` with its MIT licence; ``tools/plotly-bundle`` rebuilds it and gives its
timings (the browser runs it in half the CPU time of plotly's cartesian bundle).

Sections follow the workflow: the data and the model's fit (with 50 % and 90 %
posterior predictive bands when there is a posterior), the chosen equations, discovery's
Pareto front and term inclusion probabilities, the parameters with their profile-likelihood
confidence intervals, identifiability verdicts and posterior credible intervals, posterior pair
plots, and scenario forecasts with their comparisons. A section whose results are absent is
replaced by a line naming the command that produces them.

Plot data are written as compact JSON with 6 significant digits, and the pair plot's joint
densities are binned, so a twin with a few experiments and thousands of draws stays within a
few megabytes (most of it plotly.js).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from biotwin.report.folder import PRODUCED_BY, TwinResults, read_results
from biotwin.report.posterior import MAX_PAIRS
from biotwin.report.tables import html_table
from biotwin.report.trajectories import Trajectory, trajectories

#: plotly.js with the report's traces only (see ``tools/plotly-bundle``), inlined in every report.
PLOTLY_JS = Path(__file__).parent / "vendor" / "plotly-biotwin.min.js"
#: Posterior draws simulated for the predictive bands.
BAND_DRAWS = 200
#: Posterior draws in the pair plot's histograms and joint densities.
HISTOGRAM_DRAWS = 1000
#: Bins per axis of the pair plot's joint densities.
PAIR_BINS = 20
#: Filled contour levels of each joint density, evenly spaced up to its peak.
PAIR_LEVELS = 8
#: Time points of each simulated curve.
GRID = 200
#: Significant digits of the numbers in the plot data.
DIGITS = 6
#: plotly's default colour sequence, one colour per observable.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
#: Shading of the 90 % and 50 % bands.
BAND_ALPHA = {0.9: 0.15, 0.5: 0.3}


def compact(value: Any) -> Any:
    """Plain JSON data with every number rounded to :data:`DIGITS` significant digits (NaN and inf as null)."""
    if isinstance(value, Mapping):
        return {str(k): compact(v) for k, v in value.items()}
    if isinstance(value, np.ndarray | list | tuple):
        return [compact(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    number = float(value)
    return float(f"{number:.{DIGITS}g}") if math.isfinite(number) else None


def _rgba(colour: str, alpha: float) -> str:
    red, green, blue = (int(colour[k:k + 2], 16) for k in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def _bands(times: Any, edges: Mapping[float, tuple[Any, Any]], median: Any, colour: str, name: str) -> list[dict[str, Any]]:
    """Traces of central bands (``edges``: level to lower and upper edge, widest first) and the median line."""
    traces: list[dict[str, Any]] = []
    for level, (lower, upper) in edges.items():
        traces.append({"type": "scatter", "mode": "lines", "x": times, "y": lower, "line": {"width": 0},
                       "legendgroup": name, "showlegend": False, "hoverinfo": "skip"})
        traces.append({"type": "scatter", "mode": "lines", "x": times, "y": upper, "line": {"width": 0},
                       "fill": "tonexty", "fillcolor": _rgba(colour, BAND_ALPHA[level]), "legendgroup": name,
                       "name": f"{name} {level:.0%} band", "hoverinfo": "skip"})
    if median is not None:
        traces.append({"type": "scatter", "mode": "lines", "x": times, "y": median, "legendgroup": name,
                       "line": {"color": colour, "dash": "dot", "width": 1.5}, "name": f"{name} median"})
    return traces


def _layout(title: str, x: str, y: str = "", **more: Any) -> dict[str, Any]:
    return {"title": {"text": title, "font": {"size": 14}}, "xaxis": {"title": {"text": x}},
            "yaxis": {"title": {"text": y}}, "margin": {"l": 60, "r": 20, "t": 40, "b": 50}, "height": 360,
            "legend": {"font": {"size": 11}}, "template": None, **more}


def fit_figures(results: TwinResults, curves: Mapping[str, Trajectory]) -> list[dict[str, Any]]:
    """One figure per experiment: each observable's data (dots), best fit (line) and predictive bands."""
    dataset = results.twin.dataset
    unit = f" ({dataset.time_unit})" if dataset.time_unit else ""
    figures = []
    for experiment in dataset:
        curve = curves[experiment.name]
        traces: list[dict[str, Any]] = []
        for j, name in enumerate(curve.names):
            colour = COLOURS[j % len(COLOURS)]
            if curve.quantiles is not None:
                edges = {level: curve.band(name, level) for level in BAND_ALPHA}
                traces += _bands(curve.times, edges, curve.quantile(name, 0.5), colour, name)
            traces.append({"type": "scatter", "mode": "lines", "x": curve.times, "y": curve.best[:, curve.column(name)],
                           "line": {"color": colour, "width": 2}, "legendgroup": name, "name": f"{name} best fit"})
            if name in experiment.observables:
                times, values = experiment.observed(name)
                traces.append({"type": "scatter", "mode": "markers", "x": times, "y": values, "legendgroup": name,
                               "marker": {"color": colour, "size": 7, "line": {"color": "white", "width": 1}},
                               "name": f"{name} data"})
        shapes = [{"type": "line", "xref": "x", "yref": "paper", "x0": d.time, "x1": d.time, "y0": 0, "y1": 1,
                   "line": {"color": "#999", "dash": "dot", "width": 1}} for d in experiment.doses]
        figures.append({"data": traces, "layout": _layout(experiment.name, f"time{unit}", shapes=shapes)})
    return figures


def pareto_figure(discovery: Mapping[str, Any]) -> dict[str, Any]:
    """Discovery's Pareto front: complexity against trajectory error, the chosen model marked."""
    front = sorted(discovery["pareto"], key=lambda row: row["complexity"])
    hover = ["<br>".join(f"d{state}/dt = {rhs}" for state, rhs in row["equations"].items()) for row in front]
    chosen = [row for row in front if row.get("chosen")] or [discovery["chosen"]]
    positive = all(row["error"] > 0 for row in front + chosen)
    traces = [
        {"type": "scatter", "mode": "lines+markers", "x": [r["complexity"] for r in front], "y": [r["error"] for r in front],
         "text": hover, "hovertemplate": "complexity %{x}, error %{y}<br>%{text}<extra></extra>", "name": "Pareto front",
         "marker": {"size": 8, "color": COLOURS[0]}},
        {"type": "scatter", "mode": "markers", "x": [r["complexity"] for r in chosen], "y": [r["error"] for r in chosen],
         "name": f"chosen ({str(discovery.get('criterion', '')).upper()})", "hoverinfo": "skip",
         "marker": {"size": 16, "symbol": "star", "color": COLOURS[3]}},
    ]
    layout = _layout("Pareto front", "complexity", "trajectory error")
    layout["yaxis"]["type"] = "log" if positive else "linear"
    return {"data": traces, "layout": layout}


def hybrid_figures(record: Mapping[str, Any], time_unit: str | None = None) -> list[dict[str, Any]]:
    """One figure per neural term of a hybrid twin: the term as the network learned it (solid) and
    as its distilled closed form (dashed), along every experiment's trained trajectory."""
    unit = f" ({time_unit})" if time_unit else ""
    figures = []
    for name, by_experiment in record["curves"].items():
        closed = record["terms"][name]["distilled"]
        traces: list[dict[str, Any]] = []
        for k, (experiment, curve) in enumerate(by_experiment.items()):
            colour = COLOURS[k % len(COLOURS)]
            traces += [
                {"type": "scatter", "mode": "lines", "x": curve["time"], "y": curve["learned"], "legendgroup": experiment,
                 "line": {"color": colour, "width": 2}, "name": f"{experiment}: learned"},
                {"type": "scatter", "mode": "lines", "x": curve["time"], "y": curve["distilled"], "legendgroup": experiment,
                 "line": {"color": colour, "width": 2, "dash": "dash"}, "name": f"{experiment}: {closed}"},
            ]
        inputs = ", ".join(record["terms"][name]["inputs"])
        figures.append({"data": traces, "layout": _layout(f"{name}({inputs}): learned and distilled", f"time{unit}", name)})
    return figures


def inclusion_figure(inclusion: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """The inclusion probability of every library term in every state's equation, as a heat map."""
    states = list(inclusion)
    terms = sorted({t for terms in inclusion.values() for t in terms},
                   key=lambda t: -max(inclusion[s].get(t, 0.0) for s in states))
    z = [[inclusion[s].get(t) for s in states] for t in terms]
    trace = {"type": "heatmap", "x": [f"d{s}/dt" for s in states], "y": terms, "z": z, "zmin": 0, "zmax": 1,
             "colorscale": "Blues", "reversescale": True, "texttemplate": "%{z:.2f}", "colorbar": {"title": {"text": "P"}},
             "hovertemplate": "%{y} in %{x}: %{z:.2f}<extra></extra>"}
    layout = _layout("Term inclusion probabilities", "", height=max(300, 28 * len(terms) + 120))
    layout["yaxis"].update(autorange="reversed", automargin=True, type="category")
    return {"data": [trace], "layout": layout}


def pairs_figure(draws: Any, names: Sequence[str]) -> dict[str, Any]:
    """Posterior pair plot: marginal histograms on the diagonal, joint densities of each pair below.

    Like a scatter-plot matrix, the panels of a column share one x axis and those of a row one y
    axis, labelled once on the outer edge; each histogram has its own count axis, unlabelled. The
    joint densities are filled contours of a 2-D histogram of every draw on a :data:`PAIR_BINS`
    squared grid, smoothed by a Gaussian of one bin's width (as corner plots do). Both choices
    are about drawing time in the browser: per-panel axes make the browser measure n(n+1) tick
    sets, and a scatter plot of thinned draws is thousands of SVG nodes that every later text
    measurement lays out again; together they were most of the report's drawing time.
    """
    n = len(names)
    gap, margin = 0.02, 0.05
    layout = _layout(f"Posterior pairs ({len(draws)} draws)", "", height=max(420, 150 * n), showlegend=False,
                     margin={"l": 70, "r": 20, "t": 50, "b": 60})
    del layout["xaxis"], layout["yaxis"]
    columns = {name: np.asarray(draws.column(name), dtype=float) for name in names}
    traces = []
    for i, row in enumerate(names):
        low, high = float(np.min(columns[row])), float(np.max(columns[row]))
        span = [low - margin * (high - low), high + margin * (high - low)] if high > low else None
        domain = [1 - (i + 1) / n + gap, 1 - i / n - gap]
        layout[f"xaxis{i + 1}"] = {"domain": [i / n + gap, (i + 1) / n - gap], "anchor": "free", "position": 0,
                                   "range": span, "tickfont": {"size": 9}, "title": {"text": row}}
        layout[f"yaxis{i + 1}"] = {"domain": domain, "anchor": "free", "position": 0, "range": span,
                                   "tickfont": {"size": 9}, "title": {"text": row}, "visible": i > 0}
        layout[f"yaxis{n + i + 1}"] = {"domain": domain, "anchor": f"x{i + 1}", "showticklabels": False}
        traces.append({"type": "histogram", "x": columns[row], "nbinsx": 30, "xaxis": f"x{i + 1}",
                       "yaxis": f"y{n + i + 1}", "marker": {"color": COLOURS[0]}, "name": row})
        for j, column in enumerate(names[:i]):
            density, x_edges, y_edges = np.histogram2d(columns[column], columns[row], bins=PAIR_BINS)
            density = gaussian_filter(density, 1.0).T
            peak = float(density.max())
            # Fixed levels from zero, so that the area below the lowest level stays transparent.
            traces.append({"type": "contour", "x": (x_edges[1:] + x_edges[:-1]) / 2, "y": (y_edges[1:] + y_edges[:-1]) / 2,
                           "z": density, "zmin": 0, "zmax": peak, "autocontour": False, "showscale": False,
                           "contours": {"coloring": "fill", "showlines": False, "start": peak / PAIR_LEVELS,
                                        "end": peak, "size": peak / PAIR_LEVELS}, "hoverinfo": "skip",
                           "colorscale": [[0, "rgba(255,255,255,0)"], [1, COLOURS[0]]],
                           "xaxis": f"x{j + 1}", "yaxis": f"y{i + 1}", "name": f"{column}, {row}"})
    # Zoom and hover add little to a pair plot and their drag layers cost as much as its axes,
    # so it is drawn static.
    return {"data": traces, "layout": layout, "config": {"staticPlot": True}}


def forecast_figures(forecasts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One figure per scenario: each observable's (or, without observables, each state's) median and bands."""
    figures = []
    for name, scenario in forecasts.get("scenarios", {}).items():
        quantities = scenario.get("observables") or scenario.get("states") or {}
        traces: list[dict[str, Any]] = []
        for j, (quantity, q) in enumerate(quantities.items()):
            edges = {0.9: (q["q05"], q["q95"]), 0.5: (q["q25"], q["q75"])}
            traces += _bands(scenario["times"], edges, None, COLOURS[j % len(COLOURS)], quantity)
            traces.append({"type": "scatter", "mode": "lines", "x": scenario["times"], "y": q["median"],
                           "line": {"color": COLOURS[j % len(COLOURS)], "width": 2}, "legendgroup": quantity,
                           "name": f"{quantity} median"})
        failed = scenario.get("failed", 0)
        note = f"{scenario.get('samples', '?')} samples" + (f", {failed} failed" if failed else "")
        figures.append({"data": traces, "layout": _layout(f"{name} ({note})", "time")})
    return figures


def parameter_table(results: TwinResults) -> str:
    """Per parameter: the best estimate, the profile-likelihood interval and verdict, the posterior median and interval."""
    estimates = results.estimated
    profiles = (results.profiles or {}).get("parameters", {})
    summary = {row["name"]: row for row in (results.posterior_summary or {}).get("summary", [])}
    names = list(dict.fromkeys([*estimates, *profiles, *summary]))
    header = ["parameter", "estimate" if results.fit is not None else "model value"]
    if profiles:
        header += [f"{100 * results.profiles['confidence']:g} % profile interval", "identifiability"]
    if summary:
        header += ["posterior median", "90 % credible interval", "R-hat", "bulk ESS"]

    def interval(low: Any, high: Any) -> str:
        def end(value: Any) -> str:
            return "open" if value is None or not math.isfinite(value) else f"{value:.4g}"
        return f"[{end(low)}, {end(high)}]"

    rows = []
    for name in names:
        row: list[object] = [name, estimates.get(name)]
        if profiles:
            p = profiles.get(name)
            row += [interval(*p["interval"]), p["verdict"]] if p else [None, "not profiled"]
        if summary:
            s = summary.get(name)
            row += [s["median"], interval(s["lower"], s["upper"]), s["rhat"], s["ess_bulk"]] if s else [None] * 4
        rows.append(row)
    return html_table(header, rows)


def _missing(key: str) -> str:
    return f"run <code>{PRODUCED_BY[key]}</code>"


def write_report(folder: str | Path, output: str | Path | None = None, *, draws: int = BAND_DRAWS, seed: int = 0) -> Path:
    """Write the HTML report of the twin in ``folder`` to ``output`` (default ``folder/report.html``).

    ``draws`` posterior draws are simulated for the predictive bands; ``seed`` fixes which. The
    file is self-contained (plotly.js inlined, MathML equations) and written atomically.
    """
    import jinja2
    from markupsafe import Markup

    from biotwin import __version__
    from biotwin.io.files import atomic_write_text

    results = read_results(folder)
    output = Path(output) if output is not None else Path(folder) / "report.html"
    twin, missing = results.twin, results.missing()
    curves = trajectories(results, grid=GRID, draws=draws, seed=seed)
    banded = [c for c in curves.values() if c.quantiles is not None]
    figures: dict[str, list[dict[str, Any]]] = {"fits": fit_figures(results, curves)}
    discovery = twin.discovery or {}
    if discovery.get("hybrid"):
        figures["discovery"] = hybrid_figures(discovery["hybrid"], twin.dataset.time_unit)
    elif discovery.get("pareto"):
        figures["discovery"] = [pareto_figure(discovery)]
        if discovery.get("inclusion"):
            figures["discovery"].append(inclusion_figure(discovery["inclusion"]))
    posterior_names: list[str] = []
    if results.posterior is not None:
        posterior_names = list(results.posterior.names)
        figures["posterior"] = [pairs_figure(results.draws(HISTOGRAM_DRAWS, seed), posterior_names[:MAX_PAIRS])]
    if results.forecasts is not None:
        figures["forecasts"] = forecast_figures(results.forecasts)
    plots = []
    for section, items in figures.items():
        for k, figure in enumerate(items):
            plots.append({"id": f"plot-{section}-{k}", "section": section, **figure})
    payload = json.dumps(compact(plots), separators=(",", ":"), allow_nan=False).replace("</", "<\\/")

    environment = jinja2.Environment(loader=jinja2.PackageLoader("biotwin.report", "templates"), autoescape=True,
                                     trim_blocks=True, lstrip_blocks=True)
    observables = [o for o in twin.model.observables if str(o.expr) != o.name]
    text = environment.get_template("report.html.j2").render(
        name=results.name, version=__version__, twin=twin, dataset=twin.dataset, fit=results.fit,
        plots={section: [p["id"] for p in plots if p["section"] == section] for section in figures},
        equations=Markup(twin.model.to_mathml()), observables=observables,
        discovery=discovery, parameters=Markup(parameter_table(results)),
        posterior=results.posterior_summary if results.posterior is not None else None,
        pair_note=len(posterior_names) > MAX_PAIRS, max_pairs=MAX_PAIRS,
        band_draws=min((c.draws for c in banded), default=0), noisy=all(c.noisy for c in banded), forecasts=results.forecasts,
        missing={key: Markup(_missing(key)) for key in missing},
        plotly=Markup(PLOTLY_JS.read_text(encoding="utf-8")), figures=Markup(payload),
    )
    atomic_write_text(output, text)
    return output

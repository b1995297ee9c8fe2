"""Benchmark :func:`biotwin.experiment.forecast` over posterior draws against a plain scipy loop, in one process.

The issue's target: *1,000 posterior samples x 1 scenario x 200 output times in under 1 s after
compilation on this machine*, against ``scipy.integrate.solve_ivp`` in a Python loop over the
same samples. The time measured is the user's whole forecast: the batched solve **and** the
summary bands (median and the 5/25/75/95% quantiles of every state and observable).

Two models, each with one scenario:

1. **Lotka-Volterra** - ``examples/models/lotka_volterra_lynx_hare.txt`` (lynx and hare, the
   posterior means of Carpenter 2018), no doses; output times evenly spaced on [0, 30] years;
2. **PK/PD tumour** - a one-compartment drug with first-order elimination and a logistic tumour
   killed by the drug (the model text is inline below)::

       dC/dt = -ke*C
       dT/dt = g*T*(1 - T/K) - kill*C*T

   with a bolus of ``DOSE_AMOUNT`` into C every 7 days from day 0, 4 doses; output times evenly
   spaced on [0, 42] days. The doses cut the solve into segments (state jumps between them), so
   biotwin's segment handling is part of what is timed.

Draws: ``--draws`` parameter sets (default 1000) drawn with ``numpy.random.default_rng(0)``,
log-normal with a 10% scale around the model's parameter values (every parameter of the model),
passed as :class:`biotwin.experiment.ParameterDraws`. The scenario names ``--times`` output
times (default 200) explicitly.

Contenders, all at rtol = 1e-6, atol = 1e-9 (biotwin's ``forecast`` defaults):

* **biotwin forecast()** - ``forecast(model, scenario, draws)`` (one batched, compiled solve with
  the automatic method choice) then ``Forecast.bands(q)`` for every quantity. The first call
  (tracing and XLA compilation included) is timed on its own; the reported time is the median
  of ``--repeats`` calls after it (default 5); *compile* = first call - that median;
* **scipy RK45** and **scipy LSODA** - ``solve_ivp`` with a plain-Python right-hand side in a
  Python loop over the same parameter sets: integrated segment by segment between dose times,
  the bolus added to the state between segments, ``t_eval`` = the output times of each segment
  (an output at a dose time sees the dose, as in biotwin); then the same quantiles with
  ``numpy.quantile``. Each scipy loop is run ``--scipy-repeats`` times (default 3: one loop is
  several seconds on a small machine) and the median reported; it compiles nothing.

Agreement: the max relative difference, over output times and quantities, between biotwin's
median trajectories and each scipy contender's (should be about 1e-5 or better at these
tolerances; a median over 1,000 draws inherits the per-draw solver error).

Columns: seconds after compilation, compile seconds, draws per second, the ratio of the
contender's time to biotwin's, and the agreement. Below the table, one line per model says
whether the "< 1 s after compilation" target is met.

Run it from the repository root::

    .venv/bin/python benchmarks/forecast_vs_scipy.py
    .venv/bin/python benchmarks/forecast_vs_scipy.py --draws 1000 --times 200 --repeats 5

Timings are wall-clock and depend on the machine and on whatever else runs on it; the
machine information (including the load average) is printed first.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from machine import (
    fmt_time,
    max_relative_error,
    print_machine,
    require_at_least_one,
    wide_console,
)
from scipy.integrate import solve_ivp

ROOT = Path(__file__).resolve().parent.parent
LV_MODEL_FILE = ROOT / "examples" / "models" / "lotka_volterra_lynx_hare.txt"
LV_HORIZON = 30.0

PKPD_MODEL_TEXT = """\
# One-compartment drug (first-order elimination) and a logistic tumour killed by the drug.
dC/dt = -ke*C                            # drug concentration
dT/dt = g*T*(1 - T/K) - kill*C*T         # tumour size
ke in [0, 5] = 0.3
g in [0, 2] = 0.2
K in [1, 1000] = 100
kill in [0, 1] = 0.05
C(0) = 0
T(0) = 10
"""
DOSE_STATE, DOSE_AMOUNT, DOSE_EVERY, DOSE_COUNT = "C", 10.0, 7.0, 4
PKPD_HORIZON = 42.0

RTOL, ATOL = 1e-6, 1e-9
DRAW_SEED = 0
DRAW_SCALE = 0.10
SCIPY_METHODS = ("RK45", "LSODA")
TARGET_SECONDS = 1.0
AGREEMENT_GOAL = 1e-5


# ---------------------------------------------------------------------------------------------
# Right-hand sides for scipy, as plain Python on floats (the fastest form for solve_ivp)


def lotka_volterra_rhs(t: float, state: np.ndarray, alpha: float, beta: float, gamma: float,
                       delta: float) -> list[float]:
    hare, lynx = state
    return [alpha * hare - beta * hare * lynx, -gamma * lynx + delta * hare * lynx]


def pkpd_rhs(t: float, state: np.ndarray, ke: float, g: float, K: float, kill: float) -> list[float]:
    C, T = state
    return [-ke * C, g * T * (1.0 - T / K) - kill * C * T]


@dataclass(frozen=True)
class Problem:
    """One benchmark case: a model, its scenario, the scipy right-hand side and the draws."""

    label: str
    model: Any
    scenario: Any
    rhs: Callable[..., list[float]]
    #: The right-hand side's parameter order (checked against the model's).
    rhs_parameters: tuple[str, ...]
    draws: Any
    y0: np.ndarray


@dataclass(frozen=True)
class Result:
    """Timings (seconds) and the median trajectories of one contender on one problem."""

    steady: float
    compile: float | None
    medians: dict[str, np.ndarray]
    n_failed: int = 0


def log_normal_draws(model: Any, count: int, seed: int) -> Any:
    """``count`` parameter sets, log-normal with scale ``DRAW_SCALE`` around the model's values."""
    from biotwin.experiment import ParameterDraws

    names = model.parameter_names
    centre = model.parameter_vector()
    rng = np.random.default_rng(seed)
    values = centre * np.exp(DRAW_SCALE * rng.standard_normal((count, len(names))))
    return ParameterDraws(names, values)


def initial_state(model: Any) -> np.ndarray:
    """The model's initial state (constant expressions here), as floats."""
    values = {p.name: p.value for p in model.parameters}
    return np.array([float(model.initial[s].subs(values)) for s in model.states])


# ---------------------------------------------------------------------------------------------
# The scipy contender


def scipy_segments(scenario: Any, state_names: Sequence[str]) -> tuple[list[float], np.ndarray]:
    """Segment limits (start, dose times, horizon) and the jump added at the start of each segment."""
    boluses = scenario.boluses()
    boundaries = sorted({scenario.start, scenario.horizon, *(b.time for b in boluses)})
    if any(b.time == scenario.horizon for b in boluses):
        boundaries.append(scenario.horizon)  # a zero-length last segment: the last output sees the dose
    jumps = np.zeros((len(boundaries) - 1, len(state_names)))
    for bolus in boluses:
        jumps[boundaries.index(bolus.time), list(state_names).index(bolus.state)] += bolus.amount
    return boundaries, jumps


def scipy_trajectory(rhs: Callable[..., list[float]], theta: tuple[float, ...], y0: np.ndarray,
                     times: np.ndarray, boundaries: Sequence[float], jumps: np.ndarray, method: str) -> np.ndarray:
    """(T, n): one parameter set, solved segment by segment with the boluses added between segments."""
    out = np.empty((times.size, y0.size))
    y = np.array(y0, dtype=float)
    last = len(boundaries) - 2
    for k in range(last + 1):
        a, b = boundaries[k], boundaries[k + 1]
        y = y + jumps[k]
        # Outputs in [a, b) belong to this segment (an output at a dose time sees the dose), [a, b] in the last.
        inside = np.flatnonzero((times >= a) & ((times <= b) if k == last else (times < b)))
        if b <= a:
            out[inside] = y
            continue
        t_eval = np.append(times[inside], b) if not inside.size or times[inside[-1]] < b else times[inside]
        solution = solve_ivp(rhs, (a, b), y, method=method, t_eval=t_eval, rtol=RTOL, atol=ATOL, args=theta)
        if not solution.success:
            raise RuntimeError(f"scipy {method} failed: {solution.message}")
        out[inside] = solution.y.T[: inside.size]
        y = solution.y[:, -1]
    return out


def scipy_forecast(problem: Problem, times: np.ndarray, method: str) -> dict[str, np.ndarray]:
    """The scipy loop over all draws, then the same quantiles as ``Forecast.bands`` for every state."""
    from biotwin.experiment import QUANTILES

    boundaries, jumps = scipy_segments(problem.scenario, problem.model.states)
    thetas = problem.draws.thetas(problem.model)
    states = np.stack([
        scipy_trajectory(problem.rhs, tuple(map(float, theta)), problem.y0, times, boundaries, jumps, method)
        for theta in thetas
    ])
    bands = {}
    for k, name in enumerate(problem.model.states):
        bands[name] = {key: np.quantile(states[..., k], q, axis=0) for key, q in QUANTILES.items()}
    return {name: band["median"] for name, band in bands.items()}


# ---------------------------------------------------------------------------------------------


def max_relative_difference(values: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
    """max |values - reference| / |reference| over every quantity and output time."""
    return max(max_relative_error(values[name], ref) for name, ref in reference.items())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--draws", type=int, default=1000, help="posterior parameter sets per forecast")
    parser.add_argument("--times", type=int, default=200, help="output times of the scenario")
    parser.add_argument("--repeats", type=int, default=5, help="timed biotwin calls after the first (median reported)")
    parser.add_argument("--scipy-repeats", type=int, default=3, help="timed scipy loops per method (median reported)")
    args = parser.parse_args(argv)
    require_at_least_one(parser, args, ("draws", "repeats", "scipy_repeats"))
    if args.times < 2:
        parser.error("--times must be at least 2")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    import jax
    import jax.numpy as jnp
    from rich.table import Table

    from biotwin.experiment import Dosing, Scenario, forecast
    from biotwin.model import Model

    console = wide_console(150)

    print_machine(console, ("diffrax", "scipy", "numpy"))

    # ------------------------------------------------------------------ problems
    lv = Model.from_file(str(LV_MODEL_FILE))
    pkpd = Model.from_text(PKPD_MODEL_TEXT, name="pkpd-tumour")
    lv_times = np.linspace(0.0, LV_HORIZON, args.times)
    pkpd_times = np.linspace(0.0, PKPD_HORIZON, args.times)
    problems = [
        Problem(
            "Lotka-Volterra (lynx-hare)", lv,
            Scenario("lynx-hare", horizon=LV_HORIZON, times=tuple(lv_times)),
            lotka_volterra_rhs, ("alpha", "beta", "gamma", "delta"),
            log_normal_draws(lv, args.draws, DRAW_SEED), initial_state(lv),
        ),
        Problem(
            f"PK/PD tumour ({DOSE_COUNT} doses)", pkpd,
            Scenario("weekly", horizon=PKPD_HORIZON, times=tuple(pkpd_times),
                     doses=(Dosing(DOSE_STATE, DOSE_AMOUNT, 0.0, DOSE_EVERY, DOSE_COUNT),)),
            pkpd_rhs, ("ke", "g", "K", "kill"),
            log_normal_draws(pkpd, args.draws, DRAW_SEED), initial_state(pkpd),
        ),
    ]
    for problem in problems:
        if problem.model.parameter_names != problem.rhs_parameters:
            raise RuntimeError(f"{problem.label}: model parameters {problem.model.parameter_names} "
                               f"!= scipy right-hand side's {problem.rhs_parameters}")

    # Start the JAX runtime outside the timed calls (a one-off cost of the process, not of a forecast).
    jax.block_until_ready(jnp.zeros(2) + 1.0)

    results: dict[tuple[str, str], Result] = {}
    for problem in problems:
        times = problem.scenario.output_times()

        def biotwin_call(problem: Problem = problem) -> tuple[Any, dict[str, dict[str, np.ndarray]]]:
            result = forecast(problem.model, problem.scenario, problem.draws)
            return result, {q: result.bands(q) for q in result.quantities}

        console.print(f"[bold]{problem.label}[/]: biotwin first call (compiles here) ...")
        start = time.perf_counter()
        first_forecast, _ = biotwin_call()
        first = time.perf_counter() - start
        console.print(f"  first call {fmt_time(first)}; {args.repeats} more calls ...")
        walls = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            _, bands = biotwin_call()
            walls.append(time.perf_counter() - start)
        steady = statistics.median(walls)
        results[problem.label, "biotwin forecast()"] = Result(
            steady, first - steady, {name: bands[name]["median"] for name in problem.model.states},
            first_forecast.n_failed)
        console.print(f"  median {fmt_time(steady)} (all: {', '.join(fmt_time(w) for w in walls)})")

        for method in SCIPY_METHODS:
            console.print(f"  scipy {method}: {args.scipy_repeats} loop(s) over {args.draws} draws ...")
            walls, medians = [], {}
            for _ in range(args.scipy_repeats):
                start = time.perf_counter()
                medians = scipy_forecast(problem, times, method)
                walls.append(time.perf_counter() - start)
            results[problem.label, f"scipy {method}"] = Result(statistics.median(walls), None, medians)
            console.print(f"    median {fmt_time(statistics.median(walls))}")

    # ------------------------------------------------------------------ table
    contenders = ("biotwin forecast()", *(f"scipy {m}" for m in SCIPY_METHODS))
    table = Table(title=f"Forecast: {args.draws} draws x 1 scenario x {args.times} output times, "
                        f"rtol={RTOL:g}, atol={ATOL:g} (bands of every state included)")
    for column, justify in (("model", "left"), ("contender", "left"), ("seconds (after compile)", "right"),
                            ("compile seconds", "right"), ("draws/s", "right"), ("ratio vs biotwin", "right"),
                            ("median: max rel. diff vs biotwin", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    verdicts = []
    for problem in problems:
        reference = results[problem.label, "biotwin forecast()"]
        for name in contenders:
            result = results[problem.label, name]
            is_biotwin = name.startswith("biotwin")
            table.add_row(
                problem.label if is_biotwin else "", name, fmt_time(result.steady),
                fmt_time(result.compile) if result.compile is not None else "-",
                f"{args.draws / result.steady:,.0f}", f"{result.steady / reference.steady:,.1f}x",
                "-" if is_biotwin else f"{max_relative_difference(result.medians, reference.medians):.1e}",
            )
        table.add_section()
        passed = reference.steady < TARGET_SECONDS
        verdicts.append((problem.label, reference.steady, passed, reference.n_failed))
    console.print(table)

    for label, seconds, passed, n_failed in verdicts:
        verdict = "[bold green]MET[/]" if passed else "[bold red]NOT MET[/]"
        console.print(f"Target < {TARGET_SECONDS:g} s after compilation, {label}: {verdict} "
                      f"(biotwin {fmt_time(seconds)}; {n_failed} of {args.draws} draws failed)")

    notes = [
        (f"biotwin: forecast(model, scenario, draws) + Forecast.bands(q) for every quantity; seconds = median of "
         f"{args.repeats} calls after the first; compile = first call - that median (the JAX runtime is started "
         "before the first call)."),
        (f"scipy: solve_ivp in a Python loop over the same draws, segment by segment between doses, t_eval = the "
         f"output times, then numpy.quantile; median of {args.scipy_repeats} loop(s); no compilation."),
        "ratio vs biotwin = contender seconds / biotwin seconds (both after compilation).",
        (f"Lotka-Volterra: {LV_MODEL_FILE.relative_to(ROOT)}, output times on [0, {LV_HORIZON:g}]; PK/PD tumour: "
         f"inline model, {DOSE_AMOUNT:g} into {DOSE_STATE} every {DOSE_EVERY:g} from t=0, {DOSE_COUNT} doses, output "
         f"times on [0, {PKPD_HORIZON:g}]."),
        (f"median: max rel. diff = max over output times and states of |scipy median - biotwin median| / "
         f"|biotwin median| (goal: about {AGREEMENT_GOAL:g} or better)."),
        (f"Draws: numpy.random.default_rng({DRAW_SEED}), log-normal, scale {DRAW_SCALE:g}, around the model's "
         "parameter values."),
    ]
    console.print("[bold]Notes[/]")
    for note in notes:
        console.print(f"  - {note}")

    print("SUMMARY " + " | ".join(
        f"{label}: biotwin {fmt_time(seconds)} ({'MET' if passed else 'NOT MET'} < {TARGET_SECONDS:g} s), "
        f"scipy RK45 {fmt_time(results[label, 'scipy RK45'].steady)}, "
        f"LSODA {fmt_time(results[label, 'scipy LSODA'].steady)}"
        for label, seconds, passed, _ in verdicts
    ))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

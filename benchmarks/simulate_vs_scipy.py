"""Benchmark biotwin's ODE engine against ``scipy.integrate.solve_ivp``, in one process.

Problem (Lotka-Volterra, from the performance issue)::

    dx/dt = a*x - b*x*y,    dy/dt = -c*y + d*x*y
    a=1, b=0.1, c=1.5, d=0.075,  x0=10, y0=5,  200 output times evenly spaced in [0, 20]

Two cases are measured:

1. **single** - one solve from (x0, y0);
2. **batch** - 1000 initial states drawn with ``numpy.random.default_rng(0)``, uniform in
   [5, 15] x [2.5, 7.5], all with the parameters above.

Contenders, all at the same ``rtol``/``atol`` (default 1e-8 / 1e-10) and the same output times:

* **biotwin compiled** - the jitted solve of :class:`biotwin.simulate.Simulator` (the explicit solver ``simulate`` picks),
  ``simulator(model, explicit_method(rtol), rtol, atol).batched(...)`` (the explicit solver that
  ``simulate(method="auto")`` picks: Tsit5, or Dopri8 below rtol 1e-7), called on JAX arrays; the batch is
  one ``jax.vmap``-ed call over the initial states;
* **biotwin simulate()** - the high-level :func:`biotwin.simulate.simulate` call on NumPy
  arrays (input validation, plan building, the automatic stiffness check and solver choice,
  conversions to and from JAX, the status check). It is run on a *separate* model instance
  so its first call shows the cold-start cost a user pays (nothing shared with the compiled
  rows' caches);
* **scipy RK45** and **scipy LSODA** - ``solve_ivp`` with ``t_eval`` = the output times and a
  plain-Python right-hand side; the batch is a Python loop over initial states. To keep the
  run short the scipy batch is timed on the first ``--scipy-subset`` members (default 100)
  and extrapolated linearly to the full batch (scipy solves are independent, so the cost is
  linear in the number of solves).

What is reported:

* *first call*: wall time of the first call (for biotwin this includes tracing + XLA
  compilation); *compile* = first call - steady-state median;
* *steady*: median wall time over ``--repeats`` calls (single, default 200) or
  ``--batch-repeats`` calls (batch, default 10) after the first, with
  ``jax.block_until_ready`` on biotwin's outputs; *best* is the minimum of the same calls
  (less sensitive to other work on a busy machine). The contenders are timed in interleaved
  rounds (each runs a block of back-to-back calls per round, in a rotating order; 40 rounds
  for the single solve, one call per round for the batch), so a burst of other work on the
  machine slows all of them alike rather than whichever was being timed;
* *accuracy*: the max relative error of the single-solve trajectory of every contender
  against a reference by scipy DOP853 at rtol = atol = 1e-13; and, for a few batch members,
  the max relative difference between biotwin's batched result and scipy RK45 (and the
  DOP853 reference) for that member;
* *speed-ups*: scipy time / biotwin time. The issue's targets are: one compiled solve at
  least 30x faster than scipy RK45, and the batch at least 100x faster. They are checked
  against the compiled biotwin rows (ratio of medians) and printed as PASS/FAIL; the ratio of
  best times is printed beside it to show how close to the noise the verdict is.

Run it from the repository root (``make bench`` does the same)::

    .venv/bin/python benchmarks/simulate_vs_scipy.py
    .venv/bin/python benchmarks/simulate_vs_scipy.py --rtol 1e-6 --atol 1e-9 --repeats 100

Timings are wall-clock and depend on the machine and on whatever else runs on it; the
machine information (including the load average) is printed first.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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

MODEL_TEXT = "dx/dt = a*x - b*x*y\ndy/dt = -c*y + d*x*y"
PARAMETERS = {"a": 1.0, "b": 0.1, "c": 1.5, "d": 0.075}
INITIAL_STATE = (10.0, 5.0)
T_START, T_END, N_TIMES = 0.0, 20.0, 200
BATCH_SIZE = 1000
BATCH_SEED = 0
BATCH_LOW, BATCH_HIGH = (5.0, 2.5), (15.0, 7.5)
REFERENCE_METHOD, REFERENCE_TOL = "DOP853", 1e-13
SCIPY_METHODS = ("RK45", "LSODA")
TARGET_SINGLE, TARGET_BATCH = 30.0, 100.0
#: The single-solve timings are taken in this many interleaved rounds of back-to-back calls.
SINGLE_ROUNDS = 40
#: Batch members whose biotwin trajectories are checked against scipy one by one.
CHECKED_MEMBERS = (0, 1, 42, 99, 500, 999)


@dataclass(frozen=True)
class Timing:
    """Wall times of one contender on one case, in seconds."""

    first: float
    steady: float
    best: float
    n_repeats: int
    #: Number of trajectories one timed call produces (1 or the batch size).
    n_trajectories: int
    #: When timed on a subset and extrapolated: the subset size.
    timed_on: int | None = None

    @property
    def compile(self) -> float:
        return self.first - self.steady

    @property
    def per_trajectory(self) -> float:
        return self.steady / self.n_trajectories


def time_first(call: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time and result of one call (for biotwin's first call: tracing and compilation included)."""
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def time_interleaved(calls: Mapping[str, Callable[[], Any]], repeats: int, rounds: int) -> dict[str, list[float]]:
    """``repeats`` wall times of every call, taken in ``rounds`` interleaved rounds.

    In each round every contender runs a block of back-to-back calls (about repeats / rounds),
    the contenders in an order rotated each round. Interleaving makes a burst of other work on
    the machine slow all contenders alike instead of whichever happened to be timed at that
    moment; the back-to-back blocks keep the numbers steady-state (a JAX call made right after
    milliseconds of other Python work is measurably slower than one made back-to-back, as the
    runtime's threads and caches have gone cold).
    """
    names = list(calls)
    rounds = max(1, min(rounds, repeats))
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        block = repeats * (round_ + 1) // rounds - repeats * round_ // rounds
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            call = calls[name]
            for _ in range(block):
                start = time.perf_counter()
                call()
                samples[name].append(time.perf_counter() - start)
    return samples


def lotka_volterra(t: float, state: np.ndarray, a: float, b: float, c: float, d: float) -> list[float]:
    """The right-hand side for scipy, as plain Python on floats (the fastest form for solve_ivp)."""
    x, y = state
    return [a * x - b * x * y, -c * y + d * x * y]


def scipy_solve(y0: Sequence[float], times: np.ndarray, method: str, rtol: float, atol: float) -> np.ndarray:
    """One scipy solve; states at ``times`` as (T, 2)."""
    solution = solve_ivp(
        lotka_volterra, (float(times[0]), float(times[-1])), np.asarray(y0, dtype=float), method=method,
        t_eval=times, rtol=rtol, atol=atol, args=tuple(PARAMETERS.values()),
    )
    if not solution.success:
        raise RuntimeError(f"scipy {method} failed: {solution.message}")
    return solution.y.T


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:,.1f}x"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rtol", type=float, default=1e-8, help="relative tolerance for every contender")
    parser.add_argument("--atol", type=float, default=1e-10, help="absolute tolerance for every contender")
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per single solve (median reported)")
    parser.add_argument("--batch-repeats", type=int, default=10, help="timed calls per batch (median reported)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="initial states in the batch")
    parser.add_argument("--scipy-subset", type=int, default=100,
                        help="batch members scipy is timed on; its batch time is extrapolated linearly")
    args = parser.parse_args(argv)
    require_at_least_one(parser, args, ("repeats", "batch_repeats", "batch_size", "scipy_subset"))
    args.scipy_subset = min(args.scipy_subset, args.batch_size)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    import jax
    import jax.numpy as jnp
    from rich.table import Table

    from biotwin.model import Model
    from biotwin.simulate import (
        OK,
        Plan,
        explicit_method,
        make_plan,
        simulate,
        simulator,
    )

    console = wide_console(150)
    rtol, atol = args.rtol, args.atol

    print_machine(console, ("diffrax", "scipy", "numpy"))

    # ------------------------------------------------------------------ problem
    model = Model.from_text(MODEL_TEXT, name="lotka-volterra")
    # A second, identical model for the high-level rows: its caches start cold.
    model_hl = Model.from_text(MODEL_TEXT, name="lotka-volterra")
    if model.parameter_names != tuple(PARAMETERS) or model.states != ("x", "y"):
        raise RuntimeError(f"unexpected model layout: {model!r}")
    times = np.linspace(T_START, T_END, N_TIMES)
    theta_np = np.array(list(PARAMETERS.values()))
    y0_np = np.array(INITIAL_STATE)
    batch_np = np.random.default_rng(BATCH_SEED).uniform(BATCH_LOW, BATCH_HIGH, size=(args.batch_size, 2))
    subset = batch_np[: args.scipy_subset]

    console.print(f"[bold]Reference[/]: scipy {REFERENCE_METHOD} at rtol = atol = {REFERENCE_TOL:g} ...")
    reference = scipy_solve(y0_np, times, REFERENCE_METHOD, REFERENCE_TOL, REFERENCE_TOL)

    # ------------------------------------------------------------------ set-up
    sim = simulator(model, explicit_method(rtol), rtol, atol)  # the solver simulate() chooses; imports JAX (float64)
    plan = Plan(*(jnp.asarray(field) for field in make_plan(model, times)))
    theta = jnp.asarray(theta_np)
    y0 = jnp.asarray(y0_np)
    batch = jnp.asarray(batch_np)
    if theta.dtype != jnp.float64:
        raise RuntimeError("JAX is not in float64 mode; biotwin should have switched it on")
    # Start the JAX runtime outside the timed calls (a one-off cost of the process, not of a solve).
    jax.block_until_ready(jnp.zeros(2) + 1.0)
    solve_one = sim.batched(None, None, None)
    solve_batch = sim.batched(None, 0, None)

    def scipy_loop(method: str) -> list[np.ndarray]:
        return [scipy_solve(member, times, method, rtol, atol) for member in subset]

    single_calls: dict[str, Callable[[], Any]] = {
        "biotwin compiled": lambda: jax.block_until_ready(solve_one(theta, y0, plan)),
        "biotwin simulate()": lambda: simulate(model_hl, theta_np, y0_np, times, rtol=rtol, atol=atol),
        **{f"scipy {m}": functools.partial(scipy_solve, y0_np, times, m, rtol, atol) for m in SCIPY_METHODS},
    }
    batch_calls: dict[str, Callable[[], Any]] = {
        "biotwin compiled": lambda: jax.block_until_ready(solve_batch(theta, batch, plan)),
        "biotwin simulate()": lambda: simulate(model_hl, theta_np, batch_np, times, rtol=rtol, atol=atol),
        **{f"scipy {m}": functools.partial(scipy_loop, m) for m in SCIPY_METHODS},
    }

    # ------------------------------------------------------------------ first calls (compilation)
    console.print("[bold]First calls[/] (biotwin compiles here) ...")
    firsts: dict[tuple[str, str], float] = {}
    results: dict[tuple[str, str], Any] = {}
    for case, calls in (("single", single_calls), ("batch", batch_calls)):
        for name, call in calls.items():
            firsts[case, name], results[case, name] = time_first(call)

    # ------------------------------------------------------------------ steady state, interleaved
    timings: dict[tuple[str, str], Timing] = {}
    scale = args.batch_size / args.scipy_subset
    for case, calls, repeats, rounds in (("single", single_calls, args.repeats, SINGLE_ROUNDS),
                                         ("batch", batch_calls, args.batch_repeats, args.batch_repeats)):
        console.print(f"[bold]Timing {case}[/]: {repeats} calls each of {', '.join(calls)}, "
                      f"in {min(rounds, repeats)} interleaved rounds ...")
        samples = time_interleaved(calls, repeats, rounds)
        for name, wall in samples.items():
            extrapolate = case == "batch" and name.startswith("scipy") and args.scipy_subset < args.batch_size
            factor = scale if extrapolate else 1.0
            timings[case, name] = Timing(
                firsts[case, name] * factor, statistics.median(wall) * factor, min(wall) * factor, repeats,
                args.batch_size if case == "batch" else 1, timed_on=args.scipy_subset if extrapolate else None,
            )

    # ------------------------------------------------------------------ single-solve accuracy
    single_status = int(results["single", "biotwin compiled"][2])
    if single_status != OK:
        raise RuntimeError(f"biotwin single solve failed with status {single_status}")
    errors: dict[str, float] = {
        "biotwin compiled": max_relative_error(results["single", "biotwin compiled"][0], reference),
        "biotwin simulate()": max_relative_error(results["single", "biotwin simulate()"].states, reference),
        **{f"scipy {m}": max_relative_error(results["single", f"scipy {m}"], reference) for m in SCIPY_METHODS},
    }
    batch_states = np.asarray(results["batch", "biotwin compiled"][0])
    batch_failures = int(np.sum(np.asarray(results["batch", "biotwin compiled"][2]) != OK))
    hl_vs_compiled = float(np.max(np.abs(results["batch", "biotwin simulate()"].states - batch_states)))
    scipy_members = {i: results["batch", "scipy RK45"][i] for i in CHECKED_MEMBERS if i < args.scipy_subset}

    # ------------------------------------------------------------------ batch accuracy spot-check
    checked = [i for i in CHECKED_MEMBERS if i < args.batch_size]
    member_rows = []
    for i in checked:
        rk45 = scipy_members[i] if i in scipy_members else scipy_solve(batch_np[i], times, "RK45", rtol, atol)
        ref = scipy_solve(batch_np[i], times, REFERENCE_METHOD, REFERENCE_TOL, REFERENCE_TOL)
        member_rows.append((i, batch_np[i], max_relative_error(batch_states[i], rk45),
                            max_relative_error(batch_states[i], ref), max_relative_error(rk45, ref)))

    # ------------------------------------------------------------------ tables
    contenders = ("biotwin compiled", "biotwin simulate()", *(f"scipy {m}" for m in SCIPY_METHODS))
    table = Table(title=f"Lotka-Volterra, {N_TIMES} output times on [{T_START:g}, {T_END:g}], "
                        f"rtol={rtol:g}, atol={atol:g}")
    for column, justify in (("case", "left"), ("contender", "left"), ("first call", "right"),
                            ("compile (first - steady)", "right"), ("steady (median)", "right"),
                            ("best", "right"), ("per trajectory", "right"), ("repeats", "right"),
                            ("max rel. error vs DOP853 ref (single)", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for case, label in (("single", "single (1 solve)"), ("batch", f"batch ({args.batch_size} y0)")):
        for name in contenders:
            timing = timings[case, name]
            is_biotwin = name.startswith("biotwin")
            mark = " (*)" if timing.timed_on else ""
            table.add_row(
                label, name + mark, fmt_time(timing.first),
                fmt_time(timing.compile) if is_biotwin else "-",
                fmt_time(timing.steady), fmt_time(timing.best), fmt_time(timing.per_trajectory), str(timing.n_repeats),
                f"{errors[name]:.2e}" if case == "single" else "-",
            )
        table.add_section()
    console.print(table)

    def ratio(case: str, scipy_name: str, biotwin_name: str, best: bool = False) -> float:
        scipy_timing, biotwin_timing = timings[case, scipy_name], timings[case, biotwin_name]
        if best:
            return scipy_timing.best / biotwin_timing.best
        return scipy_timing.steady / biotwin_timing.steady

    speed = Table(title="Speed-up = scipy time / biotwin time (steady-state medians)")
    for column in ("case", "scipy", "vs biotwin compiled", "vs biotwin compiled (best/best)",
                   "vs biotwin simulate()", "target (compiled vs RK45)", "verdict (medians)"):
        speed.add_column(column, justify="left" if column in ("case", "scipy") else "right")
    verdicts: dict[str, tuple[float, bool, bool]] = {}
    for case, target in (("single", TARGET_SINGLE), ("batch", TARGET_BATCH)):
        for method in SCIPY_METHODS:
            compiled_ratio = ratio(case, f"scipy {method}", "biotwin compiled")
            hl_ratio = ratio(case, f"scipy {method}", "biotwin simulate()")
            target_cell, verdict_cell = "-", "-"
            best_ratio = ratio(case, f"scipy {method}", "biotwin compiled", best=True)
            if method == "RK45":
                passed = compiled_ratio >= target
                noisy = (best_ratio >= target) != passed
                verdicts[case] = (compiled_ratio, passed, noisy)
                target_cell = f">= {target:g}x"
                verdict_cell = "[bold green]PASS[/]" if passed else "[bold red]FAIL[/]"
                if noisy:
                    verdict_cell += " [yellow](best/best disagrees: within noise)[/]"
            speed.add_row(case, method, fmt_ratio(compiled_ratio), fmt_ratio(best_ratio),
                          fmt_ratio(hl_ratio), target_cell, verdict_cell)
    console.print(speed)

    spot = Table(title=f"Batch spot-check: biotwin batched trajectories vs scipy (member-wise, rtol={rtol:g})")
    for column in ("member", "(x0, y0)", "biotwin vs scipy RK45", "biotwin vs DOP853 ref", "scipy RK45 vs DOP853 ref"):
        spot.add_column(column, justify="right")
    for i, start, vs_rk45, vs_ref, rk45_vs_ref in member_rows:
        spot.add_row(str(i), f"({start[0]:.3f}, {start[1]:.3f})", f"{vs_rk45:.2e}", f"{vs_ref:.2e}",
                     f"{rk45_vs_ref:.2e}")
    console.print(spot)

    notes = [
        f"Steady = median, best = minimum of {args.repeats} calls (single) / {args.batch_repeats} calls (batch) "
        f"after the first call, taken in {min(SINGLE_ROUNDS, args.repeats)} / {args.batch_repeats} interleaved "
        "rounds (each contender runs a block of back-to-back calls per round, in a rotating order) so load from "
        "other processes hits all alike. Wall clock, with jax.block_until_ready on biotwin's outputs; the JAX "
        "runtime is started before any timed call.",
        f"(*) scipy batch = a Python loop of solve_ivp calls, timed on the first {args.scipy_subset} of "
        f"{args.batch_size} initial states and extrapolated linearly (x{args.batch_size / args.scipy_subset:g})."
        if args.scipy_subset < args.batch_size else
        f"scipy batch = a Python loop of solve_ivp calls over all {args.batch_size} initial states.",
        "biotwin compiled = Simulator.batched(...) with the auto-chosen explicit solver (Dopri8 below rtol 1e-7, else Tsit5) on JAX arrays; the batch is one jax.vmap call. "
        "Compile = first call - steady median.",
        "biotwin simulate() = the high-level call on NumPy arrays (validation, make_plan, stiffness check, "
        "solver choice, conversions, status check), on a separate model instance so its first call is cold.",
        f"Max relative error = max over times and states of |y - ref| / |ref|; ref = scipy {REFERENCE_METHOD} "
        f"at rtol = atol = {REFERENCE_TOL:g}.",
        f"biotwin batch: {batch_failures} of {args.batch_size} members with a non-OK status; "
        f"simulate() batch vs compiled batch: max |difference| = {hl_vs_compiled:.1e}.",
        "Targets (from the issue) compare the compiled biotwin solve with scipy RK45; the verdict uses the ratio "
        "of medians. Where the best/best ratio falls on the other side of a target, the verdict is within the "
        "noise of this machine.",
    ]
    console.print("[bold]Notes[/]")
    for note in notes:
        console.print(f"  - {note}")

    def verdict(case: str) -> str:
        _, passed, noisy = verdicts[case]
        return ("PASS" if passed else "FAIL") + (" (within noise: best/best disagrees)" if noisy else "")

    single_ratio = verdicts["single"][0]
    batch_ratio = verdicts["batch"][0]
    rk45_batch = timings["batch", "scipy RK45"]
    print(
        f"SUMMARY rtol={rtol:g} atol={atol:g} | "
        f"single: biotwin {fmt_time(timings['single', 'biotwin compiled'].steady)} "
        f"(simulate() {fmt_time(timings['single', 'biotwin simulate()'].steady)}), "
        f"scipy RK45 {fmt_time(timings['single', 'scipy RK45'].steady)}, "
        f"ratio {single_ratio:.1f}x (target {TARGET_SINGLE:g}x) {verdict('single')} | "
        f"batch {args.batch_size}: biotwin {fmt_time(timings['batch', 'biotwin compiled'].steady)} "
        f"(simulate() {fmt_time(timings['batch', 'biotwin simulate()'].steady)}), "
        f"scipy RK45 {fmt_time(rk45_batch.steady)}"
        f"{f' (extrapolated from {rk45_batch.timed_on})' if rk45_batch.timed_on else ''}, "
        f"ratio {batch_ratio:.1f}x (target {TARGET_BATCH:g}x) {verdict('batch')} | "
        f"max rel. error (single): biotwin {errors['biotwin compiled']:.1e}, scipy RK45 {errors['scipy RK45']:.1e}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

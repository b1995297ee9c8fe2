"""Multi-start calibration of the shared PEtab problems: biotwin against pyPESTO + AMICI, in one run.

For each problem, both tools start their local optimisations from the SAME points: biotwin's
scrambled Sobol points over the bounds on each parameter's optimisation scale
(:func:`biotwin.fit.start_points`, seed 0), handed to pyPESTO as ``x_guesses`` on that scale.
Both run their starts one after another in one process:

* biotwin: ``load_petab(...).objective(method="rodas5")`` (a stiff solver for every start, as
  AMICI's CVODES BDF: the Rosenbrock method biotwin's objectives choose for stiff problems;
  ``--method kvaerno5`` for the implicit Runge-Kutta method; the default step budget is AMICI's,
  10,000), then
  :func:`biotwin.fit.multistart`: fides' trust region with the Gauss-Newton Hessian of exact
  forward-mode residual Jacobians for 20 iterations and BFGS after (fides' HybridFixed, as
  pyPESTO's), biotwin's default tolerances; J is first evaluated at every start point and the
  starts run lowest J first (:func:`biotwin.fit.run_order`, biotwin's default; pyPESTO runs them
  in the given order), and a start that at its recent rate of progress cannot
  reach the best NLL of the starts already finished within its budget is abandoned where it
  stands (:func:`biotwin.fit.cannot_catch_up`, biotwin's default; pyPESTO runs every start to
  its end);
* pyPESTO + AMICI (in their own virtual environment ``.peer-venv``, started as a subprocess of
  this run): ``PetabImporter(...).create_problem()`` with AMICI's default solver settings, and
  ``pypesto.optimize.FidesOptimizer()``, the optimiser pyPESTO's documentation recommends for
  ODE models, with its defaults (hybrid Fisher information / BFGS Hessian, fides' default
  tolerances); ``maxiter`` set to the same evaluation budget as biotwin's.

The clock of each tool starts when it begins reading the PEtab problem (library imports are
not counted: :func:`machine.import_petab_libraries` for biotwin, ``pypesto.petab`` for the peer) and includes building and compiling the model: AMICI compiles its C++ model into a
fresh temporary folder every run, biotwin compiles its JAX program. *Time to best* is the
clock when the first start that reached the tool's own best NLL (within 1e-3) finished; the
*ratio* is pyPESTO's time to best over biotwin's. Where one tool finds a far better optimum than
the other (Elowitz: biotwin -60.47, pyPESTO -25.50 from the same 20 starts), the times to each
one's own best measure different searches, so the table also gives the *time to the common
target*: the first start that reached the worse of the two bests, the best NLL both found. A
start has *converged* when its NLL is within 0.1 of the best NLL either tool found. One run's
time to best depends on where in the sequence the few starts that find the best happen to be,
so a second table gives, from the same runs, pyPESTO's time had it run its starts in the
order biotwin ran them (each taking the time it took, the screening evaluations not charged to
it): how much of the ratio biotwin's order makes; then both tools' expected times over every
order of their starts (:func:`expected_time_to_target`), and the same again over only the
starts both tools got past: a start whose first solve fails ends at once, while the other
tool may run on from it for a minute (Elowitz: AMICI fails at 9 of the 20 start points).
biotwin's durations depend on the order, as a start is abandoned only behind a better one, so
the any-order columns, which take each start's measured duration as its duration in every
order, favour biotwin's abandonment and ignore its screening: the as-run table is the one
that holds. A tool that
runs past ``--time-limit`` seconds on a problem stops starting new local optimisations (and fides
is told the remaining time): the table marks it.

Run (about 5 minutes a seed on 2 cores)::

    .venv/bin/python benchmarks/calibrate_vs_pypesto.py                 # 4 problems, 20 starts
    .venv/bin/python benchmarks/calibrate_vs_pypesto.py --quick         # 2 problems, 4 starts
    .venv/bin/python benchmarks/calibrate_vs_pypesto.py --problems Boehm_JProteomeRes2014 --starts 8
    .venv/bin/python benchmarks/calibrate_vs_pypesto.py --seeds 0 1 2 3 4   # five sets of start points

With several ``--seeds``, each seed's start points are one run, with its tables, and a last table
gives each problem's ratios per seed and their median, how often biotwin's best NLL was better,
the same or worse, and the converged starts summed (:func:`print_summary`): where one start in
twenty finds the best optimum (Crauste), which tool finds it, and when, is a draw of the start
points and even of rounding, so one seed's ratio there is an anecdote.

The peer environment::

    python3.11 -m venv .peer-venv && .peer-venv/bin/pip install amici pypesto petab fides
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

from machine import CALIBRATION_METHOD, PETAB, PETAB_PROBLEMS, import_petab_libraries, petab_objective, print_machine

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / ".peer-venv" / "bin"
QUICK_PROBLEMS = ("Boehm_JProteomeRes2014", "Perelson_Science1996")
#: Starts within this of the best NLL of either tool count as converged (biotwin.fit.CONVERGED_WITHIN).
CONVERGED_WITHIN = 0.1
#: Two NLLs closer than this are the same optimum (both tools stop on NLL changes far below it).
SAME_OPTIMUM = 1e-3


def time_to_best(nll: list[float], finished: list[float]) -> float:
    """The clock when the first start within SAME_OPTIMUM of the best finite NLL finished (inf if none)."""
    finite = [v for v in nll if math.isfinite(v)]
    return time_to_target(nll, finished, min(finite)) if finite else math.inf


def time_to_target(nll: list[float], finished: list[float], target: float) -> float:
    """The clock when the first start with an NLL within SAME_OPTIMUM of ``target`` or below finished (inf if none)."""
    return min((t for v, t in zip(nll, finished) if math.isfinite(v) and v <= target + SAME_OPTIMUM), default=math.inf)


def expected_time_to_target(nll: list[float], finished: list[float], compile_seconds: float, target: float) -> float:
    """The expected clock at which a start within SAME_OPTIMUM of ``target`` first finishes, over
    every order in which the same starts could have run (inf if none reached it).

    The time to best of one run depends on where in the sequence the starts that find the best
    happen to be: one start's place can move it by a minute. Run one after another, start i takes
    d_i seconds whatever its place, so over uniformly random orders, with B the starts that reach
    the target, each other start runs before all of B with probability 1/(|B| + 1), and the first
    of B is any of them alike:

        E[T] = compile + sum_{i not in B} d_i / (|B| + 1) + mean_{i in B} d_i.
    """
    durations = seconds_each(finished, compile_seconds)
    reached = [d for v, d in zip(nll, durations) if math.isfinite(v) and v <= target + SAME_OPTIMUM]
    if not reached:
        return math.inf
    others = sum(durations) - sum(reached)
    return compile_seconds + others / (len(reached) + 1) + sum(reached) / len(reached)


def seconds_each(finished: list[float], compile_seconds: float) -> list[float]:
    """Each start's own duration in a sequential run: its finishing clock minus that of the start
    that finished before it (the compilation's end, for the first; with biotwin's screening, the
    first start's duration includes the screening evaluations)."""
    durations, previous = [0.0] * len(finished), compile_seconds
    for k in sorted(range(len(finished)), key=lambda k: finished[k]):
        durations[k], previous = finished[k] - previous, finished[k]
    return durations


def order_ran(run: dict) -> list[int]:
    """The indices of a run's starts in the order they ran (finished)."""
    return sorted(range(len(run["finished"])), key=lambda k: run["finished"][k])


def got_past(run: dict) -> list[bool]:
    """Whether each start got past its start point: a start whose first solve fails ends there."""
    return [e > 1 or math.isfinite(v) for v, e in zip(run["nll"], run["evaluations"])]


def replayed(run: dict, order: list[int]) -> dict:
    """The run as if only the starts ``order`` (indices) had run, in that order, one after another
    after the compilation, each taking the time it took."""
    from itertools import accumulate

    durations = seconds_each(run["finished"], run["compile"])
    finished = list(accumulate((durations[k] for k in order), initial=run["compile"]))[1:]
    return {**run, "nll": [run["nll"][k] for k in order], "finished": finished}


def only(run: dict, keep: list[bool]) -> dict:
    """The run as if only the starts in ``keep`` had run, in the order they ran."""
    return replayed(run, [k for k in order_ran(run) if keep[k]])


class Comparison(NamedTuple):
    """One problem's two runs side by side, biotwin's first in each pair."""

    best: tuple[float, float]  # each tool's best NLL
    converged: tuple[int, int]  # starts within CONVERGED_WITHIN of the better of the two
    common: float  # the worse of the two bests: the best both reached (-inf when one found nothing)
    to_best: tuple[float, float]  # time to each tool's own best
    to_common: tuple[float, float]  # time to the common target


def compare(ours: dict, theirs: dict) -> Comparison:
    """The two runs' best NLLs, converged starts and times to best and to the best both reached.

    Where one tool finds a much better optimum than the other, the time to each one's own best
    compares searches for different things; the time to the common target does not.
    """
    runs = (ours, theirs)
    best = tuple(min(run["nll"], default=math.inf) for run in runs)
    overall = min(best)
    common = max(best) if all(math.isfinite(b) for b in best) else -math.inf
    return Comparison(best, tuple(sum(v <= overall + CONVERGED_WITHIN for v in run["nll"]) for run in runs), common,
                      tuple(time_to_best(run["nll"], run["finished"]) for run in runs),
                      tuple(time_to_target(run["nll"], run["finished"], common) for run in runs))


def ratio(ours: float, theirs: float) -> float:
    """pyPESTO's time over biotwin's (NaN where either is not a finite positive time)."""
    return theirs / ours if math.isfinite(ours) and math.isfinite(theirs) and ours > 0 else math.nan


def speed_up(ours: float, theirs: float) -> str:
    """pyPESTO's time over biotwin's, as a table cell."""
    value = ratio(ours, theirs)
    return "-" if math.isnan(value) else f"{value:.1f}x"


# ---------------------------------------------------------------------- pyPESTO + AMICI (peer environment)
def run_peer(request: dict) -> dict:
    """Multi-start of pyPESTO's FidesOptimizer on AMICI's objective from the given points, timed."""
    import logging

    import numpy as np

    for name in ("amici", "pypesto", "fides"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    import petab.v1 as petab
    import pypesto.optimize as optimize
    from pypesto.petab import PetabImporter

    began = time.perf_counter()
    name = request["problem"]
    problem = petab.Problem.from_yaml(str(PETAB / name / f"{name}.yaml"))
    with tempfile.TemporaryDirectory(prefix="amici_") as folder:
        importer = PetabImporter(problem, output_folder=folder, model_name=f"{name}_calibrate")
        pproblem = importer.create_problem()
        for handler in logging.getLogger("amici").handlers:
            handler.setLevel(logging.CRITICAL)
        compiled = time.perf_counter() - began
        order = [pproblem.x_names.index(n) for n in request["names"]]
        if sorted(order) != sorted(pproblem.x_free_indices):
            raise SystemExit(f"{name}: pyPESTO estimates {pproblem.x_names} but biotwin {request['names']}")
        nll, finished, evaluations = [], [], []
        for x0 in request["points"]:
            remaining = request["time_limit"] - (time.perf_counter() - began)
            if remaining <= 0:
                break
            full = np.full(pproblem.dim_full, np.nan)
            full[order] = x0
            pproblem.set_x_guesses(full[None, :])
            optimizer = optimize.FidesOptimizer(verbose=logging.CRITICAL,
                                                options={"maxiter": request["max_evaluations"], "maxtime": remaining})
            result = optimize.minimize(pproblem, optimizer, n_starts=1, progress_bar=False).optimize_result.list[0]
            value = float(result.fval) if result.fval is not None and np.isfinite(result.fval) else math.inf
            nll.append(value)
            finished.append(time.perf_counter() - began)
            evaluations.append(int(result.n_fval or 0))
    import amici
    import pypesto

    return {"nll": nll, "finished": finished, "evaluations": evaluations, "compile": compiled,
            "total": time.perf_counter() - began, "cut_off": len(nll) < len(request["points"]),
            "version": f"pyPESTO {pypesto.__version__}, AMICI {amici.__version__}"}


def peer_in_subprocess(request: dict) -> dict:
    """Run :func:`run_peer` with the peer environment's Python (AMICI compiles with its tools on PATH)."""
    with tempfile.TemporaryDirectory(prefix="calibrate_peer_") as folder:
        inbox, outbox = Path(folder) / "request.json", Path(folder) / "result.json"
        inbox.write_text(json.dumps(request))
        environment = {**os.environ, "PATH": f"{PEER}{os.pathsep}{os.environ.get('PATH', '')}"}
        completed = subprocess.run([str(PEER / "python"), __file__, "--peer", str(inbox), str(outbox)],
                                   env=environment, capture_output=True, text=True,
                                   timeout=request["time_limit"] + 900)
        if completed.returncode != 0 or not outbox.exists():
            raise SystemExit(f"pyPESTO + AMICI failed on {request['problem']}:\n{completed.stderr[-3000:]}")
        return json.loads(outbox.read_text())


# ---------------------------------------------------------------------- biotwin (main environment)
def run_biotwin(name: str, starts: int, seed: int, max_evaluations: int, time_limit: float,
                method: str = CALIBRATION_METHOD) -> tuple[dict, dict]:
    """biotwin's multi-start on one problem, timed as pyPESTO's; and the request for the peer."""
    import numpy as np

    from biotwin.fit import multistart, start_points

    import_petab_libraries()  # not timed, as the peer's imports are not
    began = time.perf_counter()
    objective = petab_objective(name, method)
    points = start_points(objective, starts, seed)
    lead = time.perf_counter() - began  # reading the problem, before multistart's own clock
    calibration = multistart(objective, starts=points, max_evaluations=max_evaluations, time_limit=time_limit - lead)
    total = time.perf_counter() - began
    by_index = sorted(calibration.starts, key=lambda s: s.index)
    ours = {"nll": [s.nll for s in by_index], "finished": [lead + s.finished for s in by_index],
            "evaluations": [s.evaluations for s in by_index], "abandoned": [s.abandoned for s in by_index],
            "compile": lead + calibration.compile_seconds,
            "total": total, "cut_off": len(by_index) < starts, "nominal": calibration.nominal_nll}
    request = {"problem": name, "names": list(objective.names), "points": np.asarray(points).tolist(),
               "max_evaluations": max_evaluations}
    return ours, request


def print_tables(console: Any, rows: list[tuple[str, dict, dict]], starts: int) -> None:
    """The comparison as run, and the same runs' expected times over every order of their starts."""
    from rich.table import Table

    table = Table(title=f"Multi-start calibration, {starts} Sobol starts each, sequential, one process per tool")
    for column in ("problem", "nominal NLL", "best NLL\nbiotwin", "best NLL\npyPESTO", "converged\nbiotwin",
                   "converged\npyPESTO", "to best \\[s]\nbiotwin", "to best \\[s]\npyPESTO", "total \\[s]\nbiotwin",
                   "total \\[s]\npyPESTO", "compile \\[s]\nbiotwin / pyPESTO", "speed-up\nto best",
                   "to common \\[s]\nbiotwin / pyPESTO", "speed-up\nto common"):
        table.add_column(column, justify="left" if column == "problem" else "right")
    orders = Table(title="The same runs in other orders: pyPESTO's starts in the order biotwin ran them, and both "
                         "tools' expected times over every order of their starts (see expected_time_to_target)")
    for column in ("problem", "pyPESTO in\nbiotwin's order:\nto best \\[s]", "speed-up\nto best",
                   "pyPESTO in\nbiotwin's order:\nto common \\[s]", "speed-up\nto common",
                   "any order:\nto best \\[s]\nbiotwin / pyPESTO", "speed-up\nto best", "any order:\nto common \\[s]\nbiotwin / pyPESTO",
                   "speed-up\nto common", "starts both\ngot past", "to best \\[s], those\nbiotwin / pyPESTO",
                   "speed-up\nto best", "to common \\[s], those\nbiotwin / pyPESTO", "speed-up\nto common"):
        orders.add_column(column, justify="left" if column == "problem" else "right")
    for name, ours, theirs in rows:
        runs = (ours, theirs)
        best, converged, common, to_best, to_common = compare(ours, theirs)
        cut = [f" (cut off after {len(run['nll'])})" if run["cut_off"] else "" for run in runs]
        table.add_row(
            name.split("_")[0], f"{ours['nominal']:.4f}", f"{best[0]:.4f}", f"{best[1]:.4f}",
            f"{converged[0]}/{starts}{cut[0]}", f"{converged[1]}/{starts}{cut[1]}", f"{to_best[0]:.1f}", f"{to_best[1]:.1f}",
            f"{ours['total']:.1f}", f"{theirs['total']:.1f}", f"{ours['compile']:.1f} / {theirs['compile']:.1f}",
            speed_up(*to_best), f"{to_common[0]:.1f} / {to_common[1]:.1f}", speed_up(*to_common),
        )
        expected_best = [expected_time_to_target(run["nll"], run["finished"], run["compile"], b) for run, b in zip(runs, best)]
        expected_common = [expected_time_to_target(run["nll"], run["finished"], run["compile"], common) for run in runs]
        # A start whose first solve fails costs next to nothing; one the other tool solves may run
        # for a minute. The same starts without those that either tool could not get past:
        both = [a and b for a, b in zip(got_past(ours), got_past(theirs))]
        kept = [only(run, both) for run in runs]
        kept_best, _, kept_common, _, _ = compare(*kept)
        both_best = [expected_time_to_target(run["nll"], run["finished"], run["compile"], b) for run, b in zip(kept, kept_best)]
        both_common = [expected_time_to_target(run["nll"], run["finished"], run["compile"], kept_common) for run in kept]
        # pyPESTO's starts replayed in biotwin's run order (screened, lowest J at the start point
        # first), each taking the time it took: how much of the ratio the order makes.
        ran = order_ran(ours)
        order = [k for k in ran if k < len(theirs["nll"])] + [k for k in range(len(theirs["nll"])) if k not in ran]
        theirs_ordered = replayed(theirs, order)
        ordered = [time_to_target(theirs_ordered["nll"], theirs_ordered["finished"], target) for target in (best[1], common)]
        orders.add_row(name.split("_")[0], f"{ordered[0]:.1f}", speed_up(to_best[0], ordered[0]),
                       f"{ordered[1]:.1f}", speed_up(to_common[0], ordered[1]),
                       f"{expected_best[0]:.1f} / {expected_best[1]:.1f}", speed_up(*expected_best),
                       f"{expected_common[0]:.1f} / {expected_common[1]:.1f}", speed_up(*expected_common),
                       f"{sum(both)}/{len(both)}", f"{both_best[0]:.1f} / {both_best[1]:.1f}", speed_up(*both_best),
                       f"{both_common[0]:.1f} / {both_common[1]:.1f}", speed_up(*both_common))
    console.print(table)
    console.print(
        f"Converged: within {CONVERGED_WITHIN} of the best NLL of both tools. To best: seconds from reading the "
        f"problem until the first start that reached the tool's own best (within {SAME_OPTIMUM}) finished, "
        f"compilation included. To common: the same, to the worse of the two tools' best NLLs (the best both "
        f"reached). {rows[0][2]['version'] if rows else ''}. Starts biotwin abandoned (they could not catch up "
        f"with the best finished start): " + ", ".join(
            f"{name.split('_')[0]} {sum(ours.get('abandoned', []))}" for name, ours, _ in rows) + "."
    )
    console.print(orders)
    console.print("Starts both got past: those where neither tool's first solve failed (such a start ends at "
                  "once); the last four columns count only them, as if the others had not been drawn.")


def print_summary(console: Any, by_seed: dict[int, list[tuple[str, dict, dict]]]) -> None:
    """Across seeds: each problem's ratios per seed, their median, and how the two tools' optima compare.

    Where a problem's best optimum is found by one start in twenty (Crauste), which tool finds it
    and when depends on the Sobol points and on rounding: one seed's ratio is a draw, the median
    over seeds a measure.
    """
    from statistics import median

    from rich.table import Table

    seeds = sorted(by_seed)
    table = Table(title=f"Across {len(seeds)} seeds of the start points ({', '.join(map(str, seeds))}): pyPESTO's time over biotwin's")
    for column in ("problem", "to best,\nper seed", "median", "to common,\nper seed", "median", "all starts,\nper seed", "median",
                   "best NLL: biotwin\nbetter / same / worse", "converged\nbiotwin / pyPESTO"):
        table.add_column(column, justify="left" if column == "problem" else "right")
    names = [name for name, _, _ in by_seed[seeds[0]]]
    for name in names:
        ratios: dict[str, list[float]] = {"best": [], "common": [], "total": []}
        better = same = worse = converged_ours = converged_theirs = 0
        for seed in seeds:
            ours, theirs = next((o, t) for n, o, t in by_seed[seed] if n == name)
            best, converged, _, to_best, to_common = compare(ours, theirs)
            ratios["best"].append(ratio(*to_best))
            ratios["common"].append(ratio(*to_common))
            ratios["total"].append(ratio(ours["total"], theirs["total"]))
            better += best[0] < best[1] - SAME_OPTIMUM
            worse += best[0] > best[1] + SAME_OPTIMUM
            same += abs(best[0] - best[1]) <= SAME_OPTIMUM
            converged_ours += converged[0]
            converged_theirs += converged[1]
        cells = []
        for key in ("best", "common", "total"):
            cells += [" ".join(f"{r:.1f}x" for r in ratios[key]), f"{median(ratios[key]):.1f}x"]
        table.add_row(name.split("_")[0], *cells, f"{better} / {same} / {worse}", f"{converged_ours} / {converged_theirs}")
    console.print(table)
    console.print("Same: best NLLs within 1e-3. Converged: starts within 0.1 of the better of the two bests, summed over the seeds.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=20, help="local optimisations per problem and tool")
    parser.add_argument("--problems", nargs="+", default=None, choices=PETAB_PROBLEMS, metavar="NAME",
                        help=f"PEtab problems from {PETAB} (default: all four)")
    parser.add_argument("--quick", action="store_true", help=f"4 starts on {' and '.join(QUICK_PROBLEMS)}")
    parser.add_argument("--max-evaluations", type=int, default=1000, help="evaluation budget of each start (both tools)")
    parser.add_argument("--time-limit", type=float, default=300.0,
                        help="seconds per problem and tool after which no new start begins (default 300)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="seeds of the Sobol start points: one run per seed, and a summary across them (default 0)")
    parser.add_argument("--method", default=CALIBRATION_METHOD, choices=("kvaerno5", "rodas5", "rodas4"),
                        help=f"biotwin's stiff solver (default {CALIBRATION_METHOD}, the Rosenbrock method; kvaerno5: implicit Runge-Kutta)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "calibrate_vs_pypesto.json",
                        help="every start's NLL and finishing time, per seed, problem and tool (JSON)")
    parser.add_argument("--tables-from", type=Path, metavar="JSON",
                        help="print the tables of an earlier run from its --out file, without running anything")
    parser.add_argument("--peer", nargs=2, metavar=("REQUEST", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        request = json.loads(Path(args.peer[0]).read_text())
        Path(args.peer[1]).write_text(json.dumps(run_peer(request)))
        return

    from rich.console import Console

    if args.tables_from:
        saved = json.loads(args.tables_from.read_text())
        # Earlier files hold one seed's problems at the top level.
        by_seed = {int(seed): rows for seed, rows in saved["seeds"].items()} if "seeds" in saved else {0: saved}
        console = Console(width=200)
        tables = {seed: [(name, runs["biotwin"], runs["pypesto"]) for name, runs in rows.items()] for seed, rows in by_seed.items()}
        for seed, rows in tables.items():
            if len(tables) > 1:
                console.print(f"[bold]seed {seed}[/]")
            print_tables(console, rows, max(len(ours["nll"]) for _, ours, _ in rows))
        if len(tables) > 1:
            print_summary(console, tables)
        return
    problems = args.problems or (QUICK_PROBLEMS if args.quick else PETAB_PROBLEMS)
    starts = 4 if args.quick and args.starts == parser.get_default("starts") else args.starts
    if not (PEER / "python").exists():
        raise SystemExit(f"pyPESTO + AMICI need their environment {PEER.parent}: see this file's docstring")

    console = Console(width=200)
    print_machine(console, ("fides", "diffrax"))
    by_seed: dict[int, list[tuple[str, dict, dict]]] = {}
    for seed in args.seeds:
        rows = []
        for name in problems:
            console.print(f"[bold]{name}[/], seed {seed}: biotwin, {starts} starts ...")
            ours, request = run_biotwin(name, starts, seed, args.max_evaluations, args.time_limit, args.method)
            console.print(f"[bold]{name}[/], seed {seed}: pyPESTO + AMICI, the same {starts} starts ...")
            theirs = peer_in_subprocess({**request, "time_limit": args.time_limit})
            rows.append((name, ours, theirs))
        by_seed[seed] = rows
        print_tables(console, rows, starts)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"seeds": {str(s): {name: {"biotwin": ours, "pypesto": theirs} for name, ours, theirs in r}
                                                  for s, r in by_seed.items()}}, indent=1))
    if len(by_seed) > 1:
        print_summary(console, by_seed)
    console.print(f"max {args.max_evaluations} evaluations per start; time limit {args.time_limit:.0f} s per problem and tool; "
                  f"every start's NLL and finishing time in {args.out}")


if __name__ == "__main__":
    main()

"""Iterated kicks and profile walks from the best fit: leaving a shallow local optimum one parameter at a time.

A multi-start's best start can end in a basin beside a far better one that no start drew
close to. :func:`refine` tries two kinds of move from the current optimum x*, in rounds:

* **Kicks to the bounds.** The better optimum often has a parameter at one of its bounds: a
  rate that the data want at zero or at its largest, which points drawn inside the box rarely
  reach. Every estimated parameter in turn is moved to its lower and then its upper bound (the
  others held at x*), all parameters are re-optimised from there with at most
  :data:`KICK_EVALUATIONS` evaluations, and the best result, when it beats x* by more than
  :data:`~biotwin.fit.SAME_OPTIMUM`, is polished with the full budget and becomes x*. A round
  costs 2n local optimisations for n estimated parameters.
* **Profile walks**, once a round of kicks gains nothing. In a flat valley of near-equivalent
  parameters two basins can lie a few hundredths of a likelihood unit apart, separated by a
  rise that a local optimiser does not climb, and along a line between them the model may not
  even be solvable. The profile likelihood PL_k(x_k) = min over the others of J walks such a
  valley, one parameter at a time (:func:`biotwin.identify.profile`, out to the 95 % threshold
  on each side). A profile point below J(x*) by more than SAME_OPTIMUM ends the walk: all
  parameters are re-optimised from it with the full budget, and the next round starts with
  kicks again.

It stops when neither move gains, or after ``max_rounds`` rounds. This is iterated local search
(basin hopping) with its moves along the parameter axes.

Measured from the best of the 20 Sobol starts of ``benchmarks/calibrate_vs_pypesto.py``
(``benchmarks/multistart_nominal.py --starts 20 --refine``), kicks only: Boehm_JProteomeRes2014
147.5440 -> 138.2220, 1.5e-5 below the nominal NLL, which 100 Sobol starts reach 4 times (31.6 s);
Crauste_CellSystems2017 255.3208 -> 190.9659, 0.0019 above it (67.4 s; pyPESTO + AMICI's best
from the same starts is 256.77); Elowitz_Nature2000 gains only 0.003; Perelson_Science1996 stays
at its best (1.1 s).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable

import numpy as np

from biotwin.fit import SAME_OPTIMUM, Calibration, Start, best_first

#: Evaluations for the re-optimisation after each kick (the winner then gets the full budget).
KICK_EVALUATIONS = 200
#: Rounds of moves at most.
MAX_ROUNDS = 6


def refine(objective: Any, calibration: Calibration, *, max_rounds: int = MAX_ROUNDS,
           kick_evaluations: int = KICK_EVALUATIONS, max_evaluations: int = 1000, kicks: bool = True,
           profiles: bool = True, progress: Any = None) -> Calibration:
    """The calibration with one more entry: the best fit after rounds of kicks and profile walks (see the module).

    ``kicks=False`` or ``profiles=False`` leaves out that move. The entry is a
    :class:`~biotwin.fit.Start` whose ``x0`` is the point of the last gain (a kicked point or a
    profile point; the best start's optimum when nothing gained), whose ``index`` is the number
    of starts, and whose evaluations and seconds are the refinement's. ``progress(done, total,
    label)`` is called after each kick and each profile. A calibration without a finite best is
    returned as it is.
    """
    from biotwin.optimise import minimiser

    if not math.isfinite(calibration.best_nll):
        return calibration
    report = progress or (lambda done, total, label: None)
    engine = minimiser(objective)
    began, before = time.perf_counter(), engine.evaluations
    free = np.arange(objective.size)
    x, value = np.array(calibration.best_x, dtype=float), calibration.best_nll
    origin = x.copy()
    for round_ in range(max_rounds):
        label = f"round {round_ + 1}"
        moved = None
        if kicks:
            moved = _best_kick(engine, x, value, kick_evaluations, lambda done, total, best: report(
                done, total, f"{label}, kicks: best NLL {best:.6g}"))
        if moved is None and profiles:
            moved = _first_better_profile_point(objective, x, value, lambda done, total, best: report(
                done, total, f"{label}, profiles: best NLL {best:.6g}"))
        if moved is None:
            break
        origin, reached = moved
        x, value = engine.minimise(free, reached, max_evaluations)
    seconds = time.perf_counter() - began
    entry = Start(origin, np.asarray(x, float), float(value), engine.evaluations - before, seconds,
                  len(calibration.starts), calibration.seconds + seconds)
    return dataclasses.replace(calibration, starts=best_first((*calibration.starts, entry)),
                               seconds=calibration.seconds + seconds)


def _best_kick(engine: Any, x: np.ndarray, value: float, kick_evaluations: int,
               report: Callable[[int, int, float], None]) -> tuple[np.ndarray, np.ndarray] | None:
    """The kicked point and the point re-optimised from it, of the kick (one parameter moved to a
    bound) that gains most, if it beats ``value`` by more than SAME_OPTIMUM; else None."""
    free = np.arange(x.size)
    kicks = [(k, bound) for k in range(x.size) for bound in (engine.lower[k], engine.upper[k])
             if math.isfinite(bound)]
    best_value, best = value, None
    for done, (k, bound) in enumerate(kicks, start=1):
        if bound != x[k]:
            kicked = x.copy()
            kicked[k] = bound
            point, reached = engine.minimise(free, kicked, kick_evaluations)
            if reached < best_value:
                best_value, best = reached, (kicked, point)
        report(done, len(kicks), min(value, best_value))
    return best if best is not None and best_value < value - SAME_OPTIMUM else None


def _first_better_profile_point(objective: Any, x: np.ndarray, value: float,
                                report: Callable[[int, int, float], None]) -> tuple[np.ndarray, np.ndarray] | None:
    """The best point of the first profile that finds one below ``value`` by more than SAME_OPTIMUM
    (twice: it is where the gain began and where the polish starts); else None."""
    from biotwin.identify import profile, threshold

    # Profiles flag a better point when it lies below J(x*) by more than flat_tolerance * Delta.
    flat_tolerance = SAME_OPTIMUM / threshold(0.95)
    for done, name in enumerate(objective.names, start=1):
        walked = profile(objective, x, parameters=[name], flat_tolerance=flat_tolerance)
        report(done, len(objective.names), value if walked.better_nll is None else walked.better_nll)
        if walked.improved and walked.better_nll < value - SAME_OPTIMUM:
            point = np.array(walked.better_x, dtype=float)
            return point, point
    return None

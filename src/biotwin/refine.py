"""Iterated kicks and profile walks from the best fit: leaving a shallow local optimum one parameter at a time.

A multi-start's best start can end in a basin beside a far better one that no start drew
close to. :func:`refine` tries two kinds of move from the current optimum x*, in rounds:

* **Kicks to the bounds.** The better optimum often has a parameter at one of its bounds: a
  rate that the data want at zero or at its largest, which points drawn inside the box rarely
  reach. Every estimated parameter in turn is moved to its lower and then its upper bound (the
  others held at x*), and all parameters are re-optimised from there with at most
  :data:`KICK_EVALUATIONS` evaluations. A round costs 2n local optimisations for n estimated
  parameters.
* **Profile walks**, when no kick gains more than :data:`~biotwin.fit.SAME_OPTIMUM`. In a flat
  valley of near-equivalent parameters two basins can lie a few hundredths of a likelihood
  unit apart, separated by a rise that a local optimiser does not climb, and along a line
  between them the model may not even be solvable. The profile likelihood PL_k(x_k) = min over
  the others of J walks such a valley, one parameter at a time (:func:`biotwin.identify.profile`,
  out to the 95 % threshold on each side or :data:`WALK_POINTS` points, each re-optimised with
  at most :data:`WALK_EVALUATIONS` evaluations), until one finds a point more than
  SAME_OPTIMUM below J(x*).

The lowest point a round's moves reached is polished with the full budget and becomes x*. A
round that gained more than SAME_OPTIMUM is followed by another; a smaller gain is kept and
ends the refinement, as does a round without gain or ``max_rounds`` rounds. This is iterated
local search (basin hopping) with its moves along the parameter axes.

Measured from the best of the 20 Sobol starts of ``benchmarks/calibrate_vs_pypesto.py``
(``benchmarks/multistart_nominal.py --starts 20 --refine``; 2 cores): Boehm_JProteomeRes2014
147.5440 -> 138.2220, 1.8e-5 below the nominal NLL, which 100 Sobol starts reach 4 times
(32.3 s); Crauste_CellSystems2017 255.7526 -> 190.9643, 3.1e-4 above it (120.9 s: a first
round of kicks gains 64.8, three more 0.002 to 0.0007 each, and the profile walks find nothing
lower; kicks alone, without the small gains kept, ended 0.0019 above it); Elowitz_Nature2000
-60.0861 -> -65.4931, 2.29 below its nominal NLL (655 s: with progress printed, the gain came
with the second round of kicks, 200 s in, and a round of kicks and one of profile walks that
gain nothing took 426 s more);
Perelson_Science1996 stays at its best, 222.2808 (1.5 s). pyPESTO + AMICI's best from the same
starts: 147.5440, 255.8446, -59.7689 and 222.2808.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from biotwin.fit import SAME_OPTIMUM, Calibration, Start, best_first

#: Evaluations for the re-optimisation after each kick (the winner then gets the full budget).
KICK_EVALUATIONS = 200
#: Rounds of moves at most.
MAX_ROUNDS = 6
#: Points per side of each profile walk, and evaluations per point: a walk looks for a lower
#: basin near the optimum, not for the interval's ends, which ``biotwin profile`` traces in full.
WALK_POINTS = 12
WALK_EVALUATIONS = 100


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
        found: _Move | None = None
        if kicks:
            found = _best_kick(engine, x, value, kick_evaluations, lambda done, total, best: report(
                done, total, f"{label}, kicks: best NLL {best:.6g}"))
        if profiles and (found is None or found.reached >= value - SAME_OPTIMUM):
            walked = _profile_walks(objective, x, value, lambda done, total, best: report(
                done, total, f"{label}, profiles: best NLL {best:.6g}"))
            if walked is not None and (found is None or walked.reached < found.reached):
                found = walked
        if found is None:
            break
        gain = value - found.reached
        origin = found.origin
        x, value = engine.minimise(free, found.point, max_evaluations)
        if gain <= SAME_OPTIMUM:
            break  # a gain within the same optimum: kept, but no reason for another round
    seconds = time.perf_counter() - began
    entry = Start(origin, np.asarray(x, float), float(value), engine.evaluations - before, seconds,
                  len(calibration.starts), calibration.seconds + seconds)
    return dataclasses.replace(calibration, starts=best_first((*calibration.starts, entry)),
                               seconds=calibration.seconds + seconds)


@dataclasses.dataclass(frozen=True)
class _Move:
    """A move that lowered J: where it began (``origin``), the point it reached and J there."""

    origin: np.ndarray
    point: np.ndarray
    reached: float


def _best_kick(engine: Any, x: np.ndarray, value: float, kick_evaluations: int,
               report: Callable[[int, int, float], None]) -> _Move | None:
    """The kick (one parameter moved to a bound, all re-optimised) that lowers J below ``value``
    most; None when none lowers it."""
    free = np.arange(x.size)
    kicks = [(k, bound) for k in range(x.size) for bound in (engine.lower[k], engine.upper[k])
             if math.isfinite(bound)]
    best: _Move | None = None
    for done, (k, bound) in enumerate(kicks, start=1):
        if bound != x[k]:
            kicked = x.copy()
            kicked[k] = bound
            point, reached = engine.minimise(free, kicked, kick_evaluations)
            if reached < (value if best is None else best.reached):
                best = _Move(kicked, point, reached)
        report(done, len(kicks), value if best is None else best.reached)
    return best


def _profile_walks(objective: Any, x: np.ndarray, value: float,
                   report: Callable[[int, int, float], None]) -> _Move | None:
    """The lowest profile point below ``value``, walking one parameter's profile after another
    and stopping at the first that gains more than SAME_OPTIMUM; None when none lies below."""
    from biotwin.identify import profile

    best: _Move | None = None
    for done, name in enumerate(objective.names, start=1):
        # flat_tolerance 0: the profiles report any point below J(x*) as a better one.
        walked = profile(objective, x, parameters=[name], flat_tolerance=0.0, max_points=WALK_POINTS,
                         max_evaluations=WALK_EVALUATIONS)
        if walked.improved and walked.better_nll < (value if best is None else best.reached):
            point = np.array(walked.better_x, dtype=float)
            best = _Move(point, point, float(walked.better_nll))
        report(done, len(objective.names), value if best is None else best.reached)
        if best is not None and best.reached < value - SAME_OPTIMUM:
            break
    return best

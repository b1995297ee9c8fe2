"""Iterated kicks from the best fit: leaving a shallow local optimum one parameter at a time.

A multi-start's best start can end in a basin beside a far better one that no start drew
close to. The better optimum often has a parameter at one of its bounds: a rate that the data
want at zero or at its largest, which points drawn inside the box rarely reach. Each round of
:func:`refine` therefore moves every estimated parameter in turn to its lower and then its upper
bound (the others held at the current optimum), re-optimises all parameters from there with at
most :data:`KICK_EVALUATIONS` evaluations, and restarts the optimiser with the full budget from
the best of these when it beats the current optimum by more than
:data:`~biotwin.fit.SAME_OPTIMUM`. It stops after a round that gains nothing, or after
``max_rounds``. This is iterated local search (basin hopping) with the kicks along the axes.

Measured from the best of the 20 Sobol starts of ``benchmarks/calibrate_vs_pypesto.py``
(``benchmarks/multistart_nominal.py --starts 20 --refine``): Boehm_JProteomeRes2014 147.5440 ->
138.2220, 1.5e-5 below the nominal NLL, which 100 Sobol starts reach 4 times (31.6 s);
Crauste_CellSystems2017 255.3208 -> 190.9659, 0.0019 above it (67.4 s; pyPESTO + AMICI's best
from the same starts is 256.77); Elowitz_Nature2000 gains only 0.003; Perelson_Science1996 stays
at its best (1.1 s). A round costs 2n local optimisations for n estimated parameters.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np

from biotwin.fit import SAME_OPTIMUM, Calibration, Start, best_first

#: Evaluations for the re-optimisation after each kick (the winner then gets the full budget).
KICK_EVALUATIONS = 200
#: Rounds of kicks at most.
MAX_ROUNDS = 4


def refine(objective: Any, calibration: Calibration, *, max_rounds: int = MAX_ROUNDS,
           kick_evaluations: int = KICK_EVALUATIONS, max_evaluations: int = 1000, progress: Any = None) -> Calibration:
    """The calibration with one more entry: the best fit after rounds of kicks (see the module).

    The entry is a :class:`~biotwin.fit.Start` whose ``x0`` is the kicked point it was
    re-optimised from (the best start's optimum when no kick gained), whose ``index`` is the
    number of starts, and whose evaluations and seconds are the refinement's. ``progress(done,
    total, label)`` is called after each kick. A calibration without a finite best is returned
    as it is.
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
    kicks = [(k, bound) for k in range(objective.size) for bound in (engine.lower[k], engine.upper[k])
             if math.isfinite(bound)]
    for round_ in range(max_rounds):
        best_value, best_point, best_kick = value, None, None
        for done, (k, bound) in enumerate(kicks, start=1):
            if bound != x[k]:
                kicked = x.copy()
                kicked[k] = bound
                point, reached = engine.minimise(free, kicked, kick_evaluations)
                if reached < best_value:
                    best_value, best_point, best_kick = reached, point, kicked
            report(done, len(kicks), f"round {round_ + 1}: best NLL {min(value, best_value):.6g}")
        if best_point is None or best_value >= value - SAME_OPTIMUM:
            break
        x, value = engine.minimise(free, best_point, max_evaluations)
        origin = best_kick
    seconds = time.perf_counter() - began
    entry = Start(origin, np.asarray(x, float), float(value), engine.evaluations - before, seconds,
                  len(calibration.starts), calibration.seconds + seconds)
    return dataclasses.replace(calibration, starts=best_first((*calibration.starts, entry)),
                               seconds=calibration.seconds + seconds)

"""Hidden dosing compartments: doses given into a compartment that is never measured.

An oral dose goes into the gut and only the plasma concentration is measured; a chemotherapy
drug is given and only the tumour volume is. When the experiments dose or infuse into a name
that is not an observable, discovery adds that name as a hidden state emptying at first order,

    da/dt = -k a,    a(t) = sum_{doses d, t_d <= t} A_d exp(-k (t - t_d))
                            + sum_{infusions at rate r on [s, e)} (r / k) (1 - exp(-k (min(t, e) - s))) exp(-k (t - min(t, e))),

empty before the first dose: the depot (absorption) compartment of pharmacokinetics, one rate
constant k. Its trajectory is known up to k, so it enters the observed states' libraries as a
variable, as an input signal does, and their rates may depend on it (first-order absorption
k a into the plasma, a log-kill k D V of the tumour). k is first chosen on a log grid, by how
well the observed states' rates are explained in least squares by a constant, the states and
a(t); the trajectory refit then fits k with every other number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from biotwin.data import Dataset, Experiment

#: Rates tried for each depot, as multiples of 1 / (the longest experiment's duration): from a
#: compartment that barely empties over the experiment to one emptying within a hundredth of it.
RATE_GRID = np.geomspace(0.3, 100.0, 16)


def hidden_depots(dataset: Dataset, states: Sequence[str]) -> tuple[str, ...]:
    """Names the experiments give bolus doses into that are not observed states (an input of the
    same name is then an infusion into that depot, not a signal)."""
    return tuple(dict.fromkeys(d.state for e in dataset for d in e.doses if d.state not in states))


def depot_levels(experiment: Experiment, name: str, rate: float, times: np.ndarray) -> np.ndarray:
    """The amount a(t) in the depot ``name`` at ``times``, emptying at ``rate`` (see the module)."""
    times = np.asarray(times, dtype=float)
    level = np.full(times.shape, float(experiment.overrides.get(name, 0.0))) * np.exp(-rate * (times - experiment.start))
    for dose in experiment.doses:
        if dose.state == name:
            after = times >= dose.time
            level[after] += dose.amount * np.exp(-rate * (times[after] - dose.time))
    for signal in experiment.inputs:
        if signal.name != name:
            continue
        switches = (*signal.times, np.inf)
        for begin, end, infusion in zip(switches, switches[1:], signal.levels):
            started = times >= begin
            stopped = np.minimum(times[started], end)
            level[started] += infusion / rate * (1.0 - np.exp(-rate * (stopped - begin))) * np.exp(
                -rate * (times[started] - stopped))
    return level


def chosen_rate(experiments: Sequence[Experiment], grids: Sequence[np.ndarray], name: str, X: np.ndarray,
                dX: np.ndarray) -> float:
    """The grid rate of depot ``name`` whose a(t) best explains the observed rates ``dX``.

    ``grids`` are the experiments' sample times, in the row order of ``X`` (the smoothed states)
    and ``dX`` (their rates). Each state's rate is regressed on [1, X, a(t)] and the rate with the
    least summed relative residual wins.
    """
    duration = max(float(np.ptp(g)) for g in grids) or 1.0
    rates = RATE_GRID / duration
    spread = np.maximum(np.sum((dX - dX.mean(axis=0)) ** 2, axis=0), 1e-300)
    scores = []
    for rate in rates:
        level = np.concatenate([depot_levels(e, name, rate, g) for e, g in zip(experiments, grids)])
        design = np.column_stack([np.ones(len(X)), X, level])
        coefficients = np.linalg.lstsq(design, dX, rcond=None)[0]
        scores.append(float(np.sum(np.sum((dX - design @ coefficients) ** 2, axis=0) / spread)))
    return float(rates[int(np.argmin(scores))])

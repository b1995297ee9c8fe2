"""Fragile candidates: models whose trajectories blow up when started near where the data start.

Discovery refits every candidate with each experiment's initial state free, so a candidate is
only ever solved from its own fitted start. A structure can fit the data from there and still
blow up, or stall the solver, from a start a few percent away: a spurious unstable direction
that the fitted path happens to avoid, or a pole of a rational or exponential term just off it.
Such a model fails on its first use, predicting the very experiment it was fitted to from the
measured start (ODEBench's reconstruction score does exactly that). It is not trusted:

    fragile(m)  <=>  some solve from x0 in S_e fails, for some experiment e,

where S_e holds the first measured values (the fitted start where a value is missing) and
:data:`DRAWS` starts x0_i = x0_fit * exp(PERTURBATION * s_i) with random signs s_i in {-1, +1}^n
(a multiplicative change keeps a positive state positive). The choice then goes to the best
candidate that is not fragile (see :func:`robust_choice`).
"""

from __future__ import annotations

import numpy as np

from biotwin.data import Dataset
from biotwin.discover.select import Candidate, Candidates, choose

#: Relative size of the start perturbations: twice the 5% noise of the data discovery meets.
PERTURBATION = 0.1
#: Perturbed starts per experiment, besides the measured one.
DRAWS = 4
#: Candidates checked, best first, before giving up and keeping the criterion's choice.
MAX_CHECKED = 6


def perturbed_starts(candidate: Candidate, dataset: Dataset, seed: int = 0) -> np.ndarray:
    """Starts per experiment (experiments x (1 + DRAWS) x states): measured, then perturbed fitted ones."""
    rng = np.random.default_rng(seed)
    states = candidate.model.states
    starts = []
    for experiment in dataset:
        fitted = np.array([candidate.fit.initial[experiment.name][s] for s in states])
        measured = fitted.copy()
        for k, state in enumerate(states):
            if state in experiment.observables:
                first = experiment.values[0, experiment.observables.index(state)]
                measured[k] = first if np.isfinite(first) else fitted[k]
        signs = rng.choice([-1.0, 1.0], size=(DRAWS, len(states)))
        starts.append(np.vstack([measured, fitted * np.exp(PERTURBATION * signs)]))
    return np.stack(starts)


def fragile(candidate: Candidate, dataset: Dataset, seed: int = 0) -> bool:
    """Whether a solve of ``candidate`` over any experiment's times fails from one of its :func:`perturbed_starts`."""
    from biotwin.likelihood import stacked_plans
    from biotwin.simulate import OK, Plan, solve_batch

    model = candidate.model
    starts = perturbed_starts(candidate, dataset, seed)
    n_experiments, per_experiment, _ = starts.shape
    names = model.parameter_names
    thetas = []
    for experiment in dataset:
        thetas.append(model.parameter_vector({k: v for k, v in experiment.overrides.items() if k in names}))
    theta = np.repeat(np.array(thetas), per_experiment, axis=0)
    plans = stacked_plans(model, dataset)
    plan = Plan(*(np.repeat(np.asarray(a), per_experiment, axis=0) for a in plans))
    _, _, status, _ = solve_batch(model, theta, starts.reshape(n_experiments * per_experiment, -1), plan)
    return bool(np.any(np.asarray(status) != OK))


def robust_choice(candidates: Candidates, dataset: Dataset, seed: int = 0) -> Candidates:
    """``candidates`` with the choice moved off fragile candidates (checked best first, at most MAX_CHECKED).

    When every candidate checked is fragile, the criterion's own choice stands: a fragile model
    is still the best description of the data on hand.
    """
    excluded: set[int] = set()
    current = candidates
    for _ in range(MAX_CHECKED):
        if not fragile(current.chosen, dataset, seed):
            return current
        excluded.add(current.chosen_index)
        if len(excluded) == len(candidates.candidates):
            break
        current = choose(candidates.candidates, candidates.criterion, excluded=frozenset(excluded))
    return candidates

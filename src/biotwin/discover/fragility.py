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

Every candidate is solved as the refitter's library model with its own coefficients (the other
terms at zero): one compilation serves every candidate checked, and the experiments' plans and
parameter overrides are the refit's own.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping

import numpy as np

from biotwin.discover.select import Candidate, Candidates, Refitter, choose

#: Relative size of the start perturbations: twice the 5% noise of the data discovery meets.
PERTURBATION = 0.1
#: Perturbed starts per experiment, besides the measured one.
DRAWS = 4
#: Candidates checked, best first, before giving up and keeping the criterion's choice.
MAX_CHECKED = 10


def perturbed_starts(refitter: Refitter, candidate: Candidate, seed: int = 0) -> np.ndarray:
    """Starts per experiment (experiments x (1 + DRAWS) x states): measured, then perturbed fitted ones.

    The measured start is the refit's own initial guess (each state's first measurement); a
    value it lacks is the fitted one.
    """
    problem = refitter.problem
    states = problem.model.states
    fitted = np.array([[candidate.fit.initial[e.name][s] for s in states] for e in problem.dataset])
    measured = problem.initial_guess()
    measured = np.where(np.isfinite(measured), measured, fitted)
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(len(fitted), DRAWS, len(states)))
    return np.concatenate([measured[:, None, :], fitted[:, None, :] * np.exp(PERTURBATION * signs)], axis=1)


def fragile(refitter: Refitter, candidate: Candidate, seed: int = 0) -> bool:
    """Whether a solve of ``candidate`` over any experiment's times fails from one of its :func:`perturbed_starts`."""
    from biotwin.simulate import OK, Plan, solve_batch

    padded = refitter.problem.padded()
    starts = perturbed_starts(refitter, candidate, seed)
    n_experiments, per_experiment, n_states = starts.shape
    thetas = np.where(padded.override_mask, padded.override_value, refitter.library_parameters(candidate))
    plan = Plan(*(np.repeat(np.asarray(a), per_experiment, axis=0) for a in padded.plans))
    # The refit's explicit method, without the implicit fallback: a start from which it runs out of
    # steps is as fragile as one that blows up (compiling the fallback only to say so took up to
    # minutes of a discovery).
    _, _, status, _ = solve_batch(refitter.problem.model, np.repeat(thetas, per_experiment, axis=0),
                                  starts.reshape(n_experiments * per_experiment, n_states), plan,
                                  method=refitter.problem.method)
    return bool(np.any(np.asarray(status) != OK))


def robust_choice(candidates: Candidates, refitter_of: Callable[[Candidate], Refitter], seed: int = 0,
                  verdicts: MutableMapping[Candidate, bool] | None = None) -> Candidates:
    """``candidates`` with the choice moved off fragile candidates (checked best first, at most MAX_CHECKED).

    ``refitter_of`` gives the refitter that fitted a candidate. When every candidate checked is
    fragile, the criterion's own choice stands: a fragile model is still the best description of
    the data on hand. ``verdicts`` holds {candidate: fragile} from earlier checks, read and filled,
    so that choosing again among more candidates does not solve the same ones twice.
    """
    verdicts = {} if verdicts is None else verdicts
    excluded: set[int] = set()
    current = candidates
    for _ in range(MAX_CHECKED):
        chosen = current.chosen
        if chosen not in verdicts:
            verdicts[chosen] = fragile(refitter_of(chosen), chosen, seed)
        if not verdicts[chosen]:
            return current
        excluded.add(current.chosen_index)
        if len(excluded) == len(candidates.candidates):
            break
        current = choose(candidates.candidates, candidates.criterion, excluded=frozenset(excluded))
    return candidates

"""The rates of every experiment in weak form, for proposing terms where derivative estimates fail.

For a test function phi_k that vanishes at both ends of its support (see
:class:`~biotwin.discover.derivatives.WeakForm`), integrating dx/dt = Theta(x) xi against it
gives, by parts,

    b_k = -int phi_k'(t) x(t) dt  =  int phi_k(t) Theta(x(t)) dt xi  =  G_k xi,

where b uses the *measured* x (a linear functional: noise averages out over the support instead
of being differentiated) and G the library on the *smoothed* states at the measurement times.
A smoother that cannot tell a small fast oscillation from noise (ODEBench 51, two angles that
rotate with a wobble sin(x_1) cos(x_0) the size of the noise) returns derivatives without it,
on which the true pair of terms fits worse than polynomials do; in weak form the same pair is
the best one (residual 1.48 against 5.25 for the best single term and 7.38 on the derivatives).

Rows are stacked over the experiments that measured every observable; an experiment with 10
complete time points or fewer adds none (the default test functions, 5 sampling intervals wide
on each side, would not fit in it; see :func:`~biotwin.discover.derivatives.weak_form`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from biotwin.discover.derivatives import Smooth, WeakForm, weak_form
from biotwin.errors import DataError

#: Fewest weak-form rows for which subsets are proposed (a pair and its BIC need a few residuals).
MIN_ROWS = 6


@dataclass(frozen=True, eq=False)
class WeakRows:
    """The weak form of each experiment's measured states (``lhs``, K x n) and what the library is
    evaluated on: each experiment's variables (smoothed states, hidden depots, inputs) at its
    measurement times, with its test functions."""

    forms: tuple[WeakForm, ...]
    variables: tuple[np.ndarray, ...]
    lhs: np.ndarray

    @property
    def independent_rows(self) -> float:
        """How many rows carry independent noise: the disjoint supports, span / (2 width) per
        experiment. Neighbouring test functions share most of their support, so counting every row
        in an information criterion would let each extra term buy too much."""
        return float(sum((form.times[-1] - form.times[0]) / (2.0 * form.width) for form in self.forms))

    def project(self, evaluate: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """G = V Theta (K x L) for a library's ``evaluate`` (variables (T, V) -> columns (T, L))."""
        return np.concatenate([form.project(evaluate(x)) for form, x in zip(self.forms, self.variables)])


def weak_rows(
    experiments: Sequence[Any],
    smooths: dict[tuple[str, str], Smooth],
    states: Sequence[str],
    variables: Callable[[Any, np.ndarray, np.ndarray], np.ndarray],
    known_rates: Callable[[Any, np.ndarray], np.ndarray],
) -> WeakRows | None:
    """The weak-form rows of ``experiments`` (each measured every state), or None when fewer than
    :data:`MIN_ROWS` can be formed.

    ``variables(experiment, states_at_t, t)`` gives the library's variables at times t from the
    smoothed states there; ``known_rates(experiment, t)`` the part of each state's rate the design
    explains (an infusion), which is taken off b.
    """
    forms, values, lhs = [], [], []
    for experiment in experiments:
        measured = np.column_stack([experiment.values[:, experiment.observables.index(s)] for s in states])
        complete = np.all(np.isfinite(measured), axis=1)
        t = experiment.times[complete]
        try:
            form = weak_form(t)
        except DataError:
            continue
        smoothed = np.column_stack([smooths[experiment.name, s].value(t) for s in states])
        forms.append(form)
        values.append(variables(experiment, smoothed, t))
        lhs.append(form.lhs(measured[complete]) - form.project(known_rates(experiment, t)))
    if not forms or sum(len(b) for b in lhs) < MIN_ROWS:
        return None
    return WeakRows(tuple(forms), tuple(values), np.concatenate(lhs))

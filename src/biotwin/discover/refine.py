"""The numbers inside a few library terms fitted on the rate estimates.

A library offers a saturating law only at grid constants: S/(K + S) for K on a grid of ratio
about 2.5 between neighbours. When the true K falls between two grid points, the nearest one
fits the trajectories so much worse (on S' = -1.5 S/(1.1 + S) at 5 % noise, BIC -456 with
K = 1.6 against -498 for a three-term look-alike) that the right mechanism is never chosen, so
never tuned on the trajectories either. For the one- and two-term supports of best-subset
selection the numbers are therefore first fitted on the rates, where it costs milliseconds.

With the support's terms theta_j(x; kappa) and the rate estimates r at the sample states,

    min over kappa of || r - Theta(kappa) c(kappa) ||^2,   c(kappa) = argmin_c || r - Theta(kappa) c ||^2,

the coefficients c eliminated by least squares for each kappa (variable projection). Each number
kappa_i moves within a factor :data:`~biotwin.discover.select.INNER_RANGE` of its grid value and
keeps its sign, the bounds the trajectory tuning uses; it is optimised as log(kappa_i / grid
value) by SciPy's bounded trust-region least squares. The fitted numbers are written with four
significant digits, so that the refined term reads like a library term.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np
import sympy
from scipy.optimize import least_squares

from biotwin.discover.select import INNER_RANGE

#: Significant digits of a refined number.
DIGITS = 4


def refine(terms: Sequence[sympy.Expr], variables: Sequence[str], X: np.ndarray, rates: np.ndarray,
           fixed: Collection[sympy.Expr] = ()) -> tuple[tuple[sympy.Expr, ...], np.ndarray] | None:
    """``terms`` with the numbers inside them fitted to ``rates`` (m,) at the states ``X`` (m, n),
    whose columns are ``variables``, and the terms' least-squares coefficients. The numbers in
    ``fixed`` terms (ones a user wrote) stay as they are.

    None when the terms hold no free number, when a fit is not finite, or when fitting the
    numbers does not lower the residual.
    """
    numbers = sorted({f for t in terms if t not in fixed for f in t.atoms(sympy.Float)}, key=float)
    if not numbers:
        return None
    kappa = [sympy.Symbol(f"_kappa{i}") for i in range(len(numbers))]
    general = [t if t in fixed else t.xreplace(dict(zip(numbers, kappa))) for t in terms]
    function = sympy.lambdify([*(sympy.Symbol(v) for v in variables), *kappa], general, modules="numpy")
    start = np.array([float(f) for f in numbers])
    m = X.shape[0]

    def fit(log_ratio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(all="ignore"):
            columns = function(*X.T, *(start * np.exp(log_ratio)))
        theta = np.column_stack([np.broadcast_to(np.asarray(c, dtype=float), (m,)) for c in columns])
        if not np.all(np.isfinite(theta)):
            return np.full(m, 1e10), np.zeros(len(terms))
        coefficients = np.linalg.lstsq(theta, rates, rcond=None)[0]
        return rates - theta @ coefficients, coefficients

    limit = math.log(INNER_RANGE)
    first, _ = fit(np.zeros(len(numbers)))
    result = least_squares(lambda u: fit(u)[0], np.zeros(len(numbers)), bounds=(-limit, limit), method="trf")
    fitted = [sympy.Float(float(f"{v:.{DIGITS}g}")) for v in start * np.exp(result.x)]
    refined = tuple(t.xreplace(dict(zip(kappa, fitted))) for t in general)
    residual, coefficients = fit(np.log(np.array([float(v) for v in fitted]) / start))
    if not np.all(np.isfinite(residual)) or residual @ residual >= first @ first:
        return None
    return refined, coefficients

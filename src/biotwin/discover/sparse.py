"""Sparse regression with the sparsity chosen from the data, not a hand-tuned threshold.

For one state, sparse regression looks for few columns of a library matrix Theta (m, L) that
explain the target y (m,):

    y ~ Theta xi,    xi mostly zero.

Rows may be derivative estimates at sample times or weak-form integrals over test functions; they
are not assumed time-ordered. Optional ``groups`` (m,) give each row the id of a contiguous time
window (or experiment), used to hold out whole windows in cross-validation and to resample whole
windows in bagging.

Method
------
1. **Scaling.** Columns are scaled to unit norm and y to unit norm, so a threshold compares
   terms on one footing whatever their units (Lotka-Volterra's 0.075 x y is not "small"):
   A = Theta D^-1, b = y / ||y||, D = diag(||Theta_k||); coefficients are unscaled at the end,
   xi_k = c_k ||y|| / ||Theta_k||. Columns that are zero everywhere are never used.
2. **STLSQ** (sequentially thresholded least squares) at threshold lambda: ridge-solve
   (A_S^T A_S + alpha I) c = A_S^T b on the active set S, drop the terms with |c_k| < lambda,
   repeat until none drops. The support's coefficients are then *refit* by plain least squares
   on S (bounded least squares, :func:`scipy.optimize.lsq_linear`, when ``signs`` are given).
   The ridge is small and set by the data (``ridge="auto"``): alpha = RSS/(m - rank) of the
   least-squares fit on all allowed terms in scaled units (at least 1e-12), i.e. sigma^2/tau^2
   with the noise variance estimated and a unit prior scale for scaled coefficients. A fixed
   alpha fails one way or the other: 1e-5 hides an exact 2-term Hill model in a 160-term bio
   library (its bias swamps directions with singular values ~1e-5), 1e-10 lets noise through on
   noisy Michaelis-Menten data so the single right term is no longer on the path.
3. **Regularisation path** (:func:`path`). Every comparison |c_k| < lambda that STLSQ makes is
   the same for all lambda between two consecutive coefficient magnitudes it has seen, so the
   result is piecewise constant in lambda. The path starts at lambda = 0 (all allowed terms) and
   jumps each time to just above the smallest magnitude that the last run kept, which is the
   next lambda where the result can change. It thus visits *every* distinct support that STLSQ
   gives for lambda from 0 up to the largest scaled coefficient, without a grid to tune, and
   ends with the support of the required terms alone (possibly empty).
4. **Choice** (:func:`choose`). ``"cv"``: K-fold cross-validation (K = ``folds``, 5) over held-out
   groups. The distinct groups, in order of first appearance, go to folds 0, 1, ..., K-1, 0, 1,
   ..., so each fold holds out whole windows from all over the time course: an interpolation
   test that neighbouring, correlated rows cannot leak into. Without ``groups`` the rows, in the
   order given, are cut into 4K contiguous blocks that serve as the groups (time windows when
   rows are time-ordered, an arbitrary fixed partition otherwise). K contiguous blocks instead
   would make every fold an extrapolation, which dense collinear supports fail wildly (errors
   1e3-1e6 times the noise on a repressilator transient) so that the empty model wins; and on
   noisy Michaelis-Menten data 4K blocks choose the single right term more often. Each support
   is refit on the training rows (normal equations, fast) and scored by the mean squared error
   on the held-out rows; the mean over folds m_s and its standard error se_s are computed, and
   the **one-standard-error rule** picks the support with the fewest terms whose
   m_s <= m_best + max(se_best, 1e-20 mean(y^2)) (ties: the lower m_s): among the supports that
   predict as well as the best one within its sampling error, the simplest. The floor treats
   fits agreeing to ten digits as equal, so exact data select the sparsest exact support
   rather than the one that fits rounding errors. ``"aicc"`` and ``"bic"`` score the path's
   full-data fits, with k terms and m rows:
   AICc = m ln(RSS/m) + 2k + 2k(k+1)/(m-k-1),  BIC = m ln(RSS/m) + k ln m,
   RSS floored at 1e-20 ||y||^2 for the same reason; the minimum wins (ties: fewer terms).
5. **Bagging** (:func:`inclusion_probabilities`). Bootstrap the rows (or, with groups, whole
   groups), run path + choice on each bag, and report each term's selection frequency and the
   median of its coefficients over bags (zero in the bags that drop it, so a term selected in
   fewer than half of the bags has median zero).

Constraints from priors: ``required`` indices are never thresholded away, ``forbidden`` indices are
never used, and ``signs`` ({index: +1 or -1}) bound coefficients to that sign in every fit.
Everything is deterministic; bagging draws only from ``numpy.random.default_rng(seed)``.

Limits: the path can only offer supports that thresholding reaches. On one closed Lotka-Volterra
orbit the conserved quantity makes a cubic library nearly collinear, and some noisy bootstrap
bags lose x*y (a second initial state cures it). In a 160-term bio library a 2-term Hill model
is on the path for exact data but not at 1-2% noise; there the choice is only as good as the
candidates, and a smaller library (priors) or a trajectory-level search must help.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve
from scipy.optimize import lsq_linear

from biotwin.errors import DataError, ModelError

Criterion = Literal["cv", "aicc", "bic"]
_EXACT = 1e-20
_BLOCKS_PER_FOLD = 4
Ridge = float | Literal["auto"]


@dataclass(frozen=True, eq=False)
class Support:
    """One support of the path: the active term ``indices`` and their refit least-squares
    ``coefficients`` (L,), zero off the support; ``threshold`` is the smallest scaled lambda that
    gives it, and ``rss`` = ||Theta xi - y||^2 on the rows it was fit to."""

    indices: tuple[int, ...]
    coefficients: np.ndarray
    threshold: float
    rss: float

    def __post_init__(self) -> None:
        coefficients = np.array(self.coefficients, dtype=float)
        coefficients.setflags(write=False)
        object.__setattr__(self, "indices", tuple(int(i) for i in self.indices))
        object.__setattr__(self, "coefficients", coefficients)

    @property
    def n_terms(self) -> int:
        """Number of active terms."""
        return len(self.indices)


class Inclusion(NamedTuple):
    """Bagging result: per-term selection frequency and median coefficient over bags, both (L,)."""

    probabilities: np.ndarray
    median_coefficients: np.ndarray


@dataclass(frozen=True, eq=False)
class _Constraints:
    allowed: np.ndarray  # (L,) bool: usable terms
    required: np.ndarray  # (L,) bool
    lower: np.ndarray  # (L,) bounds for the sign constraints (scaled and unscaled alike)
    upper: np.ndarray

    @property
    def bounded(self) -> bool:
        return bool(np.any(np.isfinite(self.lower)) or np.any(np.isfinite(self.upper)))


def _constraints(
    L: int, required: Iterable[int], forbidden: Iterable[int], signs: Mapping[int, int] | None
) -> _Constraints:
    def indices(values: Iterable[int], what: str) -> set[int]:
        out = set()
        for value in values:
            i = int(value)
            if not -L <= i < L:
                raise ModelError(f"{what} term index {value} is out of range for a library of {L} terms")
            out.add(i % L)
        return out

    req = indices(required, "required")
    forb = indices(forbidden, "forbidden")
    both = sorted(req & forb)
    if both:
        raise ModelError(f"term {both[0]} is both required and forbidden; remove it from one of them")
    lower = np.full(L, -np.inf)
    upper = np.full(L, np.inf)
    for index, sign in (signs or {}).items():
        (i,) = indices((index,), "sign-constrained")
        if sign not in (1, -1):
            raise ModelError(f"sign of term {index} must be +1 or -1, got {sign!r}")
        if sign > 0:
            lower[i] = 0.0
        else:
            upper[i] = 0.0
    allowed = np.ones(L, dtype=bool)
    allowed[list(forb)] = False
    mask = np.zeros(L, dtype=bool)
    mask[list(req)] = True
    return _Constraints(allowed, mask, lower, upper)


def _check(
    Theta: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    Theta = np.asarray(Theta, dtype=float)
    y = np.asarray(y, dtype=float)
    if Theta.ndim != 2:
        raise DataError(f"Theta must be a matrix (rows, terms), got shape {Theta.shape}")
    if y.shape != (Theta.shape[0],):
        raise DataError(f"y must have shape ({Theta.shape[0]},) to match Theta's rows, got {y.shape}")
    bad = np.flatnonzero(~np.all(np.isfinite(Theta), axis=1) | ~np.isfinite(y))
    if bad.size:
        raise DataError(
            f"{bad.size} rows of Theta or y are not finite (first: row {bad[0]}); "
            "drop those rows or the terms that cause them"
        )
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != y.shape:
            raise DataError(f"groups must have shape {y.shape}, one id per row, got {groups.shape}")
    return Theta, y, groups


# ---------------------------------------------------------------------- least squares
def _solve(A: np.ndarray, b: np.ndarray, lower: np.ndarray, upper: np.ndarray, ridge: float = 0.0) -> np.ndarray:
    """argmin ||A c - b||^2 + ridge ||c||^2 subject to lower <= c <= upper."""
    k = A.shape[1]
    if k == 0:
        return np.zeros(0)
    if ridge > 0:
        A = np.vstack([A, math.sqrt(ridge) * np.eye(k)])
        b = np.concatenate([b, np.zeros(k)])
    if np.any(np.isfinite(lower)) or np.any(np.isfinite(upper)):
        return lsq_linear(A, b, bounds=(lower, upper), method="bvls").x
    return np.linalg.lstsq(A, b, rcond=None)[0]


class _Scaled(NamedTuple):
    A: np.ndarray  # (m, L) unit-norm columns (zero columns left zero)
    b: np.ndarray  # (m,) unit norm (or zero)
    column_norm: np.ndarray  # (L,), 1 for zero columns
    y_norm: float
    usable: np.ndarray  # (L,) bool: nonzero columns
    gram: np.ndarray  # (L, L) A^T A
    moment: np.ndarray  # (L,) A^T b


def _scale(Theta: np.ndarray, y: np.ndarray) -> _Scaled:
    norms = np.linalg.norm(Theta, axis=0)
    usable = norms > 0
    norms = np.where(usable, norms, 1.0)
    y_norm = float(np.linalg.norm(y))
    A = Theta / norms
    b = y / (y_norm if y_norm > 0 else 1.0)
    return _Scaled(A, b, norms, y_norm, usable, A.T @ A, A.T @ b)


def _ridge(scaled: _Scaled, idx: np.ndarray, c: _Constraints, ridge: float) -> np.ndarray:
    """Scaled ridge coefficients on the columns ``idx``: (A_S^T A_S + ridge I) c = A_S^T b."""
    if idx.size == 0:
        return np.zeros(0)
    if c.bounded:
        return _solve(scaled.A[:, idx], scaled.b, c.lower[idx], c.upper[idx], ridge)
    matrix = scaled.gram[np.ix_(idx, idx)] + ridge * np.eye(idx.size)
    try:
        return cho_solve(cho_factor(matrix), scaled.moment[idx])
    except LinAlgError:  # ridge too small for the rounding in the Gram matrix
        return _solve(scaled.A[:, idx], scaled.b, c.lower[idx], c.upper[idx], ridge)


def _refit(scaled: _Scaled, indices: Sequence[int], c: _Constraints, fast: bool = False) -> np.ndarray:
    """Unscaled coefficients (L,) of the least-squares fit on ``indices``.

    ``fast`` solves the normal equations (with a 1e-12 ridge against exact singularity) instead of
    an orthogonal factorisation: as accurate for the fitted values of well-conditioned supports,
    and several times faster for the many refits of cross-validation.
    """
    xi = np.zeros(scaled.A.shape[1])
    idx = np.asarray(indices, dtype=int)
    if idx.size == 0:
        return xi
    coef = None
    if fast and not c.bounded:
        try:
            matrix = scaled.gram[np.ix_(idx, idx)] + 1e-12 * np.eye(idx.size)
            coef = cho_solve(cho_factor(matrix), scaled.moment[idx])
        except LinAlgError:
            coef = None
    if coef is None:
        coef = _solve(scaled.A[:, idx], scaled.b, c.lower[idx], c.upper[idx])
    xi[idx] = coef * scaled.y_norm / scaled.column_norm[idx]
    return xi


def _auto_ridge(scaled: _Scaled, c: _Constraints) -> float:
    """alpha = RSS / (m - rank) of the least-squares fit on every allowed term (scaled units), >= 1e-12.

    In the Bayesian reading of ridge regression, alpha = sigma^2 / tau^2: noise variance over the
    prior variance of a coefficient. Scaled coefficients are of order one (tau = 1), and the dense
    fit's residual estimates sigma^2. Exact data thus get almost no ridge (exact sparse supports
    stay reachable in collinear libraries), noisy data a ridge matched to their noise.
    """
    idx = np.flatnonzero(c.allowed & (scaled.usable | c.required))
    if idx.size == 0:
        return 1e-12
    A = scaled.A[:, idx]
    coef, _, rank, _ = np.linalg.lstsq(A, scaled.b, rcond=None)
    rss = float(np.sum((A @ coef - scaled.b) ** 2))
    return max(1e-12, rss / max(A.shape[0] - int(rank), 1))


def _resolve_ridge(ridge: Ridge, scaled: _Scaled, c: _Constraints) -> float:
    if ridge == "auto":
        return _auto_ridge(scaled, c)
    if not isinstance(ridge, (int, float)) or not ridge >= 0:
        raise ModelError(f"ridge must be 'auto' or a number >= 0, got {ridge!r}")
    return float(ridge)


def _stlsq(scaled: _Scaled, threshold: float, c: _Constraints, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """STLSQ at ``threshold``: the final active mask, and the magnitude of every scaled
    coefficient of a droppable term that was compared with the threshold and survived."""
    active = c.allowed & (scaled.usable | c.required)
    survived: list[np.ndarray] = []
    while True:
        idx = np.flatnonzero(active)
        magnitude = np.abs(_ridge(scaled, idx, c, ridge))
        droppable = ~c.required[idx]
        small = droppable & (magnitude < threshold)
        survived.append(magnitude[droppable & ~small])
        if not small.any():
            return active, np.concatenate(survived)
        active[idx[small]] = False


def stlsq(
    Theta: np.ndarray,
    y: np.ndarray,
    threshold: float,
    *,
    required: Iterable[int] = (),
    forbidden: Iterable[int] = (),
    signs: Mapping[int, int] | None = None,
    ridge: Ridge = "auto",
) -> Support:
    """STLSQ at one ``threshold`` on the scaled coefficients, the support refit by least squares."""
    Theta, y, _ = _check(Theta, y)
    c = _constraints(Theta.shape[1], required, forbidden, signs)
    scaled = _scale(Theta, y)
    active, _ = _stlsq(scaled, float(threshold), c, _resolve_ridge(ridge, scaled, c))
    return _support(Theta, y, scaled, np.flatnonzero(active), c, threshold)


def _support(
    Theta: np.ndarray, y: np.ndarray, scaled: _Scaled, idx: np.ndarray, c: _Constraints, threshold: float
) -> Support:
    xi = _refit(scaled, idx, c)
    rss = float(np.sum((Theta @ xi - y) ** 2))
    return Support(tuple(int(i) for i in idx), xi, float(threshold), rss)


def path(
    Theta: np.ndarray,
    y: np.ndarray,
    *,
    required: Iterable[int] = (),
    forbidden: Iterable[int] = (),
    signs: Mapping[int, int] | None = None,
    ridge: Ridge = "auto",
) -> list[Support]:
    """Every distinct STLSQ support for thresholds from 0 upwards, densest first.

    Each :class:`Support` holds the least-squares refit on all rows and the smallest threshold
    that gives it; the last one is the required terms alone (possibly empty).
    """
    Theta, y, _ = _check(Theta, y)
    L = Theta.shape[1]
    c = _constraints(L, required, forbidden, signs)
    scaled = _scale(Theta, y)
    supports: list[Support] = []
    seen: set[tuple[int, ...]] = set()
    threshold = 0.0
    alpha = _resolve_ridge(ridge, scaled, c)
    for _ in range(50 * L + 10):  # a safety net: the path ends long before
        active, survived = _stlsq(scaled, threshold, c, alpha)
        idx = tuple(int(i) for i in np.flatnonzero(active))
        if idx not in seen:
            seen.add(idx)
            supports.append(_support(Theta, y, scaled, np.array(idx, dtype=int), c, threshold))
        if survived.size == 0:
            break
        # The next breakpoint: just above the smallest magnitude that survived a comparison.
        threshold = float(np.nextafter(np.min(survived) * (1 + 1e-12), np.inf))
    only = np.flatnonzero(c.required)
    if tuple(only) not in seen:
        supports.append(_support(Theta, y, scaled, only, c, math.inf))
    return supports


#: Columns whose norm falls below this after projecting others out are copies of them.
_COPY = 1e-8


def _best_pair(gram: np.ndarray, moment: np.ndarray, lower: np.ndarray, upper: np.ndarray,
               usable: np.ndarray) -> tuple[float, tuple[int, int] | None]:
    """The pair of unit-norm columns whose fit explains most of the target, and how much: with
    r = a_i . a_j and m_i = a_i . b, (m_i^2 + m_j^2 - 2 r m_i m_j) / (1 - r^2). Pairs outside
    ``usable`` or too close to one column twice, and fits breaking the bounds, are skipped."""
    r = np.clip(gram, -1.0, 1.0)
    apart = 1.0 - r**2
    safe = np.where(apart > 2 * _COPY, apart, 1.0)
    first = (moment[:, None] - r * moment[None, :]) / safe
    # first[i, j]: term i's coefficient in the pair (i, j); term j's is first[j, i].
    obeys = ((first >= lower[:, None]) & (first <= upper[:, None])
             & (first.T >= lower[None, :]) & (first.T <= upper[None, :]))
    valid = np.triu(apart > 2 * _COPY, 1) & obeys & usable[:, None] & usable[None, :]
    explained = np.where(valid, (moment[:, None] ** 2 + moment[None, :] ** 2 - 2 * r * np.outer(moment, moment)) / safe,
                         -np.inf)
    if explained.size == 0:
        return -math.inf, None
    best = np.unravel_index(int(np.argmax(explained)), explained.shape)
    return float(explained[best]), (int(best[0]), int(best[1])) if np.isfinite(explained[best]) else None


def best_subsets(
    Theta: np.ndarray,
    y: np.ndarray,
    sizes: Sequence[int] = (1, 2),
    *,
    required: Iterable[int] = (),
    forbidden: Iterable[int] = (),
    signs: Mapping[int, int] | None = None,
) -> list[Support]:
    """For each size k in ``sizes`` (1, 2 or 3), the k allowed terms (beside the required ones)
    whose least-squares fit leaves the smallest residual: exhaustive best-subset selection.

    Thresholding cannot offer these when the library holds near-copies of the right term: on
    noisy Michaelis-Menten data the rational library's path jumps from ten terms to none, never
    through the single S/(K + S). The search is exact and cheap on unit-norm columns. The
    required terms are first projected out of the target and of every column (the
    Frisch-Waugh-Lovell theorem: the free terms' coefficients are then those of the joint fit);
    with columns a_i normalised again and r = a_i . a_j, m_i = a_i . b, the share of ||b||^2 that
    one term explains is m_i^2 and that a pair explains is (m_i^2 + m_j^2 - 2 r m_i m_j) / (1 - r^2).
    A triple is a first term i and the best pair once a_i is projected out, which updates the
    Gram matrix and moments in place (G - g_i g_i^T, m - g_i m_i): L pair searches of L^2 each.
    Near-copies (|r| > 1 - 1e-8) and fits whose coefficients break ``signs`` are skipped (for a
    triple, the first term's sign is left to the bounded refit). Each support is refit on all
    rows like the path's (``threshold`` is NaN: no threshold gives it); a size that no allowed
    terms can fill is left out.
    """
    Theta, y, _ = _check(Theta, y)
    L = Theta.shape[1]
    c = _constraints(L, required, forbidden, signs)
    scaled = _scale(Theta, y)
    fixed = np.flatnonzero(c.required)
    A, b = scaled.A, scaled.b
    if fixed.size:
        Q, _ = np.linalg.qr(A[:, fixed])
        A, b = A - Q @ (Q.T @ A), b - Q @ (Q.T @ b)
    norms = np.linalg.norm(A, axis=0)
    free = np.flatnonzero(c.allowed & scaled.usable & ~c.required & (norms > _COPY))
    A = A[:, free] / norms[free]
    moment, gram = A.T @ b, A.T @ A
    lower, upper = c.lower[free], c.upper[free]
    everywhere = np.ones(free.size, dtype=bool)
    supports = []
    for size in sizes:
        pick: tuple[int, ...] | None = None
        if size == 1:
            explained = np.where((moment >= lower) & (moment <= upper), moment**2, -np.inf)
            if free.size and np.isfinite(explained.max()):
                pick = (int(np.argmax(explained)),)
        elif size == 2:
            pick = _best_pair(gram, moment, lower, upper, everywhere)[1]
        elif size == 3:
            most = -math.inf
            for i in range(free.size - 2):
                rest = slice(i + 1, None)  # each triple once, its terms in increasing order
                g = gram[i, rest]
                rest_gram = gram[rest, rest] - np.outer(g, g)
                rest_moment = moment[rest] - g * moment[i]
                length = np.sqrt(np.clip(np.diag(rest_gram), 0.0, None))
                usable = length > _COPY
                scale = np.where(usable, length, 1.0)
                share, pair = _best_pair(rest_gram / np.outer(scale, scale), rest_moment / scale, lower[rest],
                                         upper[rest], usable)
                if pair is not None and moment[i] ** 2 + share > most:
                    most, pick = moment[i] ** 2 + share, (i, i + 1 + pair[0], i + 1 + pair[1])
        else:
            raise ModelError(f"best-subset sizes are 1, 2 or 3, got {size}")
        if pick is not None:
            idx = np.array(sorted({*fixed.tolist(), *(int(free[i]) for i in pick)}), dtype=int)
            supports.append(_support(Theta, y, scaled, idx, c, math.nan))
    return supports


# ---------------------------------------------------------------------- choice
def _blocks(m: int, folds: int) -> np.ndarray:
    """Block id of each of m rows: 4K contiguous blocks of near-equal size (fewer if m is small)."""
    return np.arange(m) * min(m, _BLOCKS_PER_FOLD * folds) // m


def _ranks(groups: np.ndarray) -> np.ndarray:
    """Each row's group as its position in the order of first appearance (0, 1, ...)."""
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse.ravel()]


def _folds(m: int, groups: np.ndarray | None, folds: int) -> np.ndarray:
    """Fold id of each row: groups (or contiguous blocks) dealt round-robin to the folds."""
    if folds < 2:
        raise ModelError(f"cross-validation needs folds >= 2, got {folds}")
    if groups is None:
        if m < 2:
            raise DataError(f"cross-validation needs at least 2 rows, got {m}; use criterion='aicc'")
        groups = _blocks(m, folds)
    rank = _ranks(groups)
    n_groups = int(rank.max()) + 1 if rank.size else 0
    if n_groups < 2:
        raise DataError("cross-validation needs at least 2 distinct groups; give more groups or use criterion='aicc'")
    return rank % min(folds, n_groups)


def cv_errors(
    supports: Sequence[Support],
    Theta: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    folds: int = 5,
    signs: Mapping[int, int] | None = None,
) -> np.ndarray:
    """Held-out mean squared error of each support's refit, per fold: shape (n_supports, K)."""
    Theta, y, groups = _check(Theta, y, groups)
    c = _constraints(Theta.shape[1], (), (), signs)
    fold = _folds(len(y), groups, folds)
    K = int(fold.max()) + 1
    errors = np.empty((len(supports), K))
    for k in range(K):
        train, test = fold != k, fold == k
        scaled = _scale(Theta[train], y[train])
        for s, support in enumerate(supports):
            xi = _refit(scaled, support.indices, c, fast=True)
            errors[s, k] = np.mean((Theta[test] @ xi - y[test]) ** 2)
    return errors


def choose(
    supports: Sequence[Support],
    Theta: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | None = None,
    criterion: Criterion = "cv",
    *,
    folds: int = 5,
    signs: Mapping[int, int] | None = None,
) -> Support:
    """The support of a path chosen by ``criterion`` (``"cv"``, ``"aicc"`` or ``"bic"``).

    ``"cv"`` uses held-out groups and the one-standard-error rule towards fewer terms; ``"aicc"``
    and ``"bic"`` use each support's RSS on all rows (see the module docstring). ``signs`` must be
    those the path was built with, so that the fold refits obey them too.
    """
    if criterion not in ("cv", "aicc", "bic"):
        raise ModelError(f"unknown criterion {criterion!r}; use 'cv', 'aicc' or 'bic'")
    if not supports:
        raise ModelError("the path is empty; there is no support to choose")
    Theta, y, groups = _check(Theta, y, groups)
    n_terms = np.array([s.n_terms for s in supports])
    if criterion == "cv":
        errors = cv_errors(supports, Theta, y, groups, folds=folds, signs=signs)
        mean = errors.mean(axis=1)
        K = errors.shape[1]
        se = errors.std(axis=1, ddof=1) / math.sqrt(K) if K > 1 else np.zeros(len(supports))
        best = int(np.argmin(mean))
        tolerance = max(float(se[best]), _EXACT * float(np.mean(y**2)))
        within = np.flatnonzero(mean <= mean[best] + tolerance)
        pick = min(within, key=lambda s: (n_terms[s], mean[s]))
        return supports[int(pick)]
    m = len(y)
    rss = np.maximum([s.rss for s in supports], max(_EXACT * float(np.sum(y**2)), np.finfo(float).tiny))
    fit = m * np.log(rss / m)
    if criterion == "bic":
        score = fit + n_terms * math.log(m)
    else:
        dof = m - n_terms - 1
        correction = np.where(dof > 0, 2 * n_terms * (n_terms + 1) / np.maximum(dof, 1), np.inf)
        score = fit + 2 * n_terms + correction
    pick = min(range(len(supports)), key=lambda s: (score[s], n_terms[s]))
    return supports[pick]


def select(
    Theta: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | None = None,
    criterion: Criterion = "cv",
    *,
    required: Iterable[int] = (),
    forbidden: Iterable[int] = (),
    signs: Mapping[int, int] | None = None,
    ridge: Ridge = "auto",
    folds: int = 5,
) -> Support:
    """The automatically chosen sparse fit: :func:`choose` over :func:`path`."""
    supports = path(Theta, y, required=required, forbidden=forbidden, signs=signs, ridge=ridge)
    return choose(supports, Theta, y, groups, criterion, folds=folds, signs=signs)


def inclusion_probabilities(
    Theta: np.ndarray,
    y: np.ndarray,
    n_bags: int = 50,
    seed: int = 0,
    *,
    groups: np.ndarray | None = None,
    criterion: Criterion = "cv",
    required: Iterable[int] = (),
    forbidden: Iterable[int] = (),
    signs: Mapping[int, int] | None = None,
    ridge: Ridge = "auto",
    folds: int = 5,
) -> Inclusion:
    """Bagged selection: the fraction of bootstrap bags in which each term is chosen, and the
    median coefficient over bags.

    Without ``groups``, a bag draws m rows with replacement (kept in their original order, each
    remembering its contiguous cross-validation block, so copies of a row never sit on both sides
    of a fold). With ``groups``, a bag draws as many groups as there are, with replacement (block
    bootstrap); copies of a group merge into one group.
    """
    Theta, y, groups = _check(Theta, y, groups)
    if n_bags < 1:
        raise ModelError(f"n_bags must be >= 1, got {n_bags}")
    required, forbidden = tuple(required), tuple(forbidden)
    _constraints(Theta.shape[1], required, forbidden, signs)  # validate once, before the bags
    m = len(y)
    rng = np.random.default_rng(seed)
    if groups is None:
        blocks = _blocks(m, folds)
    else:
        rank = _ranks(groups)
        n_groups = int(rank.max()) + 1
        members = [np.flatnonzero(rank == g) for g in range(n_groups)]
    coefficients = np.zeros((n_bags, Theta.shape[1]))
    selected = np.zeros((n_bags, Theta.shape[1]), dtype=bool)
    for bag in range(n_bags):
        for _ in range(100):
            if groups is None:
                rows = np.sort(rng.integers(0, m, m))
                bag_groups = blocks[rows]
            else:
                drawn = np.sort(rng.integers(0, n_groups, n_groups))
                rows = np.concatenate([members[g] for g in drawn])
                bag_groups = rank[rows]
            if criterion != "cv" or np.unique(bag_groups).size >= 2:
                break
        else:
            raise DataError("bootstrap bags keep drawing a single group; give more groups or use criterion='aicc'")
        chosen = select(
            Theta[rows], y[rows], bag_groups, criterion,
            required=required, forbidden=forbidden, signs=signs, ridge=ridge, folds=folds,
        )
        coefficients[bag] = chosen.coefficients
        selected[bag, list(chosen.indices)] = True
    return Inclusion(selected.mean(axis=0), np.median(coefficients, axis=0))

"""Identifiability by profile likelihood: which parameters do the data determine, and how well.

For the negative log-likelihood J(x) of an :class:`~biotwin.objective.Objective` (x the estimated
parameters on their optimisation scales) with optimum x*, the *profile* of parameter k is

    PL_k(c) = min { J(x) : x_k = c, lower <= x <= upper },

the best the other parameters can do with x_k held at c. The likelihood-ratio test turns it into
a confidence interval: c belongs to the interval at level ``confidence`` when

    PL_k(c) - J(x*) <= Delta = chi2_1(confidence) / 2        (Delta = 1.92 for 95 %).

Each profile is traced from x*_k in both directions on the optimisation scale. Every point is
re-optimised, warm-started from the previous point extrapolated along the path (the secant
through the last two points, a predictor-corrector continuation), with exact JAX derivatives,
by the bounded local minimiser of :mod:`biotwin.optimise` (a trust region with the Gauss-Newton
Hessian of the residuals when the objective has them, J = 1/2 |r|^2 + const, for 20 iterations
and BFGS after, BFGS on J's gradient otherwise). The step adapts to the
profile: it doubles while J changes by less than Delta/10 between points, halves when it changes
by more than 0.4 Delta, and a step that jumps by more than Delta is taken again at half length.
A side ends when the profile exceeds Delta (the interval end is then interpolated linearly in
sqrt(PL - J*), which is exact for a quadratic profile), at the parameter's bound (an *open* end:
the data do not bound the parameter there), or when the step budget is spent. A crossing at a
point where another parameter sits on its bound is marked ``other bound``: the interval end is
then the box's, not the data's (with a free partner the profile would have stayed lower).

Verdicts, with rise(c) = PL_k(c) - J(x*):

* **structurally non-identifiable**: the profile is flat, |rise| < ``flat_tolerance`` * Delta at
  every point explored. Points where another parameter sits on its bound are left out of this
  test: there the box, not the data, holds the profile up (the profile of a in a model that sees
  only a*b rises once b reaches its bound). The Fisher information H at the optimum (the
  Gauss-Newton Hessian J_r^T J_r of the residuals; without residuals the Hessian of J by
  differences of its exact gradient) is reported to confirm it: its rank
  (:attr:`Profiles.fisher_rank`) is below the number of parameters, and the curvature of the
  profile at the optimum, the Schur complement c_k = H_kk - H_k,o H_oo^+ H_o,k, is zero.
* **identifiable**: the profile crosses Delta on both sides, with the other parameters free;
  the interval is finite and set by the data.
* **practically non-identifiable**: the profile rises, but on at least one side it stays below
  Delta up to the bound (or the step budget), or crosses it only against another parameter's
  bound: the data leave the interval open there.

The Wald interval from the same Hessian, x*_k -/+ sqrt(2 Delta / c_k) (the quadratic
approximation of the profile, PL_k ~ J* + c_k (x_k - x*_k)^2 / 2), is reported beside each
profile: the two agree when the profile is quadratic, and the profile is right when they do not.
(For an estimated noise scale the Gauss-Newton curvature is only approximate, so its Wald
interval comes out wider than its profile's.)

Should the optimiser find a lower J along a profile than J(x*), the given point was not the
optimum: :class:`Profiles` keeps the better point and sets ``improved``; profile again from it.

Fixing x_k is data, not structure: J, the residuals, their Jacobian and J's gradient are
compiled once for the full vector x (and kept with the objective for later calls), and the
optimiser sees the free entries through an index array, so every parameter's profile reuses one
compilation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from biotwin.errors import ModelError
from biotwin.objective import Objective, from_scale
from biotwin.optimise import Minimiser, minimiser
from biotwin.progress import Progress

#: The verdicts, from best to worst determined.
IDENTIFIABLE = "identifiable"
PRACTICAL = "practically non-identifiable"
STRUCTURAL = "structurally non-identifiable"
VERDICTS = (IDENTIFIABLE, PRACTICAL, STRUCTURAL)

#: Why one side of a profile ended: it crossed Delta; it crossed Delta only because another
#: parameter sits on its bound there; it reached its own bound below Delta; the step budget ran
#: out; the re-optimisation failed (the model could not be solved there).
THRESHOLD, OTHER_BOUND, BOUND, STEPS, FAILED = "threshold", "other bound", "bound", "steps", "failed"

#: A profile whose rise stays below this fraction of Delta is flat (1e-3 of 1.92: 0.002 in J,
#: far below what noise in the data can show, far above the optimiser's tolerance).
FLAT_TOLERANCE = 1e-3
#: Another parameter within this fraction of its range from a bound sits on it.
PINNED_FRACTION = 1e-3
#: Eigenvalues of the scaled Fisher information below this fraction of the largest count as zero.
RANK_TOLERANCE = 1e-10



def _frozen(values: Any, dtype: type = float) -> np.ndarray:
    array = np.array(values, dtype=dtype, copy=True)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Profile:
    """The profile likelihood of one parameter, its confidence interval and its verdict.

    ``x`` (N,) are the parameter's values on its optimisation scale (ascending, the optimum
    among them), ``nll`` (N,) the profile PL(x) there and ``points`` (N, P) the re-optimised
    full parameter vectors; ``pinned`` (N,) marks points where another parameter sits on its
    bound. ``lower`` and ``upper`` are the interval's ends on the optimisation scale (-inf or
    +inf when open); ``ends`` says why each side stopped (``threshold``, ``other bound``,
    ``bound``, ``steps`` or ``failed``; see the module's docstring). ``curvature`` is the
    profile's second derivative at the optimum from the Fisher information (0 when it does not
    see the parameter). ``reference`` is J(x*) and ``threshold`` Delta.
    """

    name: str
    scale: str
    optimum: float
    x: np.ndarray
    nll: np.ndarray
    points: np.ndarray
    pinned: np.ndarray
    lower: float
    upper: float
    ends: tuple[str, str]
    verdict: str
    curvature: float
    reference: float
    threshold: float
    evaluations: int

    @property
    def rise(self) -> np.ndarray:
        """PL(x) - J(x*) at every point: the quantity compared with the threshold Delta."""
        return self.nll - self.reference

    @property
    def values(self) -> np.ndarray:
        """The profiled values on the linear scale."""
        return np.asarray(from_scale(self.x, self.scale), dtype=float)

    @property
    def interval(self) -> tuple[float, float]:
        """The likelihood-ratio confidence interval on the linear scale (an open end is 0 or +/-inf)."""
        return float(from_scale(self.lower, self.scale)), float(from_scale(self.upper, self.scale))

    @property
    def wald(self) -> tuple[float, float]:
        """The Wald interval x* -/+ sqrt(2 Delta / curvature) on the optimisation scale, given on the linear scale.

        Unbounded (0 below on a log scale) when the Fisher information does not see the parameter.
        """
        half = math.sqrt(2 * self.threshold / self.curvature) if self.curvature > 0 else math.inf
        return float(from_scale(self.optimum - half, self.scale)), float(from_scale(self.optimum + half, self.scale))

    @property
    def identifiable(self) -> bool:
        return self.verdict == IDENTIFIABLE


@dataclass(frozen=True, eq=False)
class Profiles:
    """Profiles of the estimated parameters of one objective around one optimum.

    ``best_x`` and ``best_nll`` are the optimum they start from; ``threshold`` is
    Delta = chi2_1(confidence)/2. ``fisher_rank`` is the rank of the Fisher information
    (Gauss-Newton Hessian) at ``best_x`` out of ``len(names)``. When a profile found a lower J
    than ``best_nll`` by more than the flat tolerance, ``improved`` is true and ``better_x``,
    ``better_nll`` hold the best point seen: the given fit was not the optimum.
    """

    profiles: tuple[Profile, ...]
    names: tuple[str, ...]
    best_x: np.ndarray
    best_nll: float
    confidence: float
    threshold: float
    fisher_rank: int
    better_x: np.ndarray | None = None
    better_nll: float | None = None

    @property
    def improved(self) -> bool:
        """Whether a profile found a better optimum than the one given."""
        return self.better_x is not None

    def __getitem__(self, name: str) -> Profile:
        for profile in self.profiles:
            if profile.name == name:
                return profile
        from biotwin.model import Model

        raise ModelError(Model.unknown_message("profiled parameter", name, [p.name for p in self.profiles]))

    def __iter__(self) -> Iterator[Profile]:
        return iter(self.profiles)

    def __len__(self) -> int:
        return len(self.profiles)

    @property
    def verdicts(self) -> dict[str, str]:
        return {p.name: p.verdict for p in self.profiles}

    def summary(self) -> list[dict[str, Any]]:
        """One row per parameter: estimate, interval (linear scale), Wald interval, verdict."""
        rows = []
        for p in self.profiles:
            rows.append({
                "parameter": p.name, "estimate": float(from_scale(p.optimum, p.scale)),
                "lower": p.interval[0], "upper": p.interval[1], "wald_lower": p.wald[0], "wald_upper": p.wald[1],
                "verdict": p.verdict,
            })
        return rows


def threshold(confidence: float) -> float:
    """Delta = chi2_1(confidence) / 2, the rise of the profile at the ends of the interval."""
    from scipy.stats import chi2

    return float(chi2.ppf(confidence, 1) / 2)


def profile(
    objective: Objective,
    best_x: Sequence[float] | np.ndarray,
    *,
    parameters: Sequence[str] | None = None,
    confidence: float = 0.95,
    max_points: int = 40,
    flat_tolerance: float = FLAT_TOLERANCE,
    max_evaluations: int = 200,
    progress: Progress | None = None,
) -> Profiles:
    """Profile likelihoods of ``parameters`` (default: all estimated) around the optimum ``best_x``.

    ``best_x`` is on the optimisation scale (as fitted). Each side of a profile takes at most
    ``max_points`` points, each re-optimised with at most ``max_evaluations`` evaluations.
    ``progress(done, total, name)``, when given, is called after each parameter (see
    :func:`rich_progress` for a progress bar). Verdicts and intervals are described in the
    module's docstring.
    """
    names = tuple(parameters) if parameters is not None else objective.names
    for name in names:
        if name not in objective.names:
            from biotwin.model import Model

            raise ModelError(Model.unknown_message("estimated parameter", name, objective.names))
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ModelError(f"parameter '{repeated[0]}' is listed twice in parameters; list each once")
    if not 0 < confidence < 1:
        raise ModelError(f"confidence must lie between 0 and 1 (e.g. 0.95), got {confidence}")
    x0 = np.array(best_x, dtype=float)
    if x0.shape != (objective.size,):
        raise ModelError(f"best_x has shape {x0.shape}; give one value per estimated parameter ({objective.size})")
    lower, upper = np.asarray(objective.lower, dtype=float), np.asarray(objective.upper, dtype=float)
    outside = np.flatnonzero((x0 < lower) | (x0 > upper) | ~np.isfinite(x0))
    if outside.size:
        k = int(outside[0])
        raise ModelError(
            f"best_x puts '{objective.names[k]}' at {x0[k]} (optimisation scale), outside its bounds "
            f"[{lower[k]}, {upper[k]}]; pass the fitted vector on the optimisation scale"
        )

    delta = threshold(confidence)
    engine = minimiser(objective)
    reference = engine.value(x0)
    if not math.isfinite(reference):
        raise ModelError("the objective is not finite at best_x; profile from a successful fit")
    hessian = engine.hessian(x0)
    tracer = _Tracer(objective, engine, x0, reference, delta, max_points, flat_tolerance, max_evaluations)
    profiles = []
    for done, name in enumerate(names, start=1):
        k = objective.names.index(name)
        profiles.append(tracer.trace(k, _profile_curvature(hessian, k)))
        if progress is not None:
            progress(done, len(names), name)

    better = None
    if tracer.best_nll < reference - flat_tolerance * delta:
        better = _frozen(tracer.best_x)
    return Profiles(
        profiles=tuple(profiles), names=objective.names, best_x=_frozen(x0), best_nll=reference,
        confidence=confidence, threshold=delta, fisher_rank=fisher_rank(hessian),
        better_x=better, better_nll=tracer.best_nll if better is not None else None,
    )


def fisher_rank(hessian: np.ndarray) -> int:
    """Rank of the Fisher information H, scaled to unit diagonal so that units do not matter.

    An eigenvalue of D H D (D = diag(H_kk)^-1/2) below RANK_TOLERANCE times the largest counts
    as zero; a parameter with H_kk = 0 (no effect on the data) adds a zero.
    """
    diagonal = np.diag(hessian)
    d = np.where(diagonal > 0, 1 / np.sqrt(np.where(diagonal > 0, diagonal, 1.0)), 0.0)
    eigenvalues = np.linalg.eigvalsh(d[:, None] * hessian * d[None, :])
    largest = float(np.max(eigenvalues, initial=0.0))
    return int(np.sum(eigenvalues > RANK_TOLERANCE * largest)) if largest > 0 else 0


def _profile_curvature(hessian: np.ndarray, k: int) -> float:
    """d^2 PL_k / dx_k^2 at the optimum: the Schur complement H_kk - H_k,o H_oo^+ H_o,k (0 when flat)."""
    others = [j for j in range(hessian.shape[0]) if j != k]
    h_kk = float(hessian[k, k])
    if h_kk <= 0:
        return 0.0
    if not others:
        return h_kk
    h_ko = hessian[k, others]
    schur = h_kk - float(h_ko @ np.linalg.pinv(hessian[np.ix_(others, others)], rcond=1e-12, hermitian=True) @ h_ko)
    return schur if schur > 1e-8 * h_kk else 0.0


class _Tracer:
    """Walks each profile from the optimum, one side at a time, with adaptive steps."""

    def __init__(self, objective: Objective, engine: Minimiser, x0: np.ndarray, reference: float, delta: float,
                 max_points: int, flat_tolerance: float, max_evaluations: int) -> None:
        self.objective, self.engine, self.x0 = objective, engine, x0
        self.reference, self.delta = reference, delta
        self.max_points, self.flat_tolerance, self.max_evaluations = max_points, flat_tolerance, max_evaluations
        self.best_x, self.best_nll = x0.copy(), reference
        span = engine.upper - engine.lower
        self.finite_span = np.isfinite(span)
        self.span = np.where(self.finite_span, span, 0.0)

    def trace(self, k: int, curvature: float) -> Profile:
        engine = self.engine
        start = engine.evaluations
        lower, upper = engine.lower[k], engine.upper[k]
        if np.isfinite(upper - lower):
            max_step = (upper - lower) / 10
        else:
            max_step = max(1.0, abs(self.x0[k]))
        min_step = max_step * 1e-4
        if curvature > 0:
            first = float(np.clip(0.25 * math.sqrt(2 * self.delta / curvature), min_step, max_step))
        else:
            first = max_step / 4
        down, down_values, down_end = self._side(k, -1.0, first, min_step, max_step)
        up, up_values, up_end = self._side(k, 1.0, first, min_step, max_step)
        points = [*reversed(down), self.x0.copy(), *up]
        xs = np.array([p[k] for p in points])
        values = np.array([*reversed(down_values), self.reference, *up_values])
        pinned = np.array([self._pinned(p, k) for p in points])
        rise = values - self.reference
        centre = len(down)  # index of the optimum
        low = self._crossing(xs[centre::-1], rise[centre::-1]) if down_end == THRESHOLD else -math.inf
        high = self._crossing(xs[centre:], rise[centre:]) if up_end == THRESHOLD else math.inf
        # A crossing where another parameter sits on its bound is the box's doing, not the data's.
        if down_end == THRESHOLD and pinned[0]:
            down_end = OTHER_BOUND
        if up_end == THRESHOLD and pinned[-1]:
            up_end = OTHER_BOUND
        determined = ~pinned
        determined[centre] = True
        considered = rise[determined] if determined.sum() > 1 else rise
        if np.max(np.abs(considered)) < self.flat_tolerance * self.delta:
            verdict = STRUCTURAL
        elif down_end == THRESHOLD and up_end == THRESHOLD:
            verdict = IDENTIFIABLE
        else:
            verdict = PRACTICAL
        objective = self.objective
        return Profile(
            name=objective.names[k], scale=objective.scales[k], optimum=float(self.x0[k]),
            x=_frozen(xs), nll=_frozen(values), points=_frozen(np.array(points)), pinned=_frozen(pinned, bool),
            lower=float(low), upper=float(high), ends=(down_end, up_end), verdict=verdict,
            curvature=float(curvature), reference=self.reference, threshold=self.delta,
            evaluations=engine.evaluations - start,
        )

    def _side(self, k: int, direction: float, step: float, min_step: float,
              max_step: float) -> tuple[list[np.ndarray], list[float], str]:
        """Points of one side of the profile of parameter k, J at each, and why the side ended."""
        engine = self.engine
        free = np.array([j for j in range(self.x0.size) if j != k], dtype=int)
        bound = engine.upper[k] if direction > 0 else engine.lower[k]
        points: list[np.ndarray] = []
        values: list[float] = []
        previous, before, previous_value = self.x0, None, self.reference
        while len(points) < self.max_points:
            if (bound - previous[k]) * direction <= 0:
                return points, values, BOUND
            target = previous[k] + direction * step
            at_bound = (bound - target) * direction <= 0
            if at_bound:
                target = bound
            point, value = engine.minimise(free, self._predict(previous, before, k, target), self.max_evaluations)
            change = value - previous_value
            if not math.isfinite(value) or change > self.delta:
                # A failed solve or a jump past Delta in one step: look closer before accepting it.
                if step > min_step:
                    step = max(step / 2, min_step)
                    continue
                if not math.isfinite(value):
                    return points, values, FAILED
            points.append(point)
            values.append(value)
            if value < self.best_nll:
                self.best_x, self.best_nll = point.copy(), value
            if value - self.reference > self.delta:
                return points, values, THRESHOLD
            if at_bound:
                return points, values, BOUND
            if abs(change) < 0.1 * self.delta:
                step = min(2 * step, max_step)
            elif abs(change) > 0.4 * self.delta:
                step = max(step / 2, min_step)
            before, previous, previous_value = previous, point, value
        return points, values, STEPS

    def _predict(self, previous: np.ndarray, before: np.ndarray | None, k: int, target: float) -> np.ndarray:
        """Warm start at x_k = target: the better of the previous point and the secant through the last two."""
        held = previous.copy()
        held[k] = target
        if before is None or previous[k] == before[k]:
            return held
        slope = (previous - before) / (previous[k] - before[k])
        secant = np.clip(previous + slope * (target - previous[k]), self.engine.lower, self.engine.upper)
        secant[k] = target
        return secant if self.engine.value(secant) < self.engine.value(held) else held

    def _pinned(self, point: np.ndarray, k: int) -> bool:
        """Whether a parameter other than k sits on its bound (within PINNED_FRACTION of its range)."""
        near = self.finite_span & (
            (point - self.engine.lower <= PINNED_FRACTION * self.span)
            | (self.engine.upper - point <= PINNED_FRACTION * self.span)
        )
        near[k] = False
        return bool(np.any(near))

    def _crossing(self, xs: np.ndarray, rise: np.ndarray) -> float:
        """Where the rise, walked outward from the optimum, first reaches Delta.

        Interpolated linearly in sqrt(rise), which is linear in x for a quadratic profile.
        """
        beyond = int(np.flatnonzero(rise > self.delta)[0])
        x_in, x_out = xs[beyond - 1], xs[beyond]
        s_in, s_out = math.sqrt(max(rise[beyond - 1], 0.0)), math.sqrt(rise[beyond])
        fraction = (math.sqrt(self.delta) - s_in) / (s_out - s_in)
        return float(x_in + fraction * (x_out - x_in))

"""Local minimisation of a negative log-likelihood, compiled once per objective.

For an :class:`~biotwin.objective.Objective` J(x), :class:`Minimiser` minimises J over any subset
of the entries of x within the bounds (the others held), from any start, by the interior
trust-region Newton method of fides (Fröhlich & Sorger 2022, the optimiser pyPESTO recommends
for ODE models): each iteration minimises the quadratic model

    m(s) = J(x) + g^T s + 1/2 s^T H s

over a trust region scaled by the distance to the bounds (Coleman-Li), and reflects steps that
would leave the box.

* With residuals (J = 1/2 |r|^2 + const): g = J_r^T r is exact, and H is the Gauss-Newton
  Hessian J_r^T J_r, both from the residuals' exact Jacobian J_r by forward-mode JAX
  derivatives, for the first 20 iterations; after that fides' HybridFixed (pyPESTO's default
  with AMICI's Fisher information) switches to a BFGS update from the exact gradients, which
  learns the curvature Gauss-Newton leaves out (the residuals' own second derivatives) where
  the fit is poor or a valley of near-equivalent parameters is curved. One compiled program
  returns J, r and J_r, so each trial point costs one forward-sensitivity solve.
* Without: g is J's exact gradient and H the BFGS approximation built from the gradients.

Same 20 Sobol starts on one core, Gauss-Newton throughout against the switch to BFGS:
Crauste_CellSystems2017 best NLL 260.34 against 212.06 (total 128 s against 62 s; Gauss-Newton
crept along a valley at 2e-5 per iteration for 1,800 iterations), Elowitz_Nature2000 -59.96
against -60.49 (96 s against 60 s), Boehm_JProteomeRes2014 147.544 either way (11 against 10
starts there, 11.5 s against 8.7 s), Perelson_Science1996 222.281 either way (9 against 8 starts,
6.3 s against 7.6 s). (Measured before the stiff solver's Newton stop was fixed, when a third of
Crauste's trial points failed, the two had found the same optima.)

A start stops when an accepted step changes J by less than :data:`NLL_TOLERANCE` (absolute;
:data:`NLL_RELATIVE_TOLERANCE` relative), or |g| < :data:`GRADIENT_TOLERANCE`: far below what the
data can resolve (a 95 % likelihood-ratio interval is 1.92 wide), so no evaluation is spent
polishing digits no one can use. A trial point where J is not finite (a failed or blown-up
solve) is a rejected step: the trust region shrinks. A failed solve is the costliest evaluation
(on Crauste_CellSystems2017 about 0.1 s with sensitivities, against 0.03 s for a typical point), and
on a problem that has failed once the trust region keeps growing back into the failing region
after each accepted step. So where trial points have been failing often, each is first checked
by J alone, without sensitivities (0.01 s where it succeeds, 0.04 s where it fails), as soon as
that check is compiled: its compilation starts in a background thread when failures first
become frequent, so a problem that rarely fails neither waits for it nor pays for it or the
checks. A check pays where the share p of failing trial points has (1 - p) c_J < p (f - f_J),
c_J the check's cost where the point succeeds and f, f_J the costs of a failure with and without
sensitivities: p above about 1/8 on Crauste. So the check runs while :data:`CHECK_WHEN_FAILED` of the last
:data:`CHECK_WINDOW` trial points failed. The steps taken are the same either way, as J alone
fails exactly where J with sensitivities does. On four of Crauste's 20 Sobol starts (the longest
ones) checking every trial point after the first failure took 39.9 s and checking none 30.4 s:
once the stiff solver stopped failing solves at round-off step sizes instead of spending its
step budget there, checks of every point cost more than the failures they made cheaper.
A start where J is not finite stops at once.

Measured on Boehm_JProteomeRes2014 (4 Sobol starts, default objective, shared 2-core machine):
SciPy's trust-region reflective least squares with tolerances 1e-10 took 75 s, two starts
creeping to the 1000-evaluation cap, 1 of 4 at the best NLL; fides takes 17 s (11 s compiling),
3 of 4 at the best NLL, 34-219 evaluations per start.

Which entries are free is an index array (data), so a multi-start fit (:mod:`biotwin.fit`) and
every profile of :mod:`biotwin.identify` share one compilation.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from biotwin.objective import Objective

#: A start has converged when an accepted step changes the NLL by less than this (absolute)...
NLL_TOLERANCE = 1e-6
#: ... plus this times |NLL|.
NLL_RELATIVE_TOLERANCE = 1e-9
#: ... or when the gradient's norm is below this.
GRADIENT_TOLERANCE = 1e-6
#: Trial points are checked by J alone while this many of the last CHECK_WINDOW failed (see the module).
CHECK_WHEN_FAILED = 3
CHECK_WINDOW = 16


class _Stopped(Exception):
    """Raised inside fides' loop when the caller's ``stop`` asks :meth:`Minimiser.minimise` to end."""


def _silent(record: logging.LogRecord) -> bool:
    """Drops JAX's traceback of a solver error raised inside a callback: the evaluation counts it as a failed solve."""
    return False


#: Compiles the J-only checks of every minimiser, one at a time, beside the running starts.
_COMPILER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="biotwin-compile")

_MINIMISERS: weakref.WeakKeyDictionary[Objective, Minimiser] = weakref.WeakKeyDictionary()


def minimiser(objective: Objective) -> Minimiser:
    """The compiled minimiser of ``objective``, built on first use and kept while the objective lives."""
    if objective not in _MINIMISERS:
        _MINIMISERS[objective] = Minimiser(objective)
    return _MINIMISERS[objective]


class Minimiser:
    """J, its derivatives and bounded local minimisation over any subset of x, compiled once per objective.

    J is always the objective's ``nll`` (+inf where a solve fails: the residuals alone cannot
    show a failure, as they are zero there); with residuals it is evaluated in the same compiled
    program as r and J_r.
    """

    def __init__(self, objective: Objective) -> None:
        import jax

        from biotwin._jax import quick_jit

        # No reference to the objective itself: the minimiser is cached under it, weakly.
        self.lower = np.asarray(objective.lower, dtype=float)
        self.upper = np.asarray(objective.upper, dtype=float)
        self.evaluations = 0
        self.least_squares = objective.least_squares is not None
        nll, least_squares = objective.nll, objective.least_squares
        self._nll = quick_jit(nll)
        self._nll_check: Future | None = None  # J alone, compiled in the background once a solve fails
        self._recent_failures: deque[bool] = deque(maxlen=CHECK_WINDOW)  # whether each recent trial point failed
        self._screened: dict[bytes, tuple[float, np.ndarray, np.ndarray | None]] = {}  # see :meth:`screen`
        if self.least_squares:

            def with_residuals(x):  # r, and (r, J) as auxiliary outputs of the same solve
                r, value = least_squares(x)
                return r, (r, value)

            self._evaluate = quick_jit(jax.jacfwd(with_residuals, has_aux=True))
        else:
            self._evaluate = quick_jit(jax.value_and_grad(nll))

    def evaluate(self, x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray | None]:
        """J(x), its gradient and, with residuals, the Gauss-Newton Hessian J_r^T J_r.

        J is +inf (gradient and Hessian NaN) where the solve fails, also where the solver
        raises instead of reporting the failure.
        """
        value, out = self._call(self._evaluate, x, (lambda o: o[1][1]) if self.least_squares else (lambda o: o[0]))
        if not math.isfinite(value):
            return self._failed(x.size)
        if self.least_squares:
            jacobian, (r, _) = out
            jacobian = np.nan_to_num(np.asarray(jacobian), nan=0.0, posinf=0.0, neginf=0.0)
            return value, jacobian.T @ np.asarray(r), jacobian.T @ jacobian
        return value, np.nan_to_num(np.asarray(out[1])), None

    def _call(self, program, x: np.ndarray, nll) -> tuple[float, object]:
        """One compiled evaluation at x, counted, and J read from its output by ``nll``.

        J is +inf where the solve fails, also where the solver raises instead of reporting it
        (e.g. a linear solve inside the implicit solver fed NaN).
        """
        self.evaluations += 1
        callbacks = logging.getLogger("jax._src.callback")
        callbacks.addFilter(_silent)
        try:
            out = program(x)
            value = float(nll(out))
        except (ValueError, RuntimeError):
            out, value = None, math.inf
        finally:
            callbacks.removeFilter(_silent)
        return (value if math.isfinite(value) else math.inf), out

    def _failed(self, n: int) -> tuple[float, np.ndarray, np.ndarray | None]:
        """What :meth:`evaluate` returns where the solve fails: +inf, and NaN derivatives."""
        return math.inf, np.full(n, np.nan), np.full((n, n), np.nan) if self.least_squares else None

    def _trial(self, x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray | None]:
        """:meth:`evaluate` at a trial point, after a check by J alone while trial points have been
        failing often (see the module): J without sensitivities costs a fraction of a full
        evaluation and fails exactly where it would. The check is counted as an evaluation. It is
        compiled in a background thread when failures first become frequent (2.7 s on Perelson)
        and skipped until then, so a problem that rarely fails neither waits for it nor pays.
        """
        screened = self._screened.pop(x.tobytes(), None)
        if screened is not None:
            self.evaluations += 1
            self._recent_failures.append(not math.isfinite(screened[0]))
            return screened
        frequent = sum(self._recent_failures) >= CHECK_WHEN_FAILED
        if frequent and self._nll_check is None:
            self._nll_check = _COMPILER.submit(lambda: self._nll.lower(x).compile())
        check = self._nll_check
        if frequent and check is not None and check.done() and check.exception() is None:
            if self._call(check.result(), x, float)[0] == math.inf:
                self._recent_failures.append(True)
                return self._failed(x.size)
        result = self.evaluate(x)
        self._recent_failures.append(not math.isfinite(result[0]))
        return result

    def value(self, x: np.ndarray) -> float:
        """J(x); +inf where the solve fails."""
        return self.evaluate(np.asarray(x, dtype=float))[0]

    def screen(self, points: np.ndarray, deadline: float = math.inf) -> np.ndarray:
        """J at each point (NaN for those left when the wall-clock ``deadline``, a time.time()
        instant, passes), each evaluation kept so that a minimisation starting at that point
        begins from it instead of solving again; it is counted as an evaluation when used there.
        Only the latest screening is kept.
        """
        import time

        self._screened = {}
        values = np.full(len(points), np.nan)
        for k, x in enumerate(np.asarray(points, dtype=float)):
            if time.time() >= deadline:
                break
            result = self.evaluate(x)
            self.evaluations -= 1
            self._screened[x.tobytes()] = result
            values[k] = result[0]
        return values

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """The Fisher information at x: J_r^T J_r of the residuals (Gauss-Newton), else the Hessian of J.

        Without residuals the Hessian is taken by central differences of the exact gradient
        (step 1e-4 on the optimisation scale, error O(1e-8)), which needs no second-order
        compilation. A bound closer than the step is respected by a one-sided difference.
        """
        x = np.asarray(x, dtype=float)
        if self.least_squares:
            h = np.nan_to_num(self.evaluate(x)[2])
        else:
            n = x.size
            h = np.zeros((n, n))
            for k in range(n):
                step = 1e-4 * max(1.0, abs(float(x[k])))
                up, down = x.copy(), x.copy()
                up[k] = min(x[k] + step, self.upper[k])
                down[k] = max(x[k] - step, self.lower[k])
                if up[k] == down[k]:
                    continue
                h[:, k] = (self.evaluate(up)[1] - self.evaluate(down)[1]) / (up[k] - down[k])
            h = np.nan_to_num(h)
        return 0.5 * (h + h.T)

    def minimise(self, free: np.ndarray, x: np.ndarray, max_evaluations: int,
                 max_seconds: float = math.inf,
                 stop: Callable[[list[float]], bool] | None = None) -> tuple[np.ndarray, float]:
        """min J over the entries ``free`` of x (the others held), from x; the point and J there.

        At most ``max_evaluations`` evaluations (each J, g and H at one trial point) and about
        ``max_seconds``. A start where J is not finite returns at once with +inf, so the caller
        can shorten a step or count a failed start. ``stop``, when given, is asked after every
        evaluation with the best J so far after each evaluation (one entry per evaluation); when it
        answers True the search ends at its best point so far.
        """
        import fides

        x = np.asarray(x, dtype=float)
        if free.size == 0:
            return x, self.value(x)
        low, high = self.lower[free], self.upper[free]
        start = x.copy()
        start[free] = np.clip(x[free], low, high)
        first = self._trial(start)
        if not math.isfinite(first[0]):
            return start, math.inf
        cache = {start[free].tobytes(): first}
        best = [first[0], start[free].copy()]  # J and the free entries at the best point so far
        history: list[float] = []  # the best J after each evaluation, for ``stop``

        def full(q: np.ndarray) -> np.ndarray:
            y = start.copy()
            y[free] = q
            return y

        def fun(q: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
            y = full(q)
            value, gradient, hessian = cache.pop(q.tobytes(), None) or self._trial(y)
            if value < best[0]:
                best[:] = [value, np.array(q, dtype=float)]
            if stop is not None:
                history.append(best[0])
                if stop(history):
                    raise _Stopped
            if not math.isfinite(value):  # fides rejects the step and shrinks the trust region
                value = math.nan
            if not self.least_squares:
                return value, gradient[free]
            return value, gradient[free], hessian[np.ix_(free, free)]

        optimiser = fides.Optimizer(
            fun, ub=high, lb=low, verbose=logging.ERROR,
            hessian_update=fides.HybridFixed() if self.least_squares else fides.BFGS(),
            options={fides.Options.MAXITER: max(max_evaluations - 1, 1), fides.Options.MAXTIME: max_seconds,
                     fides.Options.FATOL: NLL_TOLERANCE,
                     fides.Options.FRTOL: NLL_RELATIVE_TOLERANCE, fides.Options.GATOL: GRADIENT_TOLERANCE},
        )
        try:
            optimiser.minimize(start[free])
        except _Stopped:
            return full(best[1]), float(best[0])
        except (RuntimeError, ValueError, np.linalg.LinAlgError):
            pass  # a breakdown (e.g. a non-finite trust-region model) ends the start at its best point
        if optimiser.x_min is None or not math.isfinite(optimiser.fval_min):
            return start, first[0]
        return full(np.asarray(optimiser.x_min, dtype=float)), float(optimiser.fval_min)

"""Local minimisation of a negative log-likelihood, compiled once per objective.

For an :class:`~biotwin.objective.Objective` J(x), :class:`Minimiser` minimises J over any subset
of the entries of x within the bounds (the others held), from any start:

* with residuals (J = 1/2 |r|^2 + const): SciPy's trust-region reflective least squares with
  the exact Jacobian of r by forward-mode JAX derivatives (Gauss-Newton steps);
* without: L-BFGS-B on J and its exact gradient.

Which entries are free is an index array (data), so a multi-start fit (:mod:`biotwin.fit`) and
every profile of :mod:`biotwin.identify` share one compilation.
"""

from __future__ import annotations

import math
import weakref

import numpy as np

from biotwin.objective import Objective


_MINIMISERS: weakref.WeakKeyDictionary[Objective, Minimiser] = weakref.WeakKeyDictionary()


def minimiser(objective: Objective) -> Minimiser:
    """The compiled minimiser of ``objective``, built on first use and kept while the objective lives."""
    if objective not in _MINIMISERS:
        _MINIMISERS[objective] = Minimiser(objective)
    return _MINIMISERS[objective]


class Minimiser:
    """J, its derivatives and bounded local minimisation over any subset of x, compiled once per objective.

    J itself is always evaluated by the objective's ``nll`` (a failed solve is +inf there), the
    optimiser's steps by the residuals and their forward-mode Jacobian, or by J's gradient.
    """

    def __init__(self, objective: Objective) -> None:
        import jax

        from biotwin import _jax  # noqa: F401

        # No reference to the objective itself: the minimiser is cached under it, weakly.
        self._residual_function = objective.residuals
        self.lower = np.asarray(objective.lower, dtype=float)
        self.upper = np.asarray(objective.upper, dtype=float)
        self.evaluations = 0
        self.least_squares = objective.residuals is not None
        self._nll = jax.jit(objective.nll)
        if self.least_squares:
            self._residuals = jax.jit(objective.residuals)
            self._jacobian = jax.jit(jax.jacfwd(objective.residuals))
        else:
            self._value_and_grad = jax.jit(jax.value_and_grad(objective.nll))

    def value(self, x: np.ndarray) -> float:
        self.evaluations += 1
        value = float(self._nll(x))
        return value if math.isfinite(value) else math.inf

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """d r / d x, forward mode; reverse mode for residuals that support only that (switched once)."""
        try:
            full = np.asarray(self._jacobian(x))
        except (TypeError, NotImplementedError):
            import jax

            self._jacobian = jax.jit(jax.jacrev(self._residual_function))
            full = np.asarray(self._jacobian(x))
        return np.nan_to_num(full, nan=0.0, posinf=0.0, neginf=0.0)

    def gradient(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        self.evaluations += 1
        value, gradient = self._value_and_grad(x)
        return float(value), np.asarray(gradient)

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """The Fisher information at x: J_r^T J_r of the residuals (Gauss-Newton), else the Hessian of J.

        Without residuals the Hessian is taken by central differences of the exact gradient
        (step 1e-4 on the optimisation scale, error O(1e-8)), which needs no second-order
        compilation. A bound closer than the step is respected by a one-sided difference.
        """
        if self.least_squares:
            jacobian = self.jacobian(x)
            h = jacobian.T @ jacobian
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
                h[:, k] = (self.gradient(up)[1] - self.gradient(down)[1]) / (up[k] - down[k])
            h = np.nan_to_num(h)
        return 0.5 * (h + h.T)

    def minimise(self, free: np.ndarray, x: np.ndarray, max_evaluations: int) -> tuple[np.ndarray, float]:
        """min J over the entries ``free`` of x (the others held), from x; the point and J there."""
        if free.size == 0:
            return x, self.value(x)
        low, high = self.lower[free], self.upper[free]
        start = np.clip(x[free], low, high)

        def full(q: np.ndarray) -> np.ndarray:
            y = x.copy()
            y[free] = q
            return y

        if self.least_squares:
            from scipy.optimize import least_squares

            def fun(q: np.ndarray) -> np.ndarray:
                self.evaluations += 1
                return np.asarray(self._residuals(full(q)))

            def jac(q: np.ndarray) -> np.ndarray:
                return self.jacobian(full(q))[:, free]

            try:
                result = least_squares(fun, start, jac=jac, bounds=(low, high), method="trf", x_scale="jac",
                                       ftol=1e-10, xtol=1e-10, gtol=1e-10, max_nfev=max_evaluations)
            except (ValueError, np.linalg.LinAlgError):
                return x, math.inf  # residuals not finite at the start: the caller shortens the step
        else:
            from scipy.optimize import minimize

            def fun_and_grad(q: np.ndarray) -> tuple[float, np.ndarray]:
                value, gradient = self.gradient(full(q))
                if not math.isfinite(value):
                    return 1e300, np.zeros(q.size)  # L-BFGS-B backs off a failed solve
                return value, np.nan_to_num(gradient[free])

            result = minimize(fun_and_grad, start, jac=True, method="L-BFGS-B", bounds=list(zip(low, high)),
                              options={"maxfun": max_evaluations, "ftol": 1e-14, "gtol": 1e-9})
        point = full(result.x)
        return point, self.value(point)

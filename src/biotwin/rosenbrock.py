"""Rosenbrock methods for stiff systems: one Jacobian and one LU factorisation per step, no Newton iteration.

A Rosenbrock (linearly implicit Runge-Kutta) method of s stages advances y' = f(t, y) by h from
(t0, y0) with J = df/dy and f_t = df/dt at (t0, y0), solving s linear systems with the same matrix:

    (I / (h gamma) - J) k_i = f(t0 + c_i h, y0 + sum_{j<i} a_ij k_j) + sum_{j<i} (C_ij / h) k_j + h d_i f_t

and y1 = y0 + sum_j b_j k_j. The RODAS methods (Hairer & Wanner, Solving ODEs II, VI.4) are
L-stable and stiffly accurate: their last stages advance the state by the stage increments
themselves, so y1 is the last stage's point plus k_s, and k_s alone is the embedded error
estimate. An implicit Runge-Kutta method (Kvaerno5) instead runs a Newton iteration at every
stage, with a Jacobian and a factorisation per iteration, and rejects the step when the
iteration does not converge; on the small, stiff systems of systems biology a Rosenbrock step
costs a fraction of one and never fails for want of convergence. The tableaux below are the
published ones (Rodas5: Di Marzo 1993, as in Hairer's RODAS code and OrdinaryDiffEq.jl).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class RosenbrockTableau:
    """gamma, and per stage i: the point (a_ij), the coupling (C_ij), the time (c_i) and f_t weight (d_i);
    ``b`` the weights of the solution. The error estimate is the last stage's increment."""

    name: str
    order: int
    gamma: float
    a: tuple[tuple[float, ...], ...]
    C: tuple[tuple[float, ...], ...]
    c: tuple[float, ...]
    d: tuple[float, ...]

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def b(self) -> tuple[float, ...]:
        """Stiffly accurate: y1 is the last stage's point plus the last increment."""
        return (*self.a[-1][:-1], 1.0)


def _lower(rows: list[list[float]], stages: int) -> tuple[tuple[float, ...], ...]:
    """A strictly lower-triangular matrix from its rows (row i holds entries j < i), padded with zeros."""
    return tuple(tuple(row) + (0.0,) * (stages - len(row)) for row in rows)


def _stiffly_accurate(a_rows: list[list[float]], stages: int) -> list[list[float]]:
    """Rows of a for the final stages, each the previous stage's point plus the previous increment."""
    rows = [list(r) for r in a_rows]
    while len(rows) < stages:
        rows.append(rows[-1] + [1.0])
    return rows


def _rodas5() -> RosenbrockTableau:
    stages = 8
    a = _stiffly_accurate([
        [],
        [2.0],
        [3.040894194418781, 1.041747909077569],
        [2.576417536461461, 1.622083060776640, -0.9089668560264532],
        [2.760842080225597, 1.446624659844071, -0.3036980084553738, 0.2877498600325443],
        [-14.09640773051259, 6.925207756232704, -41.47510893210728, 2.343771018586405, 24.13215229196062],
    ], stages)
    C = [
        [],
        [-10.31323885133993],
        [-21.04823117650003, -7.234992135176716],
        [32.22751541853323, -4.943732386540191, 19.44922031041879],
        [-20.69865579590063, -8.816374604402768, 1.260436877740897, -0.7495647613787146],
        [-46.22004352711257, -17.49534862857472, -289.6389582892057, 93.60855400400906, 318.3822534212147],
        [34.20013733472935, -14.15535402717690, 57.82335640988400, 25.83362985412365, 1.408950972071624,
         -6.551835421242162],
        [42.57076742291101, -13.80770672017997, 93.98938432427124, 18.77919633714503, -31.58359187223370,
         -6.685968952921985, -5.810979938412932],
    ]
    return RosenbrockTableau(
        name="rodas5", order=5, gamma=0.19, a=_lower(a, stages), C=_lower(C, stages),
        c=(0.0, 0.38, 0.3878509998321533, 0.4839718937873840, 0.4570477008819580, 1.0, 1.0, 1.0),
        d=(0.19, -0.1823079225333714636, -0.319231832186874912, 0.3449828624725343, -0.377417564392089818,
           0.0, 0.0, 0.0),
    )


def _rodas4() -> RosenbrockTableau:
    stages = 6
    a = _stiffly_accurate([
        [],
        [1.544000000000000],
        [0.9466785280815826, 0.2557011698983284],
        [3.314825187068521, 2.896124015972201, 0.9986419139977817],
        [1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950],
    ], stages)
    C = [
        [],
        [-5.668800000000000],
        [-2.430093356833875, -0.2063599157091915],
        [-0.1073529058151375, -9.594562251023355, -20.47028614809616],
        [7.496443313967647, -10.24680431464352, -33.99990352819905, 11.70890893206160],
        [8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136, -6.058818238834054],
    ]
    return RosenbrockTableau(
        name="rodas4", order=4, gamma=0.25, a=_lower(a, stages), C=_lower(C, stages),
        c=(0.0, 0.386, 0.21, 0.63, 1.0, 1.0),
        d=(0.25, -0.1043, 0.1035, -0.0362, 0.0, 0.0),
    )


TABLEAUX = {"rodas5": _rodas5, "rodas4": _rodas4}


def tableau(name: str) -> RosenbrockTableau:
    """The Rosenbrock tableau called ``name`` (``rodas5`` or ``rodas4``)."""
    return TABLEAUX[name]()


@lru_cache(maxsize=1)
def _solver_class() -> type:
    """The diffrax solver class, defined on first use: importing this module does not import diffrax."""
    import diffrax
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from biotwin import _jax  # noqa: F401

    @eqx.filter_custom_jvp
    def _stage_solve(inverse: Any, jacobian: Any, rhs: Any) -> Any:
        """k = M^-1 r with ``inverse`` = M^-1, M = I/(h gamma) - J(y0); ``jacobian`` = J(y0) is passed
        for its tangent dJ alone (see the JVP)."""
        return inverse @ rhs

    @_stage_solve.def_jvp
    def _stage_solve_jvp(primals: Any, tangents: Any) -> tuple[Any, Any]:
        # d(M k) = dr: dk = M^-1 (dr - dM k) with -dM k = dJ k. dJ, the derivative of J(y0) along
        # the tangents of y0 and of the parameters, is formed once per step by forward-mode AD of
        # J and shared by all stages; M^-1 itself carries no tangent.
        inverse, jacobian, rhs = primals
        _, t_jacobian, t_rhs = tangents
        k = inverse @ rhs
        tangent = jnp.zeros_like(k) if t_rhs is None else t_rhs
        if t_jacobian is not None:
            tangent = tangent + t_jacobian @ k
        return k, inverse @ tangent

    class Rosenbrock(diffrax.AbstractAdaptiveSolver):
        """A stiffly accurate Rosenbrock method for diffrax (see the module); ``tableau`` gives the method."""

        tableau: RosenbrockTableau
        term_structure: ClassVar = diffrax.AbstractTerm
        interpolation_cls: ClassVar = diffrax.LocalLinearInterpolation

        def order(self, terms: Any) -> int:
            return self.tableau.order

        def error_order(self, terms: Any) -> int:
            # The embedded solution has order p - 1: its local error, k_s, is O(h^p).
            return self.tableau.order

        def init(self, terms: Any, t0: Any, t1: Any, y0: Any, args: Any) -> None:
            return None

        def step(self, terms: Any, t0: Any, t1: Any, y0: Any, args: Any, solver_state: Any,
                 made_jump: Any) -> tuple[Any, Any, Any, Any, Any]:
            method = self.tableau
            h = t1 - t0

            def f(t: Any, y: Any) -> Any:
                return terms.vf(t, y, args)

            f0, f_t = jax.jvp(lambda t: f(t, y0), (t0,), (jnp.ones_like(t0),))
            jacobian = jax.jacfwd(lambda y: f(t0, y))(y0)
            eye = jnp.eye(y0.shape[0], dtype=y0.dtype)
            # M^-1 once per step (LU with partial pivoting), then each stage solve, primal and
            # tangent, is one small matrix product. Inside XLA's step loop each LAPACK call costs
            # about 1 us on a 5-state system, and a step made 16 LU solves (8 stages, primal and
            # tangent), each two triangular solves. Its forward error is the LU solves' order,
            # cond(M) times round-off. dJ comes once per step from forward-mode AD of J (see
            # _stage_solve_jvp); a second-order directional derivative of f per stage instead took
            # XLA 1-6 s longer to compile (Elowitz 16 s against 10 s). Plain AD through inv costs
            # twice as much per evaluation (its tangent takes LU solves). With sensitivities an
            # evaluation of Crauste_CellSystems2017 takes 7 ms against 21 ms with LU solves, one of
            # Elowitz_Nature2000 35 ms against 69 ms.
            # M^-1 carries no tangent (dJ enters in _stage_solve_jvp): stopping the gradient before
            # the inverse keeps AD from tracing an inverse's tangent only to discard it.
            inverse = jnp.linalg.inv(jax.lax.stop_gradient(eye / (h * method.gamma) - jacobian))
            a, C = np.asarray(method.a), np.asarray(method.C)
            increments: list[Any] = []
            for i in range(method.stages):
                point = y0 + sum((a[i, j] * increments[j] for j in range(i) if a[i, j] != 0.0), jnp.zeros_like(y0))
                rate = f0 if i == 0 else f(t0 + method.c[i] * h, point)
                coupling = sum((C[i, j] * increments[j] for j in range(i) if C[i, j] != 0.0), jnp.zeros_like(y0))
                rhs = rate + coupling / h
                if method.d[i] != 0.0:
                    rhs = rhs + (h * method.d[i]) * f_t
                increments.append(_stage_solve(inverse, jacobian, rhs))
            y1 = y0 + sum(b * k for b, k in zip(method.b, increments))
            y_error = increments[-1]
            return y1, y_error, dict(y0=y0, y1=y1), None, diffrax.RESULTS.successful

        def func(self, terms: Any, t0: Any, y0: Any, args: Any) -> Any:
            return terms.vf(t0, y0, args)

    return Rosenbrock


@lru_cache(maxsize=8)
def rosenbrock_solver(name: str = "rodas5") -> Any:
    """A diffrax solver for the Rosenbrock method ``name`` (see :data:`TABLEAUX`)."""
    return _solver_class()(tableau(name))

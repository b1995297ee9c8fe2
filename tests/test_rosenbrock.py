"""The Rosenbrock solvers: their order of convergence, exact sensitivities, and stiff systems through the engine."""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from biotwin import _jax  # noqa: F401
from biotwin.model import Model
from biotwin.rosenbrock import TABLEAUX, rosenbrock_solver
from biotwin.simulate import make_plan, simulate, simulator

STIFFNESS = -200.0
#: Mild enough that h |lambda| is small at the step sizes of the order test: on stiff components
#: Rosenbrock methods show a lower (B-convergence) order until the steps resolve the fast scale.
MILD = -5.0


def _field(p: jax.Array):
    """Logistic growth beside a stiff state tracking sin t (non-autonomous: exercises the f_t terms)."""

    def field(t, y, args):
        return jnp.array([p[0] * y[0] * (1 - y[0]), p[1] * (y[1] - jnp.sin(t)) + jnp.cos(t) + p[2] * y[0]])

    return field


def _exact(p: np.ndarray, y0: np.ndarray, t: float) -> np.ndarray:
    logistic = 1 / (1 + (1 / y0[0] - 1) * np.exp(-p[0] * t))
    reference = solve_ivp(lambda s, y: [p[0] * y[0] * (1 - y[0]), p[1] * (y[1] - np.sin(s)) + np.cos(s) + p[2] * y[0]],
                          (0, t), y0, method="Radau", rtol=1e-13, atol=1e-14)
    return np.array([logistic, reference.y[1, -1]])


def _fixed_steps(name: str, p: jax.Array, y0: jax.Array, n: int) -> jax.Array:
    return diffrax.diffeqsolve(diffrax.ODETerm(_field(p)), rosenbrock_solver(name), 0.0, 1.0, 1.0 / n, y0,
                               stepsize_controller=diffrax.ConstantStepSize(), max_steps=n + 1,
                               adjoint=diffrax.ForwardMode()).ys[-1]


@pytest.mark.parametrize("name", sorted(TABLEAUX))
def test_each_method_converges_at_its_order(name: str):
    p = np.array([3.0, MILD, 0.5])
    y0 = np.array([0.1, 0.0])
    exact = _exact(p, y0, 1.0)
    errors = [float(np.max(np.abs(np.asarray(_fixed_steps(name, jnp.asarray(p), jnp.asarray(y0), n)) - exact)))
              for n in (10, 20, 40)]
    order = TABLEAUX[name]().order
    observed = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(observed > order - 0.7), (errors, observed)


def test_sensitivities_are_the_exact_derivatives_of_the_steps():
    """Forward-mode derivatives through the stage solves equal central differences of the same fixed steps."""
    p = jnp.array([3.0, STIFFNESS, 0.5])
    y0 = jnp.array([0.1, 0.2])

    def end(q: jax.Array) -> jax.Array:
        return _fixed_steps("rodas5", q[:3], jnp.array([y0[0], q[3]]), 50)

    q = jnp.concatenate([p, y0[1:]])
    jacobian = np.asarray(jax.jacfwd(end)(q))
    step = 1e-6
    finite = np.stack([(np.asarray(end(q.at[i].add(step * abs(q[i])))) - np.asarray(end(q.at[i].add(-step * abs(q[i])))))
                       / (2 * step * abs(float(q[i]))) for i in range(q.size)], axis=1)
    np.testing.assert_allclose(jacobian, finite, rtol=1e-6, atol=1e-10)


def test_robertson_through_the_engine_matches_radau_and_reverse_mode_matches_forward():
    model = Model.from_text(
        "dy1/dt = -k1*y1 + k3*y2*y3\ndy2/dt = k1*y1 - k3*y2*y3 - k2*y2^2\ndy3/dt = k2*y2^2\nk1 = 0.04\nk2 = 3e7\nk3 = 1e4"
    )
    times = np.concatenate([[0.0], np.geomspace(1e-4, 1e5, 30)])
    solution = simulate(model, None, {"y1": 1, "y2": 0, "y3": 0}, times, method="rodas5", rtol=1e-8, atol=1e-12)
    reference = solve_ivp(
        lambda t, y: [-0.04 * y[0] + 1e4 * y[1] * y[2], 0.04 * y[0] - 1e4 * y[1] * y[2] - 3e7 * y[1] ** 2, 3e7 * y[1] ** 2],
        (0, 1e5), [1, 0, 0], method="Radau", t_eval=times, rtol=1e-11, atol=1e-14,
    )
    np.testing.assert_allclose(solution.state("y1"), reference.y[0], rtol=1e-5)
    np.testing.assert_allclose(solution.state("y3"), reference.y[2], rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(solution.states.sum(axis=1), 1.0, rtol=1e-8)

    plan = make_plan(model, times[:12])
    y0 = jnp.array([1.0, 0.0, 0.0])

    def y3(adjoint: str):
        solve = simulator(model, "rodas5", 1e-8, 1e-12, adjoint).solve
        return lambda theta: solve(theta, y0, plan)[0][:, 2]

    theta = jnp.asarray(model.parameter_vector())
    forward = np.asarray(jax.jacfwd(y3("forward"))(theta))
    reverse = np.asarray(jax.jacrev(y3("reverse"))(theta))
    np.testing.assert_allclose(forward, reverse, rtol=1e-7, atol=1e-14)

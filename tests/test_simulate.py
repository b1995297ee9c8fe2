"""The ODE engine against closed-form solutions, a stiff system, doses, inputs, gradients, batches."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from biotwin.data import Bolus, Dataset, Experiment, Input
from biotwin.errors import DataError, ModelError, SolverError
from biotwin.model import Model
from biotwin.simulate import finite_tangents, is_stiff, make_plan, simulate, simulate_dataset, simulator

TIGHT = dict(rtol=1e-10, atol=1e-12)


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(got - expected) / np.maximum(np.abs(expected), 1e-300)))


@pytest.fixture(scope="module")
def decay() -> Model:
    return Model.from_text("dx/dt = -k*x\nk = 0.5")


def test_exponential_decay_matches_closed_form(decay: Model):
    times = np.linspace(0, 10, 41)
    solution = simulate(decay, {"k": 0.5}, {"x": 2.0}, times, **TIGHT)
    assert relative_error(solution.state("x"), 2.0 * np.exp(-0.5 * times)) < 1e-6


def test_logistic_growth_matches_closed_form():
    model = Model.from_text("dN/dt = r*N*(1 - N/K)\nr = 0.8\nK = 100")
    times = np.linspace(0, 15, 61)
    n0 = 2.0
    expected = 100 / (1 + (100 / n0 - 1) * np.exp(-0.8 * times))
    assert relative_error(simulate(model, None, {"N": n0}, times, **TIGHT).state("N"), expected) < 1e-6


def test_linear_system_matches_matrix_exponential():
    model = Model.from_text("dx/dt = -0.5*x + 2*y\ndy/dt = -2*x - 0.5*y + 0.1*z\ndz/dt = -0.2*z")
    a = np.array([[-0.5, 2, 0], [-2, -0.5, 0.1], [0, 0, -0.2]])
    y0 = np.array([1.0, 0.0, 3.0])
    times = np.linspace(0, 8, 33)
    expected = np.array([expm(a * t) @ y0 for t in times])
    got = simulate(model, None, y0, times, **TIGHT).states
    # The oscillating components cross zero; compare relative to each state's scale there.
    assert np.max(np.abs(got - expected)) / np.max(np.abs(expected)) < 1e-6
    assert relative_error(got[:, 2], expected[:, 2]) < 1e-6


def test_stiff_robertson_solves_without_choosing_a_solver():
    model = Model.from_text(
        "dy1/dt = -k1*y1 + k3*y2*y3\ndy2/dt = k1*y1 - k3*y2*y3 - k2*y2^2\ndy3/dt = k2*y2^2\nk1 = 0.04\nk2 = 3e7\nk3 = 1e4"
    )
    times = np.concatenate([[0.0], np.geomspace(1e-4, 1e5, 30)])
    solution = simulate(model, None, {"y1": 1, "y2": 0, "y3": 0}, times, rtol=1e-8, atol=1e-12)
    reference = solve_ivp(
        lambda t, y: [-0.04 * y[0] + 1e4 * y[1] * y[2], 0.04 * y[0] - 1e4 * y[1] * y[2] - 3e7 * y[1] ** 2, 3e7 * y[1] ** 2],
        (0, 1e5), [1, 0, 0], method="Radau", t_eval=times, rtol=1e-11, atol=1e-14,
    )
    np.testing.assert_allclose(solution.state("y1"), reference.y[0], rtol=1e-5)
    np.testing.assert_allclose(solution.state("y3"), reference.y[2], rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(solution.states.sum(axis=1), 1.0, rtol=1e-8)  # mass is conserved


def test_stiffness_is_detected_from_the_jacobian():
    model = Model.from_text("dx/dt = -1e6*(x - cos(t))")
    assert is_stiff(model, model.parameter_vector(), np.array([0.0]), 10.0)
    assert not is_stiff(Model.from_text("dx/dt = -x"), np.zeros(0), np.array([1.0]), 10.0)
    times = np.linspace(0, 10, 11)
    np.testing.assert_allclose(simulate(model, None, {"x": 1.0}, times).state("x"), np.cos(times), atol=1e-5)


def test_bolus_doses_jump_the_state(decay: Model):
    times = np.linspace(0, 10, 21)
    doses = [Bolus(0.0, "x", 1.0), Bolus(4.0, "x", 3.0), Bolus(10.0, "x", 5.0)]
    got = simulate(decay, None, {"x": 2.0}, times, doses=doses, **TIGHT).state("x")
    expected = 3.0 * np.exp(-0.5 * times) + np.where(times >= 4.0, 3.0 * np.exp(-0.5 * (times - 4.0)), 0.0)
    expected[-1] += 5.0  # a dose at the last time is seen by the last output
    assert relative_error(got, expected) < 1e-6


def test_repeated_doses_at_the_same_time_add_up(decay: Model):
    got = simulate(decay, None, {"x": 0.0}, [0.0, 1.0, 2.0], doses=[Bolus(1.0, "x", 1.0), Bolus(1.0, "x", 2.0)], **TIGHT)
    np.testing.assert_allclose(got.state("x"), [0.0, 3.0, 3.0 * np.exp(-0.5)], rtol=1e-8)


def test_infusion_is_a_piecewise_constant_rate(decay: Model):
    times = np.linspace(0, 10, 51)
    infusion = Input.infusion("x", 2.0, 6.0, 1.5)
    got = simulate(decay, None, {"x": 0.0}, times, [infusion], **TIGHT).state("x")
    during = 3.0 * (1 - np.exp(-0.5 * (times - 2.0)))
    at_stop = 3.0 * (1 - np.exp(-0.5 * 4.0))
    expected = np.where(times < 2, 0.0, np.where(times <= 6, during, at_stop * np.exp(-0.5 * (times - 6.0))))
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-10)


def test_model_input_enters_the_right_hand_side():
    model = Model.from_text("dx/dt = u - k*x\ninput u\nk = 1")
    times = np.linspace(0, 5, 26)
    stimulus = Input("u", (0.0, 1.0, 3.0), (0.0, 2.0, 0.0))
    got = simulate(model, None, {"x": 0.0}, times, [stimulus], **TIGHT).state("x")
    peak = 2.0 * (1 - np.exp(-2.0))
    expected = np.where(times < 1, 0, np.where(times <= 3, 2 * (1 - np.exp(-(times - 1))), peak * np.exp(-(times - 3))))
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-10)


def test_start_before_the_first_output(decay: Model):
    got = simulate(decay, None, {"x": 1.0}, [1.0, 2.0], start=0.0, **TIGHT).state("x")
    np.testing.assert_allclose(got, np.exp(-0.5 * np.array([1.0, 2.0])), rtol=1e-8)


def test_gradient_with_respect_to_parameters_and_initial_state_matches_finite_differences():
    model = Model.from_text("dx/dt = a*x - b*x*y\ndy/dt = -c*y + d*x*y")
    theta = np.array([1.0, 0.1, 1.5, 0.075])
    y0 = np.array([10.0, 5.0])
    plan = make_plan(model, np.linspace(0, 5, 26), doses=[Bolus(2.0, "y", 1.0)])
    solve = simulator(model, "tsit5", 1e-10, 1e-12).solve

    def loss(theta: jax.Array, y0: jax.Array) -> jax.Array:
        states, observables, _, _ = solve(theta, y0, plan)
        return jnp.sum(observables**2) / 1e3

    grad_theta, grad_y0 = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.asarray(theta), jnp.asarray(y0))
    value = jax.jit(loss)  # compiled once for the 12 evaluations below
    step = 1e-6
    for vector, gradient, which in ((theta, grad_theta, 0), (y0, grad_y0, 1)):
        for i in range(vector.size):
            shift = np.zeros_like(vector)
            shift[i] = step * max(1.0, abs(vector[i]))
            args_plus = [theta, y0]
            args_minus = [theta, y0]
            args_plus[which] = vector + shift
            args_minus[which] = vector - shift
            finite = (value(*map(jnp.asarray, args_plus)) - value(*map(jnp.asarray, args_minus))) / (2 * shift[i])
            assert float(gradient[i]) == pytest.approx(float(finite), rel=1e-5)


def test_forward_mode_jacobian_matches_reverse_mode():
    model = Model.from_text("dx/dt = -k*x*y\ndy/dt = k*x*y - g*y\nk = 0.5\ng = 0.2")
    plan = make_plan(model, np.linspace(0, 4, 9))
    y0 = jnp.array([1.0, 0.1])

    def states(solver_method: str, adjoint: str):
        sim = simulator(model, solver_method, 1e-10, 1e-12, adjoint)
        return lambda theta: sim.solve(theta, y0, plan)[0]

    theta = jnp.array([0.5, 0.2])
    forward = jax.jacfwd(states("tsit5", "forward"))(theta)
    reverse = jax.jacrev(states("tsit5", "reverse"))(theta)
    np.testing.assert_allclose(np.asarray(forward), np.asarray(reverse), rtol=1e-7, atol=1e-12)


def test_batch_over_parameter_sets_and_initial_states_equals_single_solves(decay: Model):
    times = np.linspace(0, 4, 9)
    rates = np.array([[0.1], [0.5], [2.0]])
    batch = simulate(decay, rates, {"x": 1.0}, times, **TIGHT)
    assert batch.states.shape == (3, 9, 1)
    np.testing.assert_allclose(batch.states[:, :, 0], np.exp(-rates * times), rtol=1e-8)
    starts = np.array([[1.0], [2.0], [5.0]])
    batch = simulate(decay, {"k": 0.5}, starts, times, **TIGHT)
    np.testing.assert_allclose(batch.states[:, :, 0], starts * np.exp(-0.5 * times), rtol=1e-8)


def test_dataset_experiments_are_solved_together_with_their_own_doses_and_overrides(decay: Model):
    a = Experiment("a", np.array([0.0, 1.0, 2.0, 3.0]), ("x",), np.ones(4), overrides={"x": 1.0})
    b = Experiment("b", np.array([0.5, 1.0, 4.0]), ("x",), np.ones(3), doses=(Bolus(0.0, "x", 2.0), Bolus(2.0, "x", 1.0)),
                   overrides={"x": 0.0, "k": 1.0})
    solutions = simulate_dataset(decay, {"k": 0.5}, Dataset((a, b)), **TIGHT)
    np.testing.assert_allclose(solutions["a"].state("x"), np.exp(-0.5 * a.times), rtol=1e-8)
    expected_b = 2.0 * np.exp(-b.times) + np.where(b.times >= 2.0, np.exp(-(b.times - 2.0)), 0.0)
    np.testing.assert_allclose(solutions["b"].state("x"), expected_b, rtol=1e-8)
    dense = simulate_dataset(decay, {"k": 0.5}, Dataset((a, b)), grid=11, **TIGHT)
    assert dense["b"].times[0] == 0.0 and dense["b"].times.size == 11


def test_blow_up_raises_with_its_time():
    model = Model.from_text("dx/dt = x^2")
    with pytest.raises(SolverError, match=r"blew up .* at t=1\b"):
        simulate(model, None, {"x": 1.0}, np.linspace(0, 2, 11))


def test_non_finite_state_raises():
    model = Model.from_text("dx/dt = -1/sqrt(x)")  # x reaches 0 at t = 2/3, then the root is NaN
    with pytest.raises(SolverError, match=r"could not advance past t=0\.6666.*leave the model's domain"):
        simulate(model, None, {"x": 1.0}, np.linspace(0, 2, 11), method="tsit5")


def test_blow_up_in_a_batch_names_the_experiment():
    model = Model.from_text("dx/dt = k*x^2")
    a = Experiment("calm", np.arange(3.0), ("x",), np.ones(3), overrides={"k": -1.0})
    b = Experiment("explosive", np.arange(3.0), ("x",), np.ones(3), overrides={"k": 1.0})
    with pytest.raises(SolverError, match="in experiment 'explosive'"):
        simulate_dataset(model, None, Dataset((a, b)), {"x": 1.0})


def test_bad_requests_are_clear_errors(decay: Model):
    with pytest.raises(ModelError, match="unknown parameter 'kk'"):
        simulate(decay, {"kk": 1.0}, {"x": 1.0}, [0, 1])
    with pytest.raises(ModelError, match="dose at t=1.0 goes into 'z', which is not a state"):
        simulate(decay, None, {"x": 1.0}, [0, 1, 2], doses=[Bolus(1.0, "z", 1.0)])
    with pytest.raises(ModelError, match="input 'u' is neither a model input nor a state"):
        simulate(decay, None, {"x": 1.0}, [0, 1, 2], [Input("u", (0.0,), (1.0,))])
    with pytest.raises(DataError, match="non-decreasing"):
        simulate(decay, None, {"x": 1.0}, [0, 2, 1])
    with pytest.raises(DataError, match="outside the simulated span"):
        simulate(decay, None, {"x": 1.0}, [0, 1, 2], doses=[Bolus(5.0, "x", 1.0)])
    with pytest.raises(ModelError, match="parameter array has shape"):
        simulate(decay, np.ones(3), {"x": 1.0}, [0, 1])
    with pytest.raises(ModelError, match="overrides 'q'"):
        simulate_dataset(decay, None, Dataset((Experiment("e", np.arange(3.0), ("x",), np.ones(3), overrides={"q": 1}),)))


def test_a_large_dose_into_an_empty_state_is_not_a_blow_up(decay: Model):
    got = simulate(decay, None, {"x": 0.0}, [0.0, 1.0, 2.0], doses=[Bolus(0.0, "x", 1e13)], **TIGHT).state("x")
    np.testing.assert_allclose(got, 1e13 * np.exp(-0.5 * np.array([0.0, 1.0, 2.0])), rtol=1e-8)


def test_a_solve_whose_steps_keep_being_rejected_stops_after_the_rejection_limit():
    """After an accepted step, MAX_REJECTED_IN_ROW rejections in a row (a non-finite error estimate,
    as a Newton failure or a NaN right-hand side gives) end the solve as failed, as CVODES gives up a
    step, instead of shrinking the step towards round-off and spending the whole step budget. (On
    the failing start points of Crauste_CellSystems2017's multi-start a failed solve took 0.57 s;
    now 0.02-0.4 s.) Before the first accepted step rejections do not count: there they only
    correct a first step size guessed too large."""
    import diffrax

    from biotwin import _jax  # noqa: F401
    from biotwin.simulate import MAX_REJECTED_IN_ROW, implicit_solver, step_controller

    term = diffrax.ODETerm(lambda t, y, args: -y)
    controller = step_controller(1e-8, 1e-10)
    y = jnp.array([1.0])
    t1, state = controller.init(term, 0.0, 1.0, y, 0.01, None, term.vf, 5)
    t0 = 0.0
    keep, t0, t1, _, state, result = controller.adapt_step_size(t0, t1, y, y, None, jnp.array([1e-12]), 5, state)
    assert bool(keep) and result == diffrax.RESULTS.successful
    for rejection in range(1, MAX_REJECTED_IN_ROW + 1):
        keep, t0, t1, _, state, result = controller.adapt_step_size(t0, t1, y, y, None, jnp.array([jnp.inf]), 5, state)
        assert not bool(keep)
        expected = diffrax.RESULTS.dt_min_reached if rejection == MAX_REJECTED_IN_ROW else diffrax.RESULTS.successful
        assert result == expected, rejection

    # A first step of 1e15 on a transient of 1e-8 is rejected more than MAX_REJECTED_IN_ROW times, then the solve goes on.
    transient = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: -1e8 * (y - 1.0)), implicit_solver(1e-8, 1e-10), 0.0, 1e15, 1e15,
        jnp.array([0.0]), stepsize_controller=step_controller(1e-8, 1e-10), max_steps=4096, throw=False,
    )
    assert transient.result == diffrax.RESULTS.successful
    assert int(transient.stats["num_rejected_steps"]) > MAX_REJECTED_IN_ROW
    assert float(transient.ys[-1][0]) == pytest.approx(1.0, rel=1e-8)


def test_a_solve_whose_steps_no_longer_advance_time_stops_after_the_stall_limit():
    """Steps shrunk to round-off (t + h = t) have an error estimate of 0 and are accepted, and the
    controller's next step, a multiple of 0, is 0 again: such a solve used to spend its whole step
    budget standing still (45 of 47 failing trial points of two Crauste_CellSystems2017 starts).
    MAX_STALLED_IN_ROW accepted steps in a row shorter than STALLED_STEP |t| end it as failed; one
    short step among normal ones (a step clipped onto an output time that the previous step missed
    by round-off) does not."""
    import diffrax

    from biotwin import _jax  # noqa: F401
    from biotwin.simulate import MAX_STALLED_IN_ROW, step_controller

    term = diffrax.ODETerm(lambda t, y, args: -y)
    y, zero = jnp.array([1.0]), jnp.array([0.0])
    controller = step_controller(1e-8, 1e-10)

    def accepted(t0: float, t1: float, state: object) -> tuple:
        keep, _, _, _, state, result = controller.adapt_step_size(
            jnp.asarray(t0), jnp.asarray(t1), y, y, None, zero, 5, state)
        assert bool(keep)
        return state, result

    _, state = controller.init(term, 0.0, 10.0, y, 0.01, None, term.vf, 5)
    state, result = accepted(0.0, 7.5, state)
    for stall in range(1, MAX_STALLED_IN_ROW + 1):
        state, result = accepted(7.5, 7.5, state)
        expected = diffrax.RESULTS.dt_min_reached if stall == MAX_STALLED_IN_ROW else diffrax.RESULTS.successful
        assert result == expected, stall

    _, state = controller.init(term, 0.0, 10.0, y, 0.01, None, term.vf, 5)
    for t0, t1 in [(0.0, 7.5), (7.5, 7.5 + 1e-15)] * MAX_STALLED_IN_ROW:
        state, result = accepted(t0, t1, state)
        assert result == diffrax.RESULTS.successful


def test_a_solve_whose_pace_cannot_reach_its_end_within_the_step_budget_stops_early():
    """A stiff oscillator whose steps stay far shorter than its horizon needs: once a quarter
    of the budget is spent, the solve fails at once instead of spending the rest (on Elowitz_Nature2000's
    failing trial points 10,000 steps cost 0.5 s, 2 s with sensitivities). The same solve with
    room enough in its budget, and one whose first steps are short but grow, succeed."""
    import diffrax

    from biotwin import _jax  # noqa: F401
    from biotwin.simulate import PACE_CHECK_AFTER, implicit_solver, step_controller

    # Van der Pol with mu = 1000: relaxation oscillations with sharp jumps every ~1600 time units.
    term = diffrax.ODETerm(lambda t, y, args: jnp.stack([y[1], 1000.0 * (1 - y[0] ** 2) * y[1] - y[0]]))
    solver = implicit_solver(1e-6, 1e-9)

    def solve(end: float, budget: int) -> diffrax.Solution:
        return diffrax.diffeqsolve(term, solver, 0.0, end, None, jnp.array([2.0, 0.0]),
                                   stepsize_controller=step_controller(1e-6, 1e-9, end=end, budget=budget),
                                   max_steps=budget, throw=False)

    short = solve(3000.0, 400)
    assert short.result == diffrax.RESULTS.dt_min_reached
    assert int(short.stats["num_steps"]) < 400
    assert int(short.stats["num_steps"]) >= PACE_CHECK_AFTER * 400
    enough = solve(3000.0, 20000)
    assert enough.result == diffrax.RESULTS.successful
    assert int(enough.stats["num_steps"]) > 400

    # A fast transient (rate 1e6) and then slow decay: the first steps are 1e-7 long, then grow.
    transient = diffrax.ODETerm(lambda t, y, args: jnp.stack([-1e6 * (y[0] - y[1]), -y[1]]))
    solved = diffrax.diffeqsolve(transient, solver, 0.0, 100.0, None, jnp.array([0.0, 1.0]),
                                 stepsize_controller=step_controller(1e-6, 1e-9, end=100.0, budget=400),
                                 max_steps=400, throw=False)
    assert solved.result == diffrax.RESULTS.successful
    assert float(solved.ys[-1][1]) == pytest.approx(np.exp(-100.0), abs=1e-9)


def test_derivatives_of_the_rates_are_zero_only_at_a_state_that_is_not_finite():
    """Forward mode: a diverged Newton iterate (a non-finite state) gets derivatives 0, so does an
    entry of f that is not finite; elsewhere the derivatives are the rates' own, in reverse mode too."""
    from biotwin import _jax  # noqa: F401  (float64)

    def rates(t, y, theta, u):
        return jnp.stack([theta[0] * jnp.sqrt(y[0]) - theta[1] * y[1], theta[1] * y[0]])

    masked = finite_tangents(rates)
    theta, u = jnp.array([2.0, 0.5]), jnp.zeros(0)
    # per state: which rows of the Jacobians keep the rates' own derivatives (the others are 0)
    cases = {(4.0, 1.0): [True, True], (-1.0, 1.0): [False, True], (float("nan"), 1.0): [False, False]}
    for state, kept in cases.items():
        y = jnp.array(state)
        assert np.array_equal(np.asarray(masked(0.0, y, theta, u)), np.asarray(rates(0.0, y, theta, u)), equal_nan=True)
        for argument in (1, 2):
            own = np.asarray(jax.jacfwd(rates, argnums=argument)(0.0, y, theta, u))
            ours = np.asarray(jax.jacfwd(masked, argnums=argument)(0.0, y, theta, u))
            for row, keep in enumerate(kept):
                np.testing.assert_array_equal(ours[row], own[row] if keep else 0.0)
            assert np.all(np.isfinite(own)) == all(kept)  # the non-finite derivatives that made solves raise
            if all(kept):
                reverse = np.asarray(jax.jacrev(masked, argnums=argument)(0.0, y, theta, u))
                np.testing.assert_allclose(reverse, own, rtol=1e-15)

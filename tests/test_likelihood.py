"""The likelihood of a dataset under a noise model: values, derivatives, the noise scale's optimum, errors."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from biotwin.data import Dataset, Experiment
from biotwin.errors import DataError, ModelError
from biotwin.likelihood import dataset_objective
from biotwin.model import Model
from biotwin.simulate import simulate

# A two-state chain whose second state is hidden; its initial value is a parameter.
MODEL = Model.from_text(
    """
    dA/dt = -k1*A
    dB/dt = k1*A - k2*B
    A(0) = A0
    B(0) = 0
    observable total = s*(A + B)
    observable product = B
    k1 in [0.01, 10] log = 0.7
    k2 in [0.01, 10] log = 0.3
    A0 in [0.1, 100] = 5.0
    s in [0.1, 10] = 1.2
    """
)
TIMES = np.linspace(0.5, 8.0, 9)
TOL = dict(rtol=1e-10, atol=1e-12)


def _dataset(seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    experiments = []
    for name, overrides in (("base", {}), ("more", {"A0": 9.0}), ("slow", {"k2": 0.1})):
        truth = simulate(MODEL, dict(overrides) or None, None, TIMES, start=0.0, rtol=1e-10, atol=1e-12).observables
        values = truth * (1 + 0.05 * rng.standard_normal(truth.shape)) + 0.02 * rng.standard_normal(truth.shape)
        values = np.abs(values)
        values[2, 1] = np.nan  # a missing cell
        experiments.append(Experiment(name, TIMES, ("total", "product"), values, overrides=overrides, t0=0.0))
    return Dataset(tuple(experiments))


DATA = _dataset()


def _predictions(values: dict[str, float]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Simulated observables and data per experiment, on the measurement grid."""
    predicted, measured = [], []
    for experiment in DATA:
        parameters = {**values, **{k: v for k, v in experiment.overrides.items()}}
        solution = simulate(MODEL, parameters, None, experiment.times, start=0.0, rtol=1e-11, atol=1e-13)
        predicted.append(solution.observables)
        measured.append(experiment.values)
    return predicted, measured


def _hand_nll(values: dict[str, float], sigma: dict[str, float], noise: str) -> float:
    predicted, measured = _predictions(values)
    total = 0.0
    for h, y in zip(predicted, measured):
        for j, name in enumerate(("total", "product")):
            keep = ~np.isnan(y[:, j])
            hj, yj, s = h[keep, j], y[keep, j], sigma[name]
            if noise == "normal":
                total += np.sum(0.5 * np.log(2 * np.pi * s**2) + 0.5 * ((yj - hj) / s) ** 2)
            elif noise == "lognormal":
                total += np.sum(0.5 * np.log(2 * np.pi * s**2 * yj**2) + 0.5 * ((np.log(yj) - np.log(hj)) / s) ** 2)
            else:
                sd = s * np.abs(hj)
                total += np.sum(0.5 * np.log(2 * np.pi * sd**2) + 0.5 * ((yj - hj) / sd) ** 2)
    return total


@pytest.mark.parametrize("noise", ["normal", "lognormal", "proportional"])
def test_nll_equals_the_formula_on_simulated_trajectories(noise: str):
    objective = dataset_objective(MODEL, DATA, noise=noise, **TOL)
    assert objective.names == ("k1", "k2", "A0", "s", "sigma_total", "sigma_product")
    assert objective.scales == ("log10", "log10", "lin", "lin", "log10", "log10")
    values = {"k1": 0.9, "k2": 0.25, "A0": 4.0, "s": 1.1}
    sigma = {"total": 0.3, "product": 0.2} if noise == "normal" else {"total": 0.07, "product": 0.12}
    x = objective.point({**values, "sigma_total": sigma["total"], "sigma_product": sigma["product"]})
    expected = _hand_nll(values, sigma, noise)
    assert math.isfinite(expected)
    assert float(objective.nll(x)) == pytest.approx(expected, rel=1e-8)
    assert len(objective.measurements) == 3 * (2 * TIMES.size - 1)
    assert objective.predict(x).shape == objective.sigma(x).shape == (len(objective.measurements),)


def test_fixed_noise_and_a_subset_of_parameters():
    objective = dataset_objective(MODEL, DATA, estimate=["k1", "s"], sigma=0.25, **TOL)
    assert objective.names == ("k1", "s")
    assert objective.fixed["k2"] == 0.3 and objective.fixed["sigma_total"] == 0.25
    x = objective.point({"k1": 0.8, "s": 1.3})
    expected = _hand_nll({"k1": 0.8, "k2": 0.3, "A0": 5.0, "s": 1.3}, {"total": 0.25, "product": 0.25}, "normal")
    assert float(objective.nll(x)) == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("noise", ["normal", "proportional"])
def test_gradient_equals_finite_differences(noise: str):
    # Central differences of step 1e-4 on a solve accurate to 1e-12: errors about 1e-6.
    objective = dataset_objective(MODEL, DATA, noise=noise, rtol=1e-12, atol=1e-14)
    x = objective.point({"k1": 0.9, "k2": 0.25, "A0": 4.0, "s": 1.1, "sigma_total": 0.3, "sigma_product": 0.2})
    gradient = np.asarray(jax.grad(objective.nll)(x))
    forward = np.asarray(jax.jacfwd(objective.nll)(x))
    step = 1e-4
    differences = np.array([
        (float(objective.nll(x + step * e)) - float(objective.nll(x - step * e))) / (2 * step) for e in np.eye(x.size)
    ])
    np.testing.assert_allclose(gradient, differences, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(forward, gradient, rtol=1e-10, atol=1e-10)


def test_the_nll_is_smallest_over_sigma_at_the_rms_residual():
    values = {"k1": 0.9, "k2": 0.25, "A0": 4.0, "s": 1.1}
    objective = dataset_objective(MODEL, DATA, estimate=list(values), **TOL)
    predicted, measured = _predictions(values)
    rms = {}
    for j, name in enumerate(("total", "product")):
        residuals = np.concatenate([(y[:, j] - h[:, j])[~np.isnan(y[:, j])] for h, y in zip(predicted, measured)])
        rms[name] = float(np.sqrt(np.mean(residuals**2)))
    x = objective.point({**values, "sigma_total": rms["total"], "sigma_product": rms["product"]})
    gradient = np.asarray(jax.grad(objective.nll)(x))
    assert np.abs(gradient[-2:]).max() < 1e-6
    best = float(objective.nll(x))
    for k in (-2, -1):
        for factor in (0.97, 1.03):
            moved = x.copy()
            moved[k] += math.log10(factor)
            assert float(objective.nll(moved)) > best


def test_half_the_squared_residuals_differ_from_the_nll_by_a_constant():
    objective = dataset_objective(MODEL, DATA, **TOL)
    first = objective.point({"k1": 0.9, "k2": 0.25, "A0": 4.0, "s": 1.1, "sigma_total": 0.3, "sigma_product": 0.2})
    second = objective.point({"k1": 0.5, "k2": 0.4, "A0": 6.0, "s": 0.9, "sigma_total": 0.05, "sigma_product": 1.5})
    gaps = [float(objective.nll(x)) - 0.5 * float(np.sum(np.asarray(objective.residuals(x)) ** 2)) for x in (first, second)]
    assert gaps[0] == pytest.approx(gaps[1], rel=1e-9, abs=1e-8)
    jacobian = jax.jacfwd(objective.residuals)(first)
    assert np.all(np.isfinite(np.asarray(jacobian)))


def test_the_objective_is_pure_jax_under_jit_and_vmap():
    objective = dataset_objective(MODEL, DATA, rtol=1e-7, atol=1e-9)
    xs = np.stack([objective.nominal, objective.nominal + 0.01])
    batched = jax.jit(jax.vmap(objective.nll))(xs)
    assert np.allclose(np.asarray(batched), [float(objective.nll(x)) for x in xs])
    hessian = np.asarray(jax.hessian(objective.nll)(objective.nominal))
    assert hessian.shape == (6, 6) and np.all(np.isfinite(hessian))


def test_a_failed_solve_gives_an_infinite_nll():
    growth = Model.from_text("dx/dt = r*x^2\nx(0) = 1\nr in [0, 10] = 0.1")
    data = Dataset.from_arrays([0.0, 1.0, 2.0, 3.0], np.array([[1.0], [1.1], [1.2], [1.4]]), ["x"])
    objective = dataset_objective(growth, data, sigma=0.1, rtol=1e-6, atol=1e-8, max_steps=2000)
    assert math.isfinite(float(objective.nll(np.array([0.1]))))
    assert float(objective.nll(np.array([5.0]))) == math.inf  # blows up at t = 0.2
    assert np.all(np.isfinite(np.asarray(jax.grad(objective.nll)(np.array([5.0])))))


def test_bad_input_is_a_clear_model_error():
    with pytest.raises(ModelError, match=r"unknown parameter 'kk1'; did you mean 'k1'\? \(the model's parameters are: k1, k2, A0, s\)"):
        dataset_objective(MODEL, DATA, estimate=["kk1"])
    with pytest.raises(ModelError, match="unknown noise model 'poisson'; choose one of normal, lognormal, proportional"):
        dataset_objective(MODEL, DATA, noise="poisson")
    unbounded = Model.from_text("dx/dt = -k*x\nx(0) = 2\nk = 0.5")
    data = Dataset.from_arrays([0.0, 1.0, 2.0], np.array([[2.0], [1.2], [0.7]]), ["x"])
    with pytest.raises(ModelError, match=r"parameter 'k' is estimated but has no finite bounds.*'k in \[0, 10\]'"):
        dataset_objective(unbounded, data)
    with pytest.raises(DataError, match="'y', which is not an observable of the model"):
        dataset_objective(unbounded, Dataset.from_arrays([0.0, 1.0, 2.0], np.ones((3, 1)), ["y"]), estimate=[])
    negative = Dataset.from_arrays([0.0, 1.0, 2.0], np.array([[2.0], [-0.1], [0.7]]), ["x"])
    with pytest.raises(DataError, match="log-normal noise needs positive measurements"):
        dataset_objective(unbounded, negative, noise="lognormal", estimate=[])


def test_fixed_parameters_are_not_estimated_by_default():
    model = Model.from_text("dx/dt = -k*x/V\nx(0) = 2\nk in [0, 10] = 0.5\nV = 2 fixed")
    data = Dataset.from_arrays([0.0, 1.0, 2.0], np.array([[2.0], [1.6], [1.3]]), ["x"])
    objective = dataset_objective(model, data, sigma=0.1)
    assert objective.names == ("k",)
    # V stays at 2: the best k over a grid is about twice the best rate k/V.
    grid = np.linspace(0.1, 2.0, 191)
    best = grid[np.argmin([float(objective.nll(np.array([k]))) for k in grid])]
    assert 0.35 < best < 0.5


def test_a_stiff_problem_is_calibrated_with_rodas5_and_a_mild_one_with_an_explicit_method():
    from biotwin.likelihood import nominal_simulator, stacked_plans
    from biotwin.simulate import SENSITIVITY_STIFF_METHOD, explicit_method

    times = np.linspace(0, 10, 11)
    data = Dataset.from_arrays(times, np.cos(times)[:, None], ["x"])
    for rate, expected in ((1e6, SENSITIVITY_STIFF_METHOD), (1.0, explicit_method(1e-6))):
        model = Model.from_text(f"dx/dt = -k*(x - cos(t))\nk = {rate}")
        # q = (k, x(0)): the experiment's parameter k is q[0], its initial state given as q[1].
        chosen = nominal_simulator(model, stacked_plans(model, data), np.array([rate, 1.0]), np.array([[0]]),
                                   np.array([[1]]), np.array([[True]]), method="auto", rtol=1e-6, atol=1e-9,
                                   max_steps=10_000)
        assert chosen.method == expected
    assert SENSITIVITY_STIFF_METHOD == "rodas5"

"""Trajectory least squares: recovery of known parameters, initial states, overrides, doses, selection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from biotwin.bench.corrupt import corrupt
from biotwin.bench.systems import Design, System
from biotwin.data import Bolus, Dataset, Experiment
from biotwin.errors import DataError, ModelError
from biotwin.fit import TrajectoryProblem, information_criterion
from biotwin.fit import fit_trajectories as fit
from biotwin.model import Model

TRUTH = Model.from_text("dx/dt = a*x - b*x*y\ndy/dt = -c*y + d*x*y\na=1\nb=0.1\nc=1.5\nd=0.075")
START = Model.from_text("dx/dt = a*x - b*x*y\ndy/dt = -c*y + d*x*y\na=0.8\nb=0.12\nc=1.3\nd=0.06")


@pytest.fixture(scope="module")
def noisy_predator_prey() -> Dataset:
    times = np.linspace(0, 10, 60)
    system = System("lv", "test", TRUTH, (Design("a", {"x": 10, "y": 5}, times), Design("b", {"x": 5, "y": 10}, times)))
    return corrupt(system.dataset(reveal_initial=False), "noise=0.03", seed=1)


def test_parameters_and_initial_states_are_recovered_from_noisy_trajectories(noisy_predator_prey: Dataset):
    result = fit(START, noisy_predator_prey)
    assert result.success
    for name, true in {"a": 1.0, "b": 0.1, "c": 1.5, "d": 0.075}.items():
        assert result.parameters[name] == pytest.approx(true, rel=0.03), name
    assert result.initial["a"]["x"] == pytest.approx(10, rel=0.03) and result.initial["b"]["y"] == pytest.approx(10, rel=0.03)
    assert result.n_free == 4 + 4 and result.n_data == 240


def test_information_criteria_prefer_the_true_structure(noisy_predator_prey: Dataset):
    problem = TrajectoryProblem(START, noisy_predator_prey)
    full = problem.fit(["a", "b", "c", "d"])
    reduced = problem.fit(["a", "b", "c"])  # d held at a wrong value
    assert full.aicc < reduced.aicc and full.bic < reduced.bic
    assert information_criterion(1.0, 10, 9, "aicc") == math.inf  # too few data for the parameters


def test_experiments_with_overrides_and_doses_are_fitted_jointly():
    truth = Model.from_text("dx/dt = -k*x + s\nk = 0.4\ns = 1.0")
    times = np.linspace(0, 12, 25)
    designs = (
        Design("baseline", {"x": 0.0}, times),
        Design("knock-out", {"x": 4.0}, times, overrides={"s": 0.0}),
        Design("bolus", {"x": 1.0}, times, doses=(Bolus(6.0, "x", 5.0),)),
    )
    system = System("turnover", "test", truth, designs)
    data = corrupt(system.dataset(reveal_initial=False), "noise=0.02", seed=3)
    start = Model.from_text("dx/dt = -k*x + s\nk in [0, 5] = 1.0\ns in [0, 10] = 3.0")
    result = fit(start, data)
    assert result.parameters["k"] == pytest.approx(0.4, rel=0.05)
    assert result.parameters["s"] == pytest.approx(1.0, rel=0.05)
    assert result.initial["knock-out"]["x"] == pytest.approx(4.0, rel=0.05)


def test_bounds_are_respected(noisy_predator_prey: Dataset):
    bounded = Model.from_text("dx/dt = a*x - b*x*y\ndy/dt = -c*y + d*x*y\na in [0.5, 0.9] = 0.8\nb=0.12\nc=1.3\nd=0.06")
    result = fit(bounded, noisy_predator_prey)
    assert 0.5 <= result.parameters["a"] <= 0.9


def test_bad_requests():
    data = Dataset((Experiment("e", np.arange(5.0), ("z",), np.ones(5)),))
    with pytest.raises(DataError, match="no observable of the data"):
        TrajectoryProblem(TRUTH, data)
    ok = Dataset((Experiment("e", np.arange(5.0), ("x",), np.ones(5)),))
    with pytest.raises(ModelError, match="unknown parameter 'q'"):
        TrajectoryProblem(TRUTH, ok).fit(["q"])
    with pytest.raises(ModelError, match="hidden state 'y'"):
        TrajectoryProblem(TRUTH, ok).fit(["a"])


def test_data_spanning_decades_are_fitted_on_the_log_scale_with_weights_log() -> None:
    # A decay over four decades with 10 % multiplicative noise: on the linear scale the late, small
    # values hardly count; on the log scale every point weighs alike.
    truth = Model.from_text("dx/dt = -k*x\nk in [0.01, 10] log = 1.0")
    times = np.linspace(0, 9, 19)
    clean = 100 * np.exp(-1.0 * times)
    noisy = clean * np.exp(0.1 * np.random.default_rng(3).standard_normal(times.size))
    data = Dataset.from_arrays(times, noisy[:, None], ["x"])
    problem = TrajectoryProblem(truth, data, weights="log")
    assert problem.padded().log_scale.used.tolist() == [True]
    assert np.allclose(problem.padded().values[0, :, 0], np.log(noisy))
    fitted = problem.fit(["k"], start={"k": 0.3})
    assert fitted.parameters["k"] == pytest.approx(1.0, rel=0.03)
    # A model whose prediction crosses zero gives large but finite residuals, not NaN.
    flat = Model.from_text("dx/dt = -k\nk in [0, 1000] = 50")
    crossing = TrajectoryProblem(flat, data, weights="log").fit(["k"], estimate_initial=False, max_evaluations=5)
    assert math.isfinite(crossing.rss)
    with pytest.raises(DataError, match="weights must be 'absolute', 'relative' or 'log'"):
        TrajectoryProblem(truth, data, weights="logarithmic")

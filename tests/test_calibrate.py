"""Multi-start calibration of likelihood objectives: real solves, Sobol starts, worker processes."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from biotwin.data import Dataset
from biotwin.errors import ModelError
from biotwin.fit import ABANDON_MARGIN, ABANDON_WINDOW, CONVERGED_WITHIN, cannot_catch_up, multistart, run_order, start_points
from biotwin.likelihood import dataset_objective
from biotwin.model import Model
from biotwin.simulate import simulate

TRUTH = "dx/dt = r*x*(1 - x/K)\nx(0) = 2\nr = 0.8\nK = 100"
MODEL = "dx/dt = r*x*(1 - x/K)\nx(0) = 2\nr in [0.01, 10] log = 1\nK in [1, 1000] log = 10"


def logistic_objective(seed: int = 0, model: str = MODEL):
    """Logistic growth measured at 15 times with 5 % log-normal noise; r, K and sigma estimated."""
    times = np.linspace(0, 12, 15)
    clean = simulate(Model.from_text(TRUTH), None, None, times).state("x")
    measured = clean * np.exp(0.05 * np.random.default_rng(seed).standard_normal(times.size))
    data = Dataset.from_arrays(times, measured[:, None], ["x"])
    return dataset_objective(Model.from_text(model), data, noise="lognormal")


@pytest.fixture(scope="module")
def calibrated():
    objective = logistic_objective()
    return objective, multistart(objective, starts=12, seed=0)


def test_multistart_finds_the_truth_and_counts_converged_starts(calibrated):
    objective, result = calibrated
    assert result.parameters["r"] == pytest.approx(0.8, rel=0.05)
    assert result.parameters["K"] == pytest.approx(100, rel=0.05)
    assert 0.02 < result.parameters["sigma_x"] < 0.1
    waterfall = result.waterfall
    assert np.all(np.diff(waterfall[np.isfinite(waterfall)]) >= 0), "starts are sorted best first"
    assert result.converged == int(np.sum(waterfall <= waterfall[0] + CONVERGED_WITHIN))
    assert result.converged >= 6, waterfall
    # The best start is at least as good as the truth.
    truth = objective.point({"r": 0.8, "K": 100.0, "sigma_x": 0.05})
    assert result.best_nll <= float(objective.nll(truth)) + 1e-6


def test_starts_cover_the_box_on_the_optimisation_scale():
    objective = logistic_objective()
    points = start_points(objective, 16, seed=1)
    assert points.shape == (16, objective.size)
    assert np.all(points >= objective.lower) and np.all(points <= objective.upper)
    # log-scaled r in [0.01, 10]: a quarter of the points in each decade-and-a-bit quartile of log r.
    quartiles = np.quantile(np.linspace(objective.lower[0], objective.upper[0], 5), [0.25, 0.5, 0.75])
    counts = np.histogram(points[:, 0], bins=[objective.lower[0], *quartiles, objective.upper[0]])[0]
    assert counts.tolist() == [4, 4, 4, 4]
    assert not np.allclose(points, start_points(objective, 16, seed=2))


def test_worker_processes_reach_the_same_optimum(calibrated):
    objective, serial = calibrated
    parallel = multistart(objective, starts=4, seed=0, processes=2, rebuild=functools.partial(logistic_objective, 0))
    assert len(parallel.starts) == 4 and parallel.compile_seconds > 0
    # The workers screened the starts; J at each start point is the main process's.
    for start in parallel.starts:
        assert start.initial_nll == pytest.approx(float(objective.nll(start.x0)), rel=1e-8)
    assert parallel.best_nll == pytest.approx(serial.best_nll, abs=1e-4)
    # The workers score the nominal values as the main process does.
    assert parallel.nominal_nll == pytest.approx(serial.nominal_nll, rel=1e-10) and np.isfinite(serial.nominal_nll)


def test_bad_multistart_requests_are_clear_errors():
    objective = logistic_objective()
    with pytest.raises(ModelError, match="starts have 2 entries but the objective estimates 3"):
        multistart(objective, starts=np.zeros((3, 2)))
    with pytest.raises(ModelError, match="rebuild="):
        multistart(objective, starts=4, processes=2)
    with pytest.raises(ModelError, match="at least one start"):
        start_points(objective, 0)


def test_starts_stop_on_a_negligible_nll_change_and_record_when_they_finished(calibrated):
    _, result = calibrated
    # Each start stops once an accepted step changes the NLL by < 1e-6, instead of creeping to
    # the evaluation budget (1000).
    assert max(s.evaluations for s in result.starts) < 100, [s.evaluations for s in result.starts]
    assert sorted(s.index for s in result.starts) == list(range(12))
    finished = sorted(s.finished for s in result.starts)
    assert np.all(np.diff(finished) > 0) and finished[-1] <= result.seconds
    assert result.compile_seconds < result.seconds_to_best <= result.seconds


def test_screened_starts_run_lowest_initial_nll_first_without_solving_their_first_point_twice(calibrated):
    from biotwin.optimise import minimiser

    objective, screened = calibrated
    # The order: lowest J first, unscreened (NaN) after, failed (+inf) last, ties by index; the
    # nominal point first when asked.
    assert run_order(np.array([3.0, np.nan, np.inf, 1.0, 3.0, -2.0])) == [5, 3, 0, 4, 1, 2]
    assert run_order(np.array([9.0, np.inf, 1.0]), nominal_first=True) == [0, 2, 1]
    ran = sorted(screened.starts, key=lambda s: s.finished)
    initial = [s.initial_nll for s in ran]
    assert np.all(np.isfinite(initial)) and initial == sorted(initial), initial
    for start in ran:
        assert start.initial_nll == pytest.approx(minimiser(objective).value(start.x0), rel=1e-12)
    # Each screening evaluation is the first evaluation of its start: no solve is spent twice.
    engine = minimiser(objective)
    before = engine.evaluations
    again = multistart(objective, starts=12, seed=0, abandon=False)
    assert engine.evaluations - before == 1 + sum(s.evaluations for s in again.starts)  # 1: the nominal point
    # The order changes when each start ends, not where: run in the given order, every start
    # (none abandoned) ends at the same NLL.
    given = multistart(objective, starts=12, seed=0, abandon=False, screen=False)
    assert all(np.isnan(s.initial_nll) for s in given.starts)
    assert [s.finished for s in sorted(given.starts, key=lambda s: s.index)] == sorted(s.finished for s in given.starts)
    by_index = lambda fit: [s.nll for s in sorted(fit.starts, key=lambda s: s.index)]
    np.testing.assert_allclose(by_index(again), by_index(given), rtol=1e-10)


def test_a_start_where_the_solve_fails_ends_at_once():
    """x' = r x^2 blows up at t = 1/(r x0): from r = 10 the solve fails before t = 0.1."""
    times = np.linspace(0, 4, 9)
    measured = 1 / (1 - 0.2 * times) * np.exp(0.02 * np.random.default_rng(0).standard_normal(times.size))
    data = Dataset.from_arrays(times, measured[:, None], ["x"])
    model = Model.from_text("dx/dt = r*x*x\nx(0) = 1\nr in [0.01, 10] log = 0.1")
    objective = dataset_objective(model, data, noise="lognormal", sigma=0.02)
    starts = np.array([objective.point({"r": 10.0}), objective.point({"r": 0.05})])
    result = multistart(objective, starts=starts)
    failed = next(s for s in result.starts if s.index == 0)
    assert failed.nll == np.inf and failed.evaluations == 1
    assert result.best.index == 1 and result.parameters["r"] == pytest.approx(0.2, rel=0.05)


def test_a_time_limit_stops_starting_new_starts(calibrated):
    objective, _ = calibrated
    result = multistart(objective, starts=6, seed=3, time_limit=0.0)
    assert len(result.starts) == 1 and result.starts[0].index == 0


def test_the_nominal_values_are_scored_a_fit_that_misses_them_says_so_and_they_can_be_a_start():
    at_truth = MODEL.replace("10] log = 1", "10] log = 0.8").replace("log = 10", "log = 100")
    objective = logistic_objective(model=at_truth)
    nominal = float(objective.nll(objective.nominal))
    stuck = multistart(objective, starts=2, seed=0, max_evaluations=1)  # one step from each Sobol point
    assert stuck.nominal_nll == pytest.approx(nominal, abs=1e-9)
    assert stuck.best_nll > nominal + 1, stuck.waterfall
    assert "nominal parameter values fit better" in stuck.missed_nominal()
    labels = []
    rescued = multistart(objective, starts=2, seed=0, from_nominal=True, progress=lambda *call: labels.append(call))
    assert labels[-1] == (3, 3, f"3 done, best NLL {rescued.best_nll:.6g}"), labels
    by_index = sorted(rescued.starts, key=lambda s: s.index)
    assert len(by_index) == 3 and np.array_equal(by_index[0].x0, objective.nominal)
    assert np.array_equal(by_index[1].x0, start_points(objective, 2, seed=0)[0])
    assert rescued.best_nll <= nominal and rescued.missed_nominal() is None


def test_kicks_to_the_bounds_lead_a_stuck_fit_to_the_optimum_and_leave_an_optimum_alone(calibrated):
    from biotwin.refine import refine

    objective, optimum = calibrated
    stuck = multistart(objective, starts=1, seed=3, max_evaluations=1)
    assert stuck.best_nll > optimum.best_nll + 1, stuck.waterfall
    refined = refine(objective, stuck)
    entry = max(refined.starts, key=lambda s: s.index)
    assert len(refined.starts) == 2 and entry.index == 1 and refined.starts[0] is entry
    assert refined.best_nll == pytest.approx(optimum.best_nll, abs=1e-4)
    at_bounds = np.isclose(entry.x0, objective.lower) | np.isclose(entry.x0, objective.upper)
    assert at_bounds.sum() == 1 and entry.evaluations > 0 and refined.seconds > stuck.seconds
    kept = refine(objective, optimum, max_rounds=1)
    again = max(kept.starts, key=lambda s: s.index)
    assert np.array_equal(again.x0, optimum.best_x) and again.nll == pytest.approx(optimum.best_nll, abs=1e-6)


def test_profile_walks_lead_a_stuck_fit_to_the_optimum_and_leave_an_optimum_alone(calibrated):
    from biotwin.refine import refine

    objective, optimum = calibrated
    stuck = multistart(objective, starts=1, seed=3, max_evaluations=1)
    labels = []
    refined = refine(objective, stuck, kicks=False, progress=lambda *call: labels.append(call[2]))
    entry = max(refined.starts, key=lambda s: s.index)
    assert refined.best_nll == pytest.approx(optimum.best_nll, abs=1e-4) and refined.starts[0] is entry
    # The walk's point holds one parameter on its profile, off both bounds: not a kick.
    inside = (entry.x0 > objective.lower) & (entry.x0 < objective.upper)
    assert inside.all() and not np.array_equal(entry.x0, stuck.best_x)
    assert labels and all(", profiles: best NLL" in label for label in labels), labels
    kept = refine(objective, optimum, kicks=False)
    again = max(kept.starts, key=lambda s: s.index)
    assert np.array_equal(again.x0, optimum.best_x) and again.nll == pytest.approx(optimum.best_nll, abs=1e-6)


def test_the_rule_abandons_a_start_far_above_the_best_that_its_recent_rate_cannot_bring_there():
    slow = list(np.linspace(100.0, 90.0, 61))  # 1/6 per evaluation: 157 more over the remaining 939
    assert not cannot_catch_up(slow, best_known=50.0, max_evaluations=1000)
    assert cannot_catch_up(slow, best_known=50.0, max_evaluations=200)  # only 23 more within 200
    crawling = [100.0] * 10 + list(np.linspace(95.0, 94.9, 51))  # 0.1 over the last 50
    assert cannot_catch_up(crawling, best_known=50.0, max_evaluations=1000)
    assert not cannot_catch_up(crawling, best_known=93.0, max_evaluations=1000)  # within the 1.92 margin
    assert not cannot_catch_up(crawling[:ABANDON_WINDOW], best_known=50.0, max_evaluations=1000)  # too early
    assert not cannot_catch_up(crawling, best_known=np.inf, max_evaluations=1000)  # nothing finished yet
    failing = [np.inf] * 61
    assert not cannot_catch_up(failing, best_known=50.0, max_evaluations=1000)


@pytest.mark.filterwarnings("ignore:The 'float_precision' argument is deprecated")
@pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.set_index is deprecated")
def test_a_start_that_cannot_catch_up_with_the_best_is_abandoned_and_would_have_ended_worse(shared_data):
    from biotwin.io.petab import load_petab

    name = "Crauste_CellSystems2017"
    objective = load_petab(shared_data / "petab" / name / f"{name}.yaml").objective(method="rodas5")
    fit = multistart(objective, starts=8, seed=0)
    abandoned = sorted((s for s in fit.starts if s.abandoned), key=lambda s: s.index)
    assert abandoned and fit.abandoned == len(abandoned), fit.waterfall
    assert all(s.nll > fit.best_nll + ABANDON_MARGIN and ABANDON_WINDOW < s.evaluations < 1000 for s in abandoned)
    # Run to their end, the abandoned starts cost more and none reaches the best.
    to_the_end = multistart(objective, starts=np.array([s.x0 for s in abandoned]), abandon=False)
    assert to_the_end.abandoned == 0
    assert min(s.nll for s in to_the_end.starts) > fit.best_nll + CONVERGED_WITHIN
    assert sum(s.evaluations for s in to_the_end.starts) > sum(s.evaluations for s in abandoned)

"""Virtual experiments: scenarios, batched forecasts over draws, paired comparisons, dose optimisation, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from biotwin.cli import app
from biotwin.control import BolusDesign, Bound, Goal, optimise_schedule, read_design
from biotwin.data import Bolus, Dataset, Input
from biotwin.errors import DataError, ModelError
from biotwin.experiment import (
    Dosing,
    Infusion,
    ParameterDraws,
    Scenario,
    compare,
    forecast,
    read_scenarios,
)
from biotwin.model import Model
from biotwin.simulate import simulate

ROOT = Path(__file__).resolve().parents[1]
LYNX_HARE = ROOT / "examples" / "models" / "lotka_volterra_lynx_hare.txt"
DECAY = Model.from_text("dx/dt = u - k*x\ninput u\nk in [0.01, 10] = 0.5\nx(0) = 2")
# A drug D (eliminated at rate 2) kills a tumour T: log T(10) = 3 - kd * int_0^10 D dt, and a
# dose a at t_d contributes a (1 - exp(-2 (10 - t_d))) / 2 to the integral.
DRUG_KILLS_TUMOUR = Model.from_text("dD/dt = -2*D\ndT/dt = 0.3*T - kd*D*T\nkd in [0.01, 5] = 0.5\nD(0) = 0\nT(0) = 1")


def lognormal_draws(model: Model, names: tuple[str, ...], count: int, spread: float = 0.05) -> ParameterDraws:
    rng = np.random.default_rng(0)
    values = np.column_stack([model.parameter(n).value * np.exp(spread * rng.standard_normal(count)) for n in names])
    return ParameterDraws(names, values)


def test_forecast_matches_direct_solves_draw_by_draw() -> None:
    model = Model.from_file(str(LYNX_HARE))
    draws = lognormal_draws(model, ("alpha", "gamma"), 50)
    scenario = Scenario("release", horizon=20, times=tuple(np.linspace(0, 20, 41)),
                        doses=(Dosing("lynx", 10.0, start=5, every=5, count=2),), parameters={"beta": 0.03})
    result = forecast(model, scenario, draws)
    assert result.n_failed == 0 and result.states.shape == (50, 41, 2)
    for s in (0, 17, 49):
        direct = simulate(model, {"alpha": draws.values[s, 0], "gamma": draws.values[s, 1], "beta": 0.03},
                          times=scenario.output_times(), doses=(Bolus(5, "lynx", 10.0), Bolus(10, "lynx", 10.0)))
        np.testing.assert_allclose(result.states[s], direct.states, rtol=1e-6)
    bands = result.bands("hare")
    assert np.all(bands["q05"] <= bands["q25"]) and np.all(bands["q25"] <= bands["median"])
    assert np.all(bands["median"] <= bands["q75"]) and np.all(bands["q75"] <= bands["q95"])


def test_knockout_clamp_and_infusion_act_as_their_equations_say() -> None:
    draws = ParameterDraws(("k",), np.array([[0.5], [1.0]]))
    knocked = forecast(DECAY, Scenario("ko", horizon=4, knockouts=("k",)), draws)
    np.testing.assert_allclose(knocked.trajectories("x"), 2.0)          # dx/dt = 0 without decay
    clamped = forecast(DECAY, Scenario("clamp", horizon=4, clamp={"x": 3.0}), draws)
    np.testing.assert_allclose(clamped.trajectories("x"), 3.0)
    # Infusion at rate 1 on [0, 4) from x(0)=2 with k: x(t) = 1/k + (2 - 1/k) exp(-k t).
    infused = forecast(DECAY, Scenario("infusion", horizon=4, infusions=(Infusion("x", 1.0, 0.0, 4.0),)), draws)
    t = infused.times
    for row, k in zip(infused.trajectories("x"), (0.5, 1.0)):
        np.testing.assert_allclose(row, 1 / k + (2 - 1 / k) * np.exp(-k * t), rtol=1e-5)
    with_input = forecast(DECAY, Scenario("input", horizon=4, inputs=(Input("u", (0.0,), (1.0,)),)), draws)
    np.testing.assert_allclose(with_input.trajectories("x"), infused.trajectories("x"), rtol=1e-6)


def test_paired_comparison_reports_the_effect_with_its_interval() -> None:
    draws = ParameterDraws(("k",), np.linspace(0.2, 1.0, 41)[:, None])
    base = forecast(DECAY, Scenario("control", horizon=2), draws)
    dosed = forecast(DECAY, Scenario("dosed", horizon=2, doses=(Dosing("x", 2.0, start=0.0),)), draws)
    difference = compare(dosed, base, "x", 2.0)
    # A dose that doubles x(0) doubles x(t) in every draw of a linear model: +100 %, no spread.
    assert difference.median == pytest.approx(1.0, rel=1e-5)
    assert difference.low == pytest.approx(1.0, rel=1e-5) and difference.high == pytest.approx(1.0, rel=1e-5)
    assert difference.text.startswith("x at t=2: +100% [+100%, +100%] vs. control")


def test_blown_up_draws_are_counted_not_dropped() -> None:
    model = Model.from_text("dx/dt = a*x^2\na = 1\nx(0) = 1")
    draws = ParameterDraws(("a",), np.array([[0.01], [0.02], [2.0]]))   # a=2 blows up at t=0.5
    result = forecast(model, Scenario("s", horizon=1), draws)
    assert result.n_failed == 1 and result.failed.tolist() == [False, False, True]
    assert "draw 2: blew up" in result.failures[0]
    assert np.all(np.isnan(result.trajectories("x")[2]))
    with pytest.raises(ModelError, match="draws failed to solve"):
        forecast(model, Scenario("s", horizon=1), ParameterDraws(("a",), np.array([[2.0], [3.0]])))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"horizon": 10, "doses": [{"state": "wolf", "amount": 1}]}, "unknown state 'wolf'"),
        ({"horizon": 10, "parameters": {"alpah": 1}}, "did you mean 'alpha'"),
        ({"horizon": 10, "knockout": ["zeta"]}, "unknown parameter 'zeta'"),
        ({"horizon": 10, "clamp": {"fox": 1}}, "unknown state 'fox'"),
    ],
)
def test_scenarios_naming_what_the_model_lacks_are_refused(entry: dict, message: str) -> None:
    scenario = read_scenarios({"scenarios": {"bad": entry}}).scenarios[0]
    with pytest.raises(ModelError, match=message):
        scenario.check(Model.from_file(str(LYNX_HARE)))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"scenarios": {"s": {"horizon": -1}}}, "horizon -1.0 must lie after the start"),
        ({"scenarios": {"s": {"horizon": 5, "doses": [{"state": "x", "amount": 1, "start": -2}]}}}, "times must be >= 0"),
        ({"scenarios": {"s": {"horizon": 5, "doses": [{"state": "x", "amount": 1, "start": 8}]}}}, "outside"),
        ({"scenarios": {"s": {"horizon": 5, "dose": []}}}, "unknown setting 'dose'"),
        ({"scenarios": {"s": {}}}, "has no horizon"),
        ({"horizon": 5}, "needs a 'scenarios:' mapping"),
        ({"horizon": 5, "scenarios": {"s": {}}, "compare": [{"scenario": "s", "baseline": "t", "quantity": "x",
                                                            "time": 1}]}, "not one of the scenarios"),
    ],
)
def test_invalid_scenario_files_get_one_clear_error(content: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_scenarios(content)


def test_top_level_settings_are_shared_and_mappings_merge() -> None:
    plan = read_scenarios({"horizon": 5, "initial": {"hare": 30, "lynx": 4},
                           "scenarios": {"a": {}, "b": {"initial": {"lynx": 8}, "horizon": 9}}})
    a, b = plan.scenarios
    assert dict(a.initial) == {"hare": 30, "lynx": 4} and a.horizon == 5
    assert dict(b.initial) == {"hare": 30, "lynx": 8} and b.horizon == 9


def test_optimised_doses_reach_the_known_optimum_and_beat_an_even_split() -> None:
    # With 12 to give in doses of at most 6 (see DRUG_KILLS_TUMOUR), the optimum gives 6 at t=0 and
    # 6 at t=3 (full exposure) and nothing at t=9, whose drug is still in the body at the horizon:
    # E[T(10)] = mean_s exp(3 - 6 kd_s).
    model = DRUG_KILLS_TUMOUR
    scenario = Scenario("base", horizon=10, times=tuple(np.linspace(0, 10, 101)))
    design = BolusDesign("D", (0.0, 3.0, 6.0, 9.0), max_dose=6.0, max_total=12.0)
    draws = lognormal_draws(model, ("kd",), 8, spread=0.1)
    schedule = optimise_schedule(model, scenario, design, Goal("T", "final"), bounds=[Bound("D", upper=6.5)],
                                 draws=draws)
    optimum = float(np.mean(np.exp(3.0 - 6.0 * draws.values[:, 0])))
    assert schedule.value == pytest.approx(optimum, rel=2e-3)
    assert schedule.total == pytest.approx(12.0, rel=1e-3)
    assert schedule.amounts[-1] < 0.05 and np.all(schedule.amounts <= 6.0 + 1e-9)
    optimised = forecast(model, schedule.scenario(scenario), draws)
    even = forecast(model, Scenario("even", horizon=10, times=scenario.times,
                                    doses=tuple(Dosing("D", 3.0, t) for t in design.times)), draws)
    assert np.mean(optimised.at("T", 10.0)) == pytest.approx(schedule.value, rel=1e-4)
    assert np.mean(optimised.at("T", 10.0)) < np.mean(even.at("T", 10.0))
    assert np.nanmax(optimised.trajectories("D")) <= 6.5 + 1e-3


def test_an_optimiser_stopped_across_a_bound_returns_the_best_iterate_that_kept_it() -> None:
    import jax.numpy as jnp

    from biotwin.control import _minimise_in_unit_box

    # Minimise x subject to sqrt(x) >= sqrt(0.5): the constraint is concave, so each SLSQP step on
    # its linearisation lands below 0.5 (from 1 to 0.414, then 0.496) before converging to 0.5.
    def stacked(v: jnp.ndarray) -> jnp.ndarray:
        return jnp.stack([v[0], jnp.sqrt(v[0]) - jnp.sqrt(0.5)])

    stopped = _minimise_in_unit_box(stacked, np.array([1.0]), budget_row=None, max_iterations=2, progress=None)
    assert stopped.x[0] == 1.0 and not stopped.converged
    assert stopped.message.endswith("the best iterate that kept every bound is returned")
    finished = _minimise_in_unit_box(stacked, np.array([1.0]), budget_row=None, max_iterations=50, progress=None)
    assert finished.converged and finished.x[0] == pytest.approx(0.5, abs=1e-3)


def test_design_files_are_validated() -> None:
    with pytest.raises(DataError, match="exactly one of 'bolus'"):
        read_design({"scenario": {"horizon": 5}, "goal": {"quantity": "T"}})
    with pytest.raises(DataError, match="unknown goal 'least'"):
        read_design({"scenario": {"horizon": 5}, "goal": {"quantity": "T", "kind": "least"},
                     "bolus": {"state": "D", "times": [0, 1], "max_dose": 1}})
    plan = read_design({"scenario": {"horizon": 5}, "goal": {"quantity": "T"},
                        "bolus": {"state": "D", "times": "0:4:5", "max_dose": 1, "max_total": 3}})
    assert plan.design.times == (0.0, 1.0, 2.0, 3.0, 4.0) and plan.robust == "mean"


def test_cli_predict_writes_forecasts_and_refuses_bad_scenarios(tmp_path: Path) -> None:
    from biotwin.io.csv import read_csv
    from biotwin.io.twin import save_twin
    from biotwin.twin import Twin

    twin = tmp_path / "twin"
    save_twin(Twin(Model.from_file(str(LYNX_HARE)), read_csv(ROOT / "examples" / "data" / "hudson_bay_lynx_hare.csv")), twin)
    runner = CliRunner()
    result = runner.invoke(app, ["predict", str(twin), str(ROOT / "examples" / "scenarios" / "lynx_hare.yaml"), "--no-png"])
    assert result.exit_code == 0, result.output
    record = json.loads((twin / "forecasts.json").read_text())
    assert set(record["scenarios"]) == {"unchanged", "lynx_trapping", "lynx_release", "hare_protected"}
    unchanged = record["scenarios"]["unchanged"]
    assert unchanged["samples"] == 1 and unchanged["failed"] == 0 and len(unchanged["times"]) == 301
    assert all(v == pytest.approx(30.0) for v in record["scenarios"]["hare_protected"]["states"]["hare"]["median"])
    assert record["comparisons"][0]["text"].startswith("hare at t=25:")
    assert not math.isnan(record["comparisons"][0]["median"])

    bad = tmp_path / "bad.yaml"
    bad.write_text("horizon: 10\nscenarios:\n  cull: {knockout: [omega]}\n")
    (twin / "forecasts.json").unlink()
    result = runner.invoke(app, ["predict", str(twin), str(bad)])
    assert result.exit_code == 2
    assert "unknown parameter 'omega'" in result.output
    assert not (twin / "forecasts.json").exists()


# Slow (55-70 s): the optimize command's test below trains a feedback rule through the same closed
# loop in the default suite (from the open-loop optimum); this one trains it from scratch.
@pytest.mark.slow
def test_feedback_rule_is_trained_through_the_closed_loop_and_replays_as_its_doses() -> None:
    from biotwin.feedback import FeedbackDesign, train_feedback

    model = DRUG_KILLS_TUMOUR
    scenario = Scenario("base", horizon=10, times=tuple(np.linspace(0, 10, 51)))
    doses = BolusDesign("D", (0.0, 3.0, 6.0, 9.0), max_dose=6.0, max_total=12.0)
    draws = lognormal_draws(model, ("kd",), 8, spread=0.3)
    rule = train_feedback(model, scenario, FeedbackDesign(doses, ("T",), width=4), Goal("T", "final"), draws=draws,
                          max_iterations=60)
    # Every patient's best doses are the same (6 at t=0 and t=3, see the open-loop test): the rule must find them.
    optimum = float(np.mean(np.exp(3.0 - 6.0 * draws.values[:, 0])))
    assert rule.value < rule.start_value and rule.value == pytest.approx(optimum, rel=0.05)
    result, given = rule.forecast(model, scenario, draws)
    assert given.shape == (8, 4) and np.all(given >= 0) and np.all(given <= 6.0 + 1e-9)
    assert np.all(given.sum(axis=1) <= 12.0 + 1e-9)
    assert np.mean(result.at("T", 10.0)) == pytest.approx(rule.value, rel=1e-6)
    # The closed loop is the open-loop solve of the doses it chose, draw by draw.
    for s in (0, 5):
        replay = forecast(model, Scenario("replay", horizon=10, times=scenario.times,
                                          doses=tuple(Dosing("D", float(a), t) for a, t in zip(given[s], doses.times) if a > 0)),
                          ParameterDraws(draws.names, draws.values[s:s + 1]))
        np.testing.assert_allclose(replay.trajectories("T")[0], result.trajectories("T")[s], rtol=1e-5)
    # Started from the open-loop optimum's doses, the untrained rule gives them to every patient
    # (each full dose 0.01 % short of the room, the network's output near 0), and a few goal steps keep it there.
    around = train_feedback(model, scenario, FeedbackDesign(doses, ("T",), width=4), Goal("T", "final"),
                            draws=draws, max_iterations=3, start_from=(6.0, 6.0, 0.0, 0.0))
    assert around.start_value == pytest.approx(optimum, rel=5e-3) and around.value <= around.start_value


def test_feedback_rules_that_cannot_be_trained_are_refused() -> None:
    from biotwin.feedback import FeedbackDesign, train_feedback

    model = DRUG_KILLS_TUMOUR
    scenario = Scenario("base", horizon=10, times=tuple(np.linspace(0, 10, 51)))
    doses = BolusDesign("D", (0.0, 3.0, 6.0, 9.0), max_dose=6.0, max_total=12.0)
    draws = lognormal_draws(model, ("kd",), 8, spread=0.3)
    with pytest.raises(DataError, match="starts from 2 doses but decides at 4 times"):
        train_feedback(model, scenario, FeedbackDesign(doses, ("T",)), Goal("T", "final"), draws=draws,
                       start_from=(6.0, 6.0))
    with pytest.raises(DataError, match="observes unknown state or observable 'X'"):
        train_feedback(model, scenario, FeedbackDesign(doses, ("X",)), Goal("T", "final"), draws=draws)
    with pytest.raises(DataError, match="'feedback' needs 'observe"):
        read_design({"scenario": {"horizon": 5}, "goal": {"quantity": "T"}, "feedback": {"width": 3},
                     "bolus": {"state": "D", "times": [0, 1], "max_dose": 1}})


def test_optimize_command_trains_the_feedback_rule_from_the_open_loop_optimum(tmp_path: Path) -> None:
    import subprocess
    import sys

    from biotwin.io.twin import save_twin
    from biotwin.twin import Twin

    data = Dataset.from_arrays(np.arange(4.0), np.array([[1.0], [1.3], [1.8], [2.4]]), ["T"])
    twin = save_twin(Twin(DRUG_KILLS_TUMOUR, data), tmp_path / "twin")
    design = tmp_path / "design.yaml"
    design.write_text('scenario: {horizon: 10, times: "0:10:51"}\n'
                      "bolus: {state: D, times: [0, 3, 6, 9], max_dose: 6, max_total: 12}\n"
                      "goal: {quantity: T, kind: final}\ndraws: 1\nfeedback: {observe: [T], width: 4}\n")
    result = subprocess.run([sys.executable, "-m", "biotwin.cli", "optimize", str(twin), str(design)],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    record = json.loads((twin / "schedule.json").read_text())
    optimised, feedback = record["regimens"]["optimised"], record["regimens"]["feedback"]
    # Started from the optimum's doses (each within 0.01 % of it), the rule ends within 5 % of it (the same patient).
    assert feedback["goal_median"] == pytest.approx(optimised["goal_median"], rel=0.05)
    assert feedback["total"] == pytest.approx(12.0, rel=1e-3) and record["feedback"]["iterations"] > 0

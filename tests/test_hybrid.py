"""Hybrid twins: a Lotka-Volterra skeleton with unknown interactions, trained and distilled back into equations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy

from biotwin.data import Bolus, Dataset, Experiment
from biotwin.discover.hybrid import Skeleton, distill, train_hybrid
from biotwin.errors import ModelError
from biotwin.io.twin import load_twin
from biotwin.model import Model
from biotwin.simulate import simulate, simulate_dataset
from tests.conftest import EXAMPLES
from tests.test_cli import assert_user_error, run


# Slow (100 s): the lynx-hare test below checks the same learning and distillation into mass action
# on real data, through the command line, in the default suite.
@pytest.mark.slow
def test_unknown_interactions_are_learned_and_distilled_into_mass_action_terms() -> None:
    # The classic universal-ODE test: 31 points on [0, 3] with 5 % noise, the interactions unknown.
    truth = Model.from_text("dx/dt = 1.3*x - 0.9*x*y\ndy/dt = -0.8*y + 1.8*x*y")
    times = np.linspace(0, 3, 31)
    clean = np.asarray(simulate(truth, times=times, y0={"x": 0.44249296, "y": 4.6280594}).states)
    noisy = clean * (1 + 0.05 * np.random.default_rng(0).standard_normal(clean.shape))
    data = Dataset.from_arrays(times, noisy, ["x", "y"])
    skeleton = Skeleton.from_text("dx/dt = a*x + NN1(x, y)\ndy/dt = -c*y + NN2(x, y)\na in [0, 5] = 1\nc in [0, 5] = 1")
    hybrid = train_hybrid(skeleton, data, steps=1000)
    distilled = distill(hybrid, data)
    x, y = sympy.symbols("x y")
    rhs = {s: sympy.expand(e.subs({sympy.Symbol(p.name): p.value for p in distilled.model.parameters}))
           for s, e in zip(distilled.model.states, distilled.model.rhs)}
    assert set(rhs["x"].as_coefficients_dict()) == {x, x * y}
    assert set(rhs["y"].as_coefficients_dict()) == {y, x * y}
    assert float(rhs["x"].coeff(x * y)) == pytest.approx(-0.9, rel=0.1)
    assert float(rhs["y"].coeff(x * y)) == pytest.approx(1.8, rel=0.1)


# Slow (70-120 s): the lynx-hare test below trains and distils a hybrid through the command line in
# the default suite; hidden states with doses are also exercised by the slow antiviral forecast.
@pytest.mark.slow
def test_a_hidden_state_and_its_doses_are_learned_through_the_skeleton() -> None:
    # Oral dosing: the drug in the gut is never measured, only the plasma concentration C; the
    # elimination law is unknown. Three doses train it; the distilled law must be first order.
    truth = Model.from_text("dgut/dt = -ka*gut\ndcentral/dt = ka*gut - ke*central\nobservable C = central/V\n"
                            "gut(0) = 0\ncentral(0) = 0\nka = 1.2\nke = 0.25\nV = 0.5")
    times = np.array([0.25, 0.5, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 12])
    rng = np.random.default_rng(1)
    plans = Dataset(tuple(Experiment(f"dose_{amount:g}", times, ("C",), np.ones((times.size, 1)),
                                     doses=(Bolus(0.0, "gut", amount),)) for amount in (1.0, 2.0, 4.0)))
    solved = simulate_dataset(truth, None, plans)
    data = Dataset(tuple(e.replace(values=solved[e.name].observable("C")[:, None] * np.exp(
        0.03 * rng.standard_normal((times.size, 1)))) for e in plans))
    skeleton = Skeleton.from_text("dgut/dt = -ka*gut\ndcentral/dt = ka*gut - NN1(central)\nobservable C = central/V\n"
                                  "gut(0) = 0\ncentral(0) = 0\nka in [0.1, 10] log = 1\nV = 0.5 fixed")
    hybrid = train_hybrid(skeleton, data, steps=400)
    assert hybrid.states["dose_4"][:, 0].max() > 1.0  # the hidden gut received its dose
    distilled = distill(hybrid, data)
    central = sympy.Symbol("central")
    law = sympy.expand(distilled.expressions["NN1"])
    assert set(law.as_coefficients_dict()) == {central}, law
    assert float(law.coeff(central)) == pytest.approx(0.25, rel=0.1)
    assert distilled.model.parameter("ka").value == pytest.approx(1.2, rel=0.1)


def test_skeletons_with_mistakes_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="has no neural term"):
        Skeleton.from_text("dx/dt = -a*x")
    with pytest.raises(ModelError, match="NN1 reads unknown state 'z'"):
        Skeleton.from_text("dx/dt = NN1(x, z)")
    with pytest.raises(ModelError, match="NN1 is called with"):
        Skeleton.from_text("dx/dt = NN1(x)\ndy/dt = NN1(x, y)")
    with pytest.raises(ModelError, match="no such skeleton file"):
        Skeleton.from_file(str(tmp_path / "missing.txt"))
    skeleton = Skeleton.from_text("dx/dt = -a*x + NN1(x, y)\ndy/dt = NN2(x)\na in [0, 1] = 0.5")
    only_x = Dataset.from_arrays(np.arange(5.0), np.ones((5, 1)), ["x"])
    with pytest.raises(ModelError, match="no initial value for the hidden state 'y'"):
        train_hybrid(skeleton, only_x, steps=1)
    unbounded = Skeleton.from_text("dx/dt = -a*x + NN1(x)")
    with pytest.raises(ModelError, match="parameter 'a' of the skeleton needs bounds"):
        train_hybrid(unbounded, only_x, steps=1)


def test_lynx_hare_skeleton_from_the_command_line_recovers_the_interactions(tmp_path: Path) -> None:
    # The real-data check: the Lotka-Volterra skeleton with unknown interactions, trained on
    # the Hudson Bay records, distils them into mass action: hares are eaten, lynx grow by eating.
    twin = tmp_path / "twin"
    result = subprocess.run(
        [sys.executable, "-m", "biotwin.cli", "discover", str(EXAMPLES / "data" / "hudson_bay_lynx_hare.csv"),
         "--skeleton", str(EXAMPLES / "skeletons" / "lotka_volterra.txt"), "--hybrid", "--steps", "300", "-o", str(twin),
         "--json"],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    hare, lynx = sympy.symbols("hare lynx")
    forms = {name: sympy.sympify(term["distilled"]) for name, term in record["terms"].items()}
    assert forms["NN1"].as_coefficients_dict().keys() == {hare * lynx}, forms
    assert forms["NN2"].as_coefficients_dict().keys() == {hare * lynx}, forms
    assert forms["NN1"].coeff(hare * lynx) < 0 < forms["NN2"].coeff(hare * lynx)
    assert record["seconds"] < 300 and "Hybrid twin of lotka_volterra.txt" in result.stderr
    saved = load_twin(twin)
    assert saved.discovery["hybrid"]["terms"] == record["terms"]
    assert {p.name for p in saved.model.parameters} == {"a", "c", "NN1_0", "NN2_0"}
    report = tmp_path / "report.html"
    made = subprocess.run([sys.executable, "-m", "biotwin.cli", "report", str(twin), "-o", str(report)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert made.returncode == 0, made.stderr
    html = report.read_text()
    assert "A hybrid twin" in html and html.count('id="plot-discovery-') == 2


def test_the_command_line_asks_for_skeleton_and_hybrid_together(tmp_path: Path) -> None:
    data = str(EXAMPLES / "data" / "hudson_bay_lynx_hare.csv")
    for flags in (["--hybrid"], ["--skeleton", str(EXAMPLES / "skeletons" / "lotka_volterra.txt")]):
        assert_user_error(run("discover", data, *flags), "needs both --skeleton FILE and --hybrid")
    twin = tmp_path / "twin"
    assert_user_error(run("discover", data, "--hybrid", "--skeleton", str(tmp_path / "none.txt"), "-o", str(twin)),
                      "no such skeleton file")
    assert not twin.exists()


@pytest.mark.slow
def test_a_hybrid_twin_with_a_hidden_state_forecasts_the_held_out_antiviral() -> None:
    # The bio-suite target: influenza with infected cells never measured; the hybrid twin's
    # forecast of the held-out antiviral must beat discovery without the skeleton at least 2x.
    from biotwin.bench.corrupt import corrupt
    from biotwin.bench.methods import method
    from biotwin.bench.metrics import forecast_nrmse, simulate_design
    from biotwin.bench.systems import system

    flu = system("bio", "influenza_target_cell")
    data = corrupt(flu.dataset(reveal_initial=False), "lognormal=0.05", seed=0)
    skeleton = Skeleton.from_file(str(EXAMPLES / "skeletons" / "influenza_target_cell.txt"))
    hybrid = train_hybrid(skeleton, data)
    distilled = distill(hybrid, data)
    held = flu.held_out[0]
    truth = flu.experiment(held).values
    ours = forecast_nrmse(truth, simulate_design(flu, distilled.model, held))
    theirs = forecast_nrmse(truth, simulate_design(flu, method("biotwin").discover(data, 0).model, held))
    assert ours * 2 <= theirs, (ours, theirs)
    assert hybrid.seconds < 300
    assert float(distilled.expressions["NN1"]) == pytest.approx(4.0, rel=0.1)  # the death rate of infected cells

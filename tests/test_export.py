"""SBML and PEtab export: valid documents, exact round trips, libRoadRunner agreement, petablint, equal likelihoods."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import libsbml
import numpy as np
import pytest

from biotwin.data import Bolus, Dataset, Experiment, Input
from biotwin.errors import DataError, ModelError
from biotwin.io.petab import PETAB_FILES, _publish, load_petab, write_petab
from biotwin.io.sbml import read_sbml, write_sbml
from biotwin.likelihood import dataset_objective
from biotwin.model import Model
from biotwin.simulate import simulate

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "models"
PETABLINT = Path(sys.executable).parent / "petablint"
# The petab package reads its tables with pandas options that pandas now deprecates.
pytestmark = [
    pytest.mark.filterwarnings("ignore:The 'float_precision' argument is deprecated"),
    pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.set_index is deprecated"),
]

HILL = """
dS/dt = -Vmax*S^n/(Km^n + S^n) + u - k0*S
dP/dt = Vmax*S^n/(Km^n + S^n) - kd*P + 1e-3*Heaviside(S - 0.5) + abs(sin(P))/7
Vmax in [0.1, 10] log = 1.3
Km in [0.01, 100] log = 0.3333333333333333
n in [1, 4] = 2
kd in [0.01, 1] = 0.2
k0 = 0.1
S(0) = 2
P(0) = 0
observable total = S + P
input u
"""
EPIDEMIC = """
dS/dt = -beta*S*I/N
dI/dt = beta*S*I/N - gamma*I
dR/dt = gamma*I
beta in [0.1, 5] log = 1.73
gamma in [0, 2] = 0.54
I0 in [1, 10] = 3
N = 763
S(0) = N - I0
I(0) = I0
R(0) = 0
observable in_bed = I
"""
TIMES = np.linspace(0.0, 12.0, 13)
TIGHT = {"rtol": 1e-12, "atol": 1e-14}


def _models() -> dict[str, tuple[Model, dict[str, float]]]:
    """Each model with the values written for it (fitted values and input levels)."""
    return {
        "lotka_volterra": (Model.from_file(str(EXAMPLES / "lotka_volterra_lynx_hare.txt")), {"beta": 0.03}),
        "hill_with_input": (Model.from_text(HILL, name="hill"), {"Vmax": 1.7, "u": 0.25}),
        "initial_assignment": (Model.from_text(EPIDEMIC, name="sir"), {"I0": 5.0}),
    }


def _biotwin_solution(model: Model, values: dict[str, float]):
    inputs = [Input(u, (0.0,), (values[u],)) for u in model.inputs if u in values]
    params = {k: v for k, v in values.items() if k in model.parameter_names}
    return simulate(model, params, times=TIMES, inputs=inputs, **TIGHT)


# ---------------------------------------------------------------------- SBML
def test_sbml_passes_libsbml_checks_and_keeps_every_number_exactly():
    model, values = _models()["hill_with_input"]
    text = write_sbml(model, parameters=values)
    document = libsbml.readSBMLFromString(text)
    assert document.getLevel() == 3 and document.getVersion() == 2
    document.checkConsistency()
    problems = [document.getError(i) for i in range(document.getNumErrors())]
    assert not [p.getMessage() for p in problems if p.getSeverity() >= libsbml.LIBSBML_SEV_ERROR]
    # What remains are warnings about the undeclared units (and the best practice of declaring them).
    assert all(p.getCategory() in (libsbml.LIBSBML_CAT_UNITS_CONSISTENCY, libsbml.LIBSBML_CAT_MODELING_PRACTICE)
               for p in problems)

    sbml = document.getModel()
    assert sbml.getNumCompartments() == 1 and sbml.getCompartment(0).getSize() == 1.0
    assert [s.getId() for s in sbml.getListOfSpecies()] == ["S", "P"]
    assert all(s.getHasOnlySubstanceUnits() for s in sbml.getListOfSpecies())
    assert sbml.getParameter("Km").getValue() == 0.3333333333333333  # libsbml alone would write 15 digits
    assert sbml.getParameter("Vmax").getValue() == 1.7 and sbml.getParameter("u").getValue() == 0.25
    assert sbml.getParameter("u").getConstant() and not sbml.getParameter("total").getConstant()
    assert libsbml.formulaToL3String(sbml.getRule("total").getMath()) == "P + S"

    back = read_sbml(text)
    assert back.states == model.states
    assert {p.name: p.value for p in back.parameters} == {
        "Vmax": 1.7, "Km": 0.3333333333333333, "n": 2.0, "kd": 0.2, "k0": 0.1, "u": 0.25}
    assert back.state_vector().tolist() == [2.0, 0.0]


@pytest.mark.parametrize("name", ["lotka_volterra", "hill_with_input", "initial_assignment"])
def test_sbml_round_trip_and_libroadrunner_give_biotwins_trajectories(name, tmp_path):
    import roadrunner

    model, values = _models()[name]
    path = tmp_path / "model.xml"
    text = write_sbml(model, path, parameters=values)
    assert path.read_text(encoding="utf-8") == text
    expected = _biotwin_solution(model, values)

    back = read_sbml(path)
    again = simulate(back, times=TIMES, **TIGHT)  # inputs are parameters at their written level
    np.testing.assert_allclose(again.states, expected.states, rtol=1e-8, atol=0)

    runner = roadrunner.RoadRunner(text)
    runner.integrator.relative_tolerance = 1e-12
    runner.integrator.absolute_tolerance = 1e-14
    observed = [o.name for o in model.observables if o.name not in model.states]
    result = runner.simulate(times=TIMES, selections=["time", *model.states, *observed])
    np.testing.assert_allclose(result[:, 1:1 + len(model.states)], expected.states, rtol=1e-6, atol=0)
    for k, o in enumerate(observed):
        np.testing.assert_allclose(result[:, 1 + len(model.states) + k], expected.observable(o), rtol=1e-6, atol=0)


def test_sbml_initial_assignment_follows_fitted_parameters():
    model, _ = _models()["initial_assignment"]
    sbml = libsbml.readSBMLFromString(write_sbml(model, parameters={"I0": 7.0})).getModel()
    assert libsbml.formulaToL3String(sbml.getInitialAssignment("S").getMath()) == "N - I0"
    assert sbml.getSpecies("R").getInitialAmount() == 0.0
    back = read_sbml(write_sbml(model, parameters={"I0": 7.0}, initial={"R": 1.5}))
    assert back.state_vector().tolist() == [756.0, 7.0, 1.5]


def test_sbml_bad_input_raises_clear_errors():
    model, _ = _models()["hill_with_input"]
    with pytest.raises(ModelError, match="unknown parameter or input 'Vmx'; did you mean 'Vmax'"):
        write_sbml(model, parameters={"Vmx": 1.0})
    with pytest.raises(ModelError, match="value of 'kd' is nan"):
        write_sbml(model, parameters={"kd": math.nan})
    no_start = Model.from_text("dx/dt = -k*x")
    with pytest.raises(ModelError, match=r"state 'x' has no initial value; give it \(initial="):
        write_sbml(no_start)
    assert read_sbml(write_sbml(no_start, initial={"x": 2.0})).state_vector().tolist() == [2.0]
    clash = Model.from_text("dx/dt = -k*x\nx(0) = 1\nobservable k = 2*x")
    with pytest.raises(ModelError, match="observable 'k' has the name of a state, parameter or input"):
        write_sbml(clash)
    assert "assignmentRule" not in write_sbml(clash, observables=False)


# ---------------------------------------------------------------------- PEtab
def _petablint(path: Path) -> None:
    run = subprocess.run([str(PETABLINT), str(path)], check=False, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def _hill_dataset(model: Model) -> Dataset:
    """Two experiments: one with a constant input, starting at t = 2; one overriding kd and S(0)."""
    rng = np.random.default_rng(7)
    later = np.linspace(2.0, 10.0, 9)
    low = simulate(model, times=later, inputs=[Input("u", (2.0,), (0.2,))], start=2.0)
    knock = simulate(model, {"kd": 0.05}, {"S": 3.0, "P": 0.0}, times=TIMES)
    total_low = low.observable("total") + 0.02 * rng.normal(size=later.size)
    total_knock = knock.observable("total") + 0.02 * rng.normal(size=TIMES.size)
    total_knock[4] = np.nan
    return Dataset((
        Experiment("low input", later, ("total",), total_low[:, None], inputs=(Input("u", (2.0,), (0.2,)),)),
        Experiment("2 knock-out", TIMES, ("total",), total_knock[:, None], overrides={"kd": 0.05, "S": 3.0}),
    ))


def _same_nll(problem_yaml: Path, model: Model, dataset: Dataset, noise: str, renamed: dict[str, str],
              **tolerances: float) -> None:
    bounded = [p.name for p in model.parameters if math.isfinite(p.lower) and math.isfinite(p.upper)]
    reference = dataset_objective(model, dataset, noise=noise, estimate=bounded, **tolerances)
    # The same solver choice on both sides ("auto", the dataset objective's default; a PEtab
    # objective defaults to Rodas5): the comparison is of the two likelihoods, not of two solvers.
    objective = load_petab(problem_yaml).objective(method="auto", **tolerances)
    values = reference.values(np.asarray(reference.nominal) + 0.05 * (reference.upper - reference.nominal))
    assert sorted(objective.names) == sorted(renamed.get(n, n) for n in reference.names)
    x = objective.point({renamed.get(n, n): v for n, v in values.items()})
    expected = float(reference.nll(reference.point(values)))
    assert math.isfinite(expected)
    assert float(objective.nll(x)) == pytest.approx(expected, rel=1e-7)


def test_petab_export_lints_and_has_dataset_objectives_likelihood(tmp_path):
    import pandas as pd

    model = Model.from_text(HILL, name="hill")
    dataset = _hill_dataset(model)
    folder = tmp_path / "problem"
    path = write_petab(model, dataset, folder, parameters={"Vmax": 1.5})
    assert path == folder / "problem.yaml"
    assert sorted(p.name for p in folder.iterdir()) == sorted(PETAB_FILES.values())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left
    _petablint(path)

    conditions = pd.read_csv(folder / "conditions.tsv", sep="\t", index_col=0)
    assert list(conditions.index) == ["low_input", "condition_2_knock_out"]
    assert list(conditions["conditionName"]) == ["low input", "2 knock-out"]
    assert list(conditions["kd"]) == ["kd_estimated", "0.05"]
    assert conditions["u"].tolist() == [0.2, 0.0] and math.isnan(conditions["S"].iloc[0])
    measurements = pd.read_csv(folder / "measurements.tsv", sep="\t")
    low = measurements[measurements["simulationConditionId"] == "low_input"]
    np.testing.assert_array_equal(low["time"], np.linspace(0.0, 8.0, 9))  # relative to the experiment's start
    assert len(measurements) == 9 + 12
    parameters = pd.read_csv(folder / "parameters.tsv", sep="\t", index_col=0)
    assert parameters.loc["Vmax", "nominalValue"] == 1.5 and parameters.loc["Vmax", "parameterScale"] == "log10"
    assert parameters.loc["Km", "nominalValue"] == 0.3333333333333333
    assert parameters.loc["k0", "estimate"] == 0 and "kd" not in parameters.index
    assert parameters.loc["sigma_total", "parameterScale"] == "log10" and parameters.loc["sigma_total", "estimate"] == 1
    observables = pd.read_csv(folder / "observables.tsv", sep="\t", index_col=0)
    assert observables.loc["total", "observableFormula"] == "P + S" and observables.loc["total", "noiseFormula"] == "sigma_total"

    # Tight tolerances: with the defaults the Heaviside kink leaves 1e-7 between solves on shifted time grids.
    _same_nll(path, model, dataset, "normal", {"kd": "kd_estimated"}, rtol=1e-11, atol=1e-13)
    # A second export replaces the first.
    write_petab(model, dataset, folder, sigma=0.02)
    parameters = pd.read_csv(folder / "parameters.tsv", sep="\t", index_col=0)
    assert parameters.loc["sigma_total", "estimate"] == 0 and parameters.loc["sigma_total", "nominalValue"] == 0.02


@pytest.mark.parametrize("noise", ["lognormal", "proportional"])
def test_petab_export_of_relative_noise_models(noise, tmp_path):
    model = Model.from_file(str(EXAMPLES / "lotka_volterra_lynx_hare.txt"))
    rng = np.random.default_rng(3)
    base = simulate(model, times=TIMES).observables
    shifted = simulate(model, {"gamma": 0.6}, {"hare": 20.0, "lynx": 4.0}, times=TIMES).observables
    dataset = Dataset((
        Experiment("baseline", TIMES, model.observable_names, base * np.exp(0.1 * rng.normal(size=base.shape))),
        Experiment("slow death", TIMES, model.observable_names, shifted * np.exp(0.1 * rng.normal(size=base.shape)),
                   overrides={"gamma": 0.6, "hare": 20.0, "lynx": 4.0}),
    ))
    path = write_petab(model, dataset, tmp_path / noise, noise=noise)
    _petablint(path)
    observables = load_petab(path).tables.observable_df
    assert list(observables.index) == ["obs_hare", "obs_lynx"]  # a state observed as itself is an SBML id
    if noise == "lognormal":
        assert set(observables["observableTransformation"]) == {"log"}
    else:
        assert observables.loc["obs_hare", "noiseFormula"].startswith("sigma_hare * max(abs(hare), ")
    _same_nll(path, model, dataset, noise, {"gamma": "gamma_estimated"})


def test_petab_export_refuses_what_petab_v1_cannot_hold(tmp_path):
    model = Model.from_text(HILL, name="hill")
    values = np.linspace(1.0, 2.0, 5)[:, None]
    times = np.linspace(0.0, 4.0, 5)

    def export(**experiment: object) -> None:
        write_petab(model, Dataset((Experiment("dosed", times, ("total",), values, **experiment),)), tmp_path / "out")

    with pytest.raises(ModelError, match=r"experiment 'dosed' has doses \(e.g. 1.0 into 'S' at t=2.0\)"):
        export(doses=(Bolus(2.0, "S", 1.0),))
    with pytest.raises(ModelError, match="experiment 'dosed' switches input 'u' at t=3.0"):
        export(inputs=(Input("u", (0.0, 3.0), (1.0, 0.5)),))
    with pytest.raises(ModelError, match="experiment 'dosed' infuses into 'S'"):
        export(inputs=(Input.infusion("S", 0.0, 10.0, 1.0),))
    timed = Model.from_text("dx/dt = -k*x + sin(t)\nx(0) = 1")
    late = Dataset((Experiment("late", times + 1.0, ("x",), values),))
    with pytest.raises(ModelError, match="experiment 'late' starts at t=1.0 but PEtab starts every simulation at 0"):
        write_petab(timed, late, tmp_path / "out")
    with pytest.raises(ModelError, match="unknown noise model 'poisson'"):
        write_petab(model, Dataset((Experiment("plain", times, ("total",), values),)), tmp_path / "out", noise="poisson")
    assert not list(tmp_path.iterdir())  # nothing written


def test_petab_export_never_leaves_a_half_written_folder(tmp_path):
    model = Model.from_text("dx/dt = -k*x\nx(0) = 1\nk in [0.1, 10] = 1")
    dataset = Dataset.from_arrays(TIMES[:5], np.exp(-TIMES[:5])[:, None], ("x",))
    folder = tmp_path / "export"
    write_petab(model, dataset, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def failing(staging: Path) -> None:
        (staging / "model.xml").write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _publish(folder, failing, set(PETAB_FILES.values()))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["export"]

    (folder / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="already holds files other than a PEtab export"):
        write_petab(model, dataset, folder)
    assert (folder / "notes.txt").read_text() == "mine"

"""SBML and PEtab import: SBML semantics, the shared PEtab problems against AMICI, and a small problem by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import libsbml
import numpy as np
import pytest

from biotwin.errors import DataError, ModelError
from biotwin.io.petab import load_petab
from biotwin.io.sbml import import_sbml, read_sbml
from biotwin.model import TIME

REFERENCE = Path(__file__).parent / "data" / "petab_amici_nll.json"
# The petab package reads its tables with pandas options that pandas now deprecates.
pytestmark = [
    pytest.mark.filterwarnings("ignore:The 'float_precision' argument is deprecated"),
    pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.set_index is deprecated"),
]
PROBLEMS = ("Boehm_JProteomeRes2014", "Crauste_CellSystems2017", "Elowitz_Nature2000", "Perelson_Science1996")


# ---------------------------------------------------------------------- SBML
def _document() -> tuple[libsbml.SBMLDocument, libsbml.Model]:
    document = libsbml.SBMLDocument(3, 2)
    model = document.createModel()
    model.setId("tiny")
    return document, model


def _compartment(model: libsbml.Model, cid: str, size: float) -> None:
    compartment = model.createCompartment()
    compartment.setId(cid), compartment.setSize(size), compartment.setConstant(True), compartment.setSpatialDimensions(3)


def _species(model: libsbml.Model, sid: str, compartment: str, *, amount: float | None = None,
             concentration: float | None = None, only_substance: bool = False, boundary: bool = False) -> None:
    species = model.createSpecies()
    species.setId(sid), species.setCompartment(compartment), species.setHasOnlySubstanceUnits(only_substance)
    species.setBoundaryCondition(boundary), species.setConstant(False)
    if amount is not None:
        species.setInitialAmount(amount)
    if concentration is not None:
        species.setInitialConcentration(concentration)


def _parameter(model: libsbml.Model, pid: str, value: float | None, constant: bool = True) -> None:
    parameter = model.createParameter()
    parameter.setId(pid), parameter.setConstant(constant)
    if value is not None:
        parameter.setValue(value)


def _reaction(model: libsbml.Model, rid: str, reactants: dict[str, float], products: dict[str, float], law: str,
              local: dict[str, float] | None = None) -> None:
    reaction = model.createReaction()
    reaction.setId(rid), reaction.setReversible(False)
    for species, n in reactants.items():
        reference = reaction.createReactant()
        reference.setSpecies(species), reference.setStoichiometry(n), reference.setConstant(True)
    for species, n in products.items():
        reference = reaction.createProduct()
        reference.setSpecies(species), reference.setStoichiometry(n), reference.setConstant(True)
    kinetic = reaction.createKineticLaw()
    for name, value in (local or {}).items():
        parameter = kinetic.createLocalParameter()
        parameter.setId(name), parameter.setValue(value)
    kinetic.setMath(libsbml.parseL3Formula(law))


def _text(document: libsbml.SBMLDocument) -> str:
    return libsbml.writeSBMLToString(document)


def test_sbml_semantics_compartments_units_rules_and_local_parameters():
    document, model = _document()
    _compartment(model, "cell", 2.0)
    _compartment(model, "nucleus", 0.5)
    _species(model, "A", "cell", amount=4.0)                            # concentration 2, from an amount
    _species(model, "B", "nucleus", concentration=1.0)                  # concentration
    _species(model, "C", "cell", amount=3.0, only_substance=True)       # an amount
    _species(model, "S", "cell", concentration=5.0, boundary=True)      # fixed source
    _parameter(model, "k", 0.3)
    _parameter(model, "t", 2.0)                                         # 't' is time in biotwin: renamed
    _parameter(model, "signal", None, constant=False)                   # set by an assignment rule
    _parameter(model, "z", 0.0, constant=False)                         # a rate rule makes it a state
    _parameter(model, "unused", 7.0)
    definition = model.createFunctionDefinition()
    definition.setId("mm"), definition.setMath(libsbml.parseL3Formula("lambda(x, v, km, v * x / (km + x))"))
    rule = model.createAssignmentRule()
    rule.setVariable("signal"), rule.setMath(libsbml.parseL3Formula("exp(-time) * t"))
    rate = model.createRateRule()
    rate.setVariable("z"), rate.setMath(libsbml.parseL3Formula("signal - z"))
    assignment = model.createInitialAssignment()
    assignment.setSymbol("B"), assignment.setMath(libsbml.parseL3Formula("2 * k"))
    _reaction(model, "transport", {"A": 1}, {"B": 2}, "cell * mm(A, vmax, 1.5)", local={"vmax": 0.8})
    _reaction(model, "make", {}, {"C": 1}, "k * S * signal")
    _reaction(model, "use", {"C": 1}, {}, "k * C")
    imported = import_sbml(_text(document))
    m = imported.model
    assert m.states == ("A", "B", "C", "S", "z")
    assert set(m.parameter_names) == {"cell", "nucleus", "k", "t_", "transport_vmax"}
    assert imported.expressions["unused"] == 7.0 and imported.symbols["t"] == "t_"
    assert imported.expression("signal").has(TIME)
    theta = m.parameter_vector()
    y0 = m.state_vector(None)
    np.testing.assert_allclose(y0, [2.0, 0.6, 3.0, 5.0, 0.0])
    time = 0.7
    derivative = np.asarray(m.compiled.rhs(time, y0, theta, np.zeros(0)))
    v_transport = 2.0 * 0.8 * 2.0 / (1.5 + 2.0)
    signal = math.exp(-time) * 2.0
    expected = [
        -v_transport / 2.0,                  # concentration in the cell: amount rate / volume
        2 * v_transport / 0.5,               # concentration in the nucleus
        0.3 * 5.0 * signal - 0.3 * 3.0,      # an amount: no division
        0.0,                                 # boundary species
        signal - 0.0,                        # rate rule
    ]
    np.testing.assert_allclose(derivative, expected, rtol=1e-12)


def test_sbml_events_and_algebraic_rules_are_named_in_the_error():
    document, model = _document()
    _compartment(model, "c", 1.0)
    _species(model, "x", "c", concentration=1.0)
    _parameter(model, "k", 1.0)
    _reaction(model, "decay", {"x": 1}, {}, "k * x")
    event = model.createEvent()
    event.setId("dose"), event.setUseValuesFromTriggerTime(True)
    trigger = event.createTrigger()
    trigger.setMath(libsbml.parseL3Formula("time > 5")), trigger.setInitialValue(False), trigger.setPersistent(True)
    effect = event.createEventAssignment()
    effect.setVariable("x"), effect.setMath(libsbml.parseL3Formula("x + 1"))
    with pytest.raises(ModelError, match="events are not supported \\(event 'dose'\\)"):
        read_sbml(_text(document))

    document, model = _document()
    _compartment(model, "c", 1.0)
    _species(model, "x", "c", concentration=1.0)
    _parameter(model, "y", 1.0, constant=False)
    _reaction(model, "decay", {"x": 1}, {}, "x")
    algebraic = model.createAlgebraicRule()
    algebraic.setMetaId("balance"), algebraic.setMath(libsbml.parseL3Formula("x + y - 2"))
    with pytest.raises(ModelError, match="algebraic rules are not supported \\(algebraic rule 'balance'\\)"):
        read_sbml(_text(document))
    with pytest.raises(ModelError, match="no such SBML file"):
        read_sbml("/nonexistent/model.xml")


# ---------------------------------------------------------------------- the shared problems
@pytest.mark.parametrize("name", PROBLEMS)
def test_shared_problem_matches_amici_at_the_nominal_parameters(shared_data: Path, name: str):
    reference = json.loads(REFERENCE.read_text())
    problem = load_petab(shared_data / "petab" / name / f"{name}.yaml")
    objective = problem.objective(rtol=1e-10, atol=1e-12)
    table = problem.tables.parameter_df
    assert objective.names == tuple(table.index[table["estimate"] == 1])
    value = float(objective.nll(objective.nominal))
    expected = reference["nll"][name]
    assert abs(value - expected) / abs(expected) < 1e-6, (value, expected)
    assert len(objective.measurements) == len(problem.tables.measurement_df)
    dataset = problem.dataset()
    assert set(dataset.observables) == set(problem.tables.measurement_df["observableId"])


def test_a_shared_problem_has_a_finite_gradient_and_residuals(shared_data: Path):
    name = "Crauste_CellSystems2017"
    problem = load_petab(shared_data / "petab" / name / f"{name}.yaml")
    objective = problem.objective()
    x = objective.nominal
    gradient = np.asarray(jax.grad(objective.nll)(x))
    assert gradient.shape == x.shape and np.all(np.isfinite(gradient))
    residuals = np.asarray(objective.residuals(x))
    assert residuals.shape == (len(objective.measurements),)  # the noise is fixed: no sigma residuals
    assert float(objective.nll(x)) == pytest.approx(
        0.5 * np.sum(residuals**2) + np.sum(np.log(np.sqrt(2 * np.pi) * np.asarray(objective.sigma(x)))), rel=1e-12
    )


def test_a_stiff_point_of_a_multistart_solves_within_the_step_budget(shared_data: Path):
    """A point of Crauste's multi-start where effector cells reach 1e8 and a late-effector rate is
    -2e6: with Newton stopped at the step tolerances themselves the stiff solver rejected half its
    steps and used up the 10,000-step budget here (AMICI solves it); now it solves, as accurately
    as at 100x tighter tolerances with 10x the budget."""
    name = "Crauste_CellSystems2017"
    problem = load_petab(shared_data / "petab" / name / f"{name}.yaml")
    point = {"delta_EL": 0.006704, "delta_LM": 637.6, "delta_NE": 0.1237, "mu_EE": 2.511e-05, "mu_LE": 0.01802,
             "mu_LL": 3.365e-08, "mu_N": 11.22, "mu_P": 3.68e-05, "mu_PE": 1.913e-05, "mu_PL": 9.006,
             "rho_E": 0.2043, "rho_P": 0.1556}
    objective = problem.objective(method="kvaerno5")
    value = float(objective.nll(objective.point(point)))
    tight = problem.objective(method="kvaerno5", rtol=1e-10, atol=1e-12, max_steps=100_000)
    assert math.isfinite(value)
    assert value == pytest.approx(float(tight.nll(tight.point(point))), abs=1e-4)


def test_the_gradient_exists_wherever_the_nll_is_finite(shared_data: Path):
    """A trial point of Elowitz's multi-start where a rejected step's Newton iteration diverges: the
    forward sensitivities of that step's stages raised there (a linear solve fed NaN) although the
    NLL is finite, so the optimiser took a good point for a failed one. The gradient of J = 1/2 |r|^2
    + const from the residuals' Jacobian now exists and matches central differences of J."""
    from biotwin.optimise import Minimiser

    name = "Elowitz_Nature2000"
    problem = load_petab(shared_data / "petab" / name / f"{name}.yaml")
    objective = problem.objective(method="kvaerno5")
    point = {"KM": 885.6, "background": 0.001867, "eff": 0.0006718, "eff_GFP": 0.05203, "init_GFP": 1.043e-05,
             "init_GFP_mRNA": 20.65, "init_X_mRNA": 43.09, "init_X_protein": 25.48, "init_Y_mRNA": 45.12,
             "init_Y_protein": 2.184e-05, "init_Z_mRNA": 9.227e-05, "init_Z_protein": 36.61, "n_Hill": 0.007271,
             "scale": 0.3715, "sigma": 5.991, "tau_mRNA": 100.8, "tau_mRNA_GFP": 1.375e-05, "tau_prot": 0.0003752,
             "tau_prot_GFP": 1.059e-05, "tps_active": 0.007555, "tps_repr": 1.522e-05}
    x = objective.point(point)
    value, gradient, _ = Minimiser(objective).evaluate(x)
    assert math.isfinite(value) and value == pytest.approx(float(objective.nll(x)), rel=1e-12)
    direction = np.random.default_rng(0).standard_normal(x.size)
    step = 1e-6
    central = (float(objective.nll(x + step * direction)) - float(objective.nll(x - step * direction))) / (2 * step)
    assert float(gradient @ direction) == pytest.approx(central, rel=1e-6)


# ---------------------------------------------------------------------- a problem written by hand
SBML_TURNOVER = """<?xml version="1.0" encoding="UTF-8"?>
<sbml xmlns="http://www.sbml.org/sbml/level3/version2/core" level="3" version="2">
  <model id="turnover">
    <listOfCompartments><compartment id="c" size="1" constant="true" spatialDimensions="3"/></listOfCompartments>
    <listOfSpecies>
      <species id="x" compartment="c" initialConcentration="0" hasOnlySubstanceUnits="false"
               boundaryCondition="false" constant="false"/>
    </listOfSpecies>
    <listOfParameters>
      <parameter id="k1" value="1" constant="true"/>
      <parameter id="k2" value="0.5" constant="true"/>
    </listOfParameters>
    <listOfReactions>
      <reaction id="make" reversible="false">
        <listOfProducts><speciesReference species="x" stoichiometry="1" constant="true"/></listOfProducts>
        <kineticLaw><math xmlns="http://www.w3.org/1998/Math/MathML"><ci> k1 </ci></math></kineticLaw>
      </reaction>
      <reaction id="degrade" reversible="false">
        <listOfReactants><speciesReference species="x" stoichiometry="1" constant="true"/></listOfReactants>
        <kineticLaw><math xmlns="http://www.w3.org/1998/Math/MathML">
          <apply><times/><ci> k2 </ci><ci> x </ci></apply></math></kineticLaw>
      </reaction>
    </listOfReactions>
  </model>
</sbml>
"""


def _write_problem(folder: Path, measurements: list[str], *, observables: list[str] | None = None,
                   parameters: list[str] | None = None) -> Path:
    (folder / "model.xml").write_text(SBML_TURNOVER)
    (folder / "conditions.tsv").write_text("conditionId\tk1\nlow\t1\nhigh\tk1_high\n")
    (folder / "observables.tsv").write_text("\n".join(observables or [
        "observableId\tobservableFormula\tnoiseFormula\tobservableTransformation\tnoiseDistribution",
        "x_obs\tobservableParameter1_x_obs * x\tnoiseParameter1_x_obs\tlin\tnormal",
        "x_log\tx\tnoiseParameter1_x_log\tlog10\tlaplace",
    ]) + "\n")
    (folder / "parameters.tsv").write_text("\n".join(parameters or [
        "parameterId\tparameterScale\tlowerBound\tupperBound\tnominalValue\testimate",
        "k2\tlog10\t0.01\t10\t0.5\t1",
        "k1_high\tlin\t0\t10\t3\t1",
        "scale\tlog10\t0.1\t10\t2\t1",
        "sd\tlog10\t0.001\t10\t0.2\t1",
    ]) + "\n")
    (folder / "measurements.tsv").write_text("\n".join([
        "observableId\tpreequilibrationConditionId\tsimulationConditionId\tmeasurement\ttime\tobservableParameters\tnoiseParameters",
        *measurements,
    ]) + "\n")
    (folder / "problem.yaml").write_text(
        "format_version: 1\nparameter_file: parameters.tsv\nproblems:\n- condition_files: [conditions.tsv]\n"
        "  measurement_files: [measurements.tsv]\n  observable_files: [observables.tsv]\n  sbml_files: [model.xml]\n"
    )
    return folder / "problem.yaml"


MEASUREMENTS = [
    "x_obs\tlow\thigh\t9.1\t0.5\tscale\tsd",
    "x_obs\tlow\thigh\t10.9\t1.0\tscale\tsd",
    "x_obs\tlow\thigh\t10.7\t1.0\tscale\tsd",       # a replicate
    "x_obs\tlow\thigh\t11.8\t4.0\tscale\t0.5",
    "x_log\t\tlow\t0.45\t1.0\t\t0.1",
    "x_log\t\tlow\t1.1\t3.0\t\t0.1",
    "x_log\t\tlow\t1.9\t8.0\t\t0.1",
]


def test_trial_points_are_checked_by_the_nll_alone_only_while_failures_are_frequent(tmp_path: Path):
    """Where the turnover rate is negative enough, x grows as exp(100 t) and the solve fails. Once
    CHECK_WHEN_FAILED of the last CHECK_WINDOW trial points have failed (and the check has
    compiled), each trial point is first solved without sensitivities: a failing one costs that
    solve only, a good one that solve and the full evaluation. After CHECK_WINDOW good points in
    a row the checks stop, as they would cost more than the failures they make cheaper."""
    from biotwin.optimise import CHECK_WHEN_FAILED, CHECK_WINDOW, Minimiser

    parameters = ["parameterId\tparameterScale\tlowerBound\tupperBound\tnominalValue\testimate",
                  "k2\tlin\t-100\t10\t0.5\t1", "k1_high\tlin\t0\t10\t3\t1",
                  "scale\tlog10\t0.1\t10\t2\t1", "sd\tlog10\t0.001\t10\t0.2\t1"]
    measurements = ["x_obs\t\tlow\t1.2\t1.0\tscale\tsd", "x_obs\t\tlow\t1.9\t8.0\tscale\tsd"]
    objective = load_petab(_write_problem(tmp_path, measurements, parameters=parameters)).objective()
    good = np.asarray(objective.nominal, float)
    failing = objective.point({"k2": -100.0})
    engine = Minimiser(objective)

    def evaluations(x: np.ndarray) -> tuple[float, int]:
        before = engine.evaluations
        value = engine._trial(x)[0]
        return value, engine.evaluations - before

    assert evaluations(good) == (pytest.approx(float(objective.nll(good)), rel=1e-12), 1)
    assert evaluations(failing) == (math.inf, 1)
    for _ in range(CHECK_WHEN_FAILED - 2):
        assert evaluations(failing) == (math.inf, 1)
    assert evaluations(good)[1] == 1  # CHECK_WHEN_FAILED - 1 failures among the recent points: no check
    assert evaluations(failing) == (math.inf, 1)
    assert engine._nll_check is None  # nothing compiled for failures that were not yet frequent
    assert evaluations(failing) == (math.inf, 1)  # frequent now: the check's compilation starts
    engine._nll_check.result()
    assert evaluations(failing) == (math.inf, 1)  # checked: the check alone, and it fails
    assert evaluations(good)[1] == 2  # checked, then evaluated with sensitivities
    for _ in range(CHECK_WINDOW):
        evaluations(good)
    assert evaluations(good)[1] == 1


def test_a_small_problem_with_preequilibration_placeholders_and_laplace_noise(tmp_path: Path):
    problem = load_petab(_write_problem(tmp_path, MEASUREMENTS))
    objective = problem.objective(rtol=1e-11, atol=1e-13)
    assert objective.names == ("k2", "k1_high", "scale", "sd")
    k2, k1_high, scale, sd = 0.4, 2.5, 1.8, 0.3
    x = objective.point({"k2": k2, "k1_high": k1_high, "scale": scale, "sd": sd})

    def low(t: float) -> float:           # from x(0) = 0 with k1 = 1
        return 1 / k2 * (1 - math.exp(-k2 * t))

    def high(t: float) -> float:          # from the steady state 1/k2 of 'low', with k1 = k1_high
        return k1_high / k2 + (1 / k2 - k1_high / k2) * math.exp(-k2 * t)

    expected = 0.0
    for y, t, sigma in ((9.1, 0.5, sd), (10.9, 1.0, sd), (10.7, 1.0, sd), (11.8, 4.0, 0.5)):
        h = scale * high(t)
        expected += 0.5 * math.log(2 * math.pi * sigma**2) + 0.5 * ((y - h) / sigma) ** 2
    for y, t in ((0.45, 1.0), (1.1, 3.0), (1.9, 8.0)):
        expected += math.log(2 * 0.1 * y * math.log(10)) + abs(math.log10(y) - math.log10(low(t))) / 0.1
    assert float(objective.nll(x)) == pytest.approx(expected, rel=1e-8)
    assert objective.residuals is None  # Laplace noise has no least-squares form
    gradient = np.asarray(jax.grad(objective.nll)(x))
    step = 1e-5
    differences = [(float(objective.nll(x + step * e)) - float(objective.nll(x - step * e))) / (2 * step)
                   for e in np.eye(x.size)]
    np.testing.assert_allclose(gradient, differences, rtol=1e-5, atol=1e-5)
    dataset = problem.dataset()
    assert dataset.names == ("low->high", "low")
    assert dataset["low->high"].values[1, 0] == pytest.approx(10.8)  # replicates averaged


def test_objective_priors_follow_petab(tmp_path: Path):
    from petab.v1.priors import Prior

    parameters = [
        "parameterId\tparameterScale\tlowerBound\tupperBound\tnominalValue\testimate\tobjectivePriorType\tobjectivePriorParameters",
        "k2\tlog10\t0.01\t10\t0.5\t1\tlogNormal\t-0.5;0.7",
        "k1_high\tlin\t0\t10\t3\t1\tnormal\t3;1",
        "scale\tlog10\t0.1\t10\t2\t1\tparameterScaleUniform\t-1;1",
        "sd\tlog10\t0.001\t10\t0.2\t1\t\t",
    ]
    problem = load_petab(_write_problem(tmp_path, MEASUREMENTS, parameters=parameters))
    objective = problem.objective()
    x = objective.point({"k2": 0.3, "k1_high": 4.0, "scale": 1.5, "sd": 0.2})
    # The density of x, the parameters on their optimisation scales.
    expected = sum(
        math.log(Prior(kind, arguments, bounds=bounds, transformation=scale).pdf(value, x_scaled=True, rescale=True))
        for kind, arguments, bounds, scale, value in (
            ("logNormal", (-0.5, 0.7), (0.01, 10), "log10", x[0]),
            ("normal", (3, 1), (0, 10), "lin", x[1]),
            ("parameterScaleUniform", (-1, 1), (0.1, 10), "log10", x[2]),
        )
    )
    assert float(objective.log_prior(x)) == pytest.approx(expected, rel=1e-10)
    assert np.isfinite(np.asarray(jax.grad(objective.log_prior)(x))).all()


def test_bad_problems_raise_clear_errors(tmp_path: Path):
    unknown = _write_problem(tmp_path, [*MEASUREMENTS, "x_mystery\t\tlow\t1.0\t2.0\t\t0.1"])
    with pytest.raises(DataError, match="names the observable 'x_mystery', which the observable table does not define"):
        load_petab(unknown)
    missing = _write_problem(tmp_path, ["x_obs\t\tlow\t1.0\t2.0\t\tsd"])
    with pytest.raises(DataError, match="observableParameters gives 0 value\\(s\\) but the formula has 1 placeholder"):
        load_petab(missing).objective()
    steady = _write_problem(tmp_path, ["x_log\t\tlow\t1.0\tinf\t\t0.1"])
    with pytest.raises(ModelError, match="steady-state measurement \\(time inf\\), which is not supported"):
        load_petab(steady)
    with pytest.raises(DataError, match="no such PEtab problem file"):
        load_petab(tmp_path / "absent.yaml")

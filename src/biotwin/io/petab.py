"""PEtab problems: an SBML model, conditions, measurements, observables and parameters.

:func:`load_petab` reads a PEtab (format version 1) problem with the ``petab`` package and the
model with :mod:`biotwin.io.sbml`; :meth:`PetabProblem.objective` turns it into one compiled
:class:`~biotwin.objective.Objective` whose ``nll`` is PEtab's negative log-likelihood,

    J(x) = sum_m [ log N_m + log sigma_m + log T'(y_m) + phi((T(y_m) - T(h_m)) / sigma_m) ],

for every row m of the measurement table, with the observable's formula h_m, noise formula
sigma_m (their placeholders ``observableParameter<i>_<id>`` and ``noiseParameter<i>_<id>``
replaced by the row's values or parameters), transformation T (lin, log, log10) and
distribution (normal: N = sqrt(2 pi), phi(r) = r^2/2; Laplace: N = 2, phi(r) = |r|), exactly as
AMICI and pyPESTO compute it. Estimated parameters are the table's rows with ``estimate`` 1, on
their ``parameterScale`` within their bounds; the others keep their nominal values.

Each simulation experiment is a (pre-equilibration, simulation) pair of conditions. A condition
sets model parameters, compartment sizes or species' initial values, to numbers or to problem
parameters. With a pre-equilibration condition the model first runs under that condition from
its initial state to steady state (|dx/dt| <= atol + rtol |x|, integrated with an implicit
solver); the simulation then starts at t = 0 from that state, except for the species the
simulation condition sets.

Not supported (a :class:`~biotwin.errors.ModelError` says so): measurements at time ``inf``
(steady-state data), noise distributions other than normal and Laplace, more than one model,
and what :mod:`biotwin.io.sbml` does not read.

:func:`write_petab` writes a model and a :class:`~biotwin.data.Dataset` as a PEtab problem whose
negative log-likelihood is that of :func:`~biotwin.likelihood.dataset_objective`.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import sympy

from biotwin.data import Dataset, Experiment
from biotwin.errors import DataError, ModelError
from biotwin.io.sbml import (
    COMPARTMENT,
    SbmlModel,
    as_piecewise,
    import_sbml,
    write_sbml,
)
from biotwin.likelihood import (
    DEFAULT_SIGMA_FLOOR,
    DISTRIBUTIONS,
    NOISE_PREFIX,
    PROPORTIONAL_FLOOR,
    LikelihoodSpec,
    ParameterVector,
    compile_objective,
    dataset_objective,
    given_initial_values,
    nominal_simulator,
)
from biotwin.model import TIME, Model
from biotwin.objective import TRANSFORMS, Measurements, Objective, from_scale, to_scale
from biotwin.simulate import (
    SENSITIVITY_STIFF_METHOD,
    Plan,
    finite_tangents,
    implicit_solver,
    make_plan,
    step_controller,
)

#: Solver steps per experiment before a solve counts as failed: AMICI's default. A multi-start
#: visits parameters where the model is very stiff; 100,000 steps made such failures cost 2-10 s.
PETAB_MAX_STEPS = 10_000
#: Pre-equilibration runs at most this long (model time units) before it counts as steady.
PREEQUILIBRATION_HORIZON = 1e9


@dataclass(frozen=True, eq=False)
class PetabProblem:
    """A PEtab problem read into biotwin: the SBML model and the PEtab tables (pandas frames).

    ``tables`` is the ``petab.v1.Problem`` the files were read into; ``sbml`` the model with
    the names of its SBML ids.
    """

    name: str
    path: Path
    sbml: SbmlModel
    tables: Any

    @property
    def model(self) -> Model:
        return self.sbml.model

    def objective(
        self, *, method: str = SENSITIVITY_STIFF_METHOD, rtol: float = 1e-8, atol: float = 1e-10,
        max_steps: int = PETAB_MAX_STEPS,
    ) -> Objective:
        """The problem's negative log-likelihood over its estimated parameters (see the module docstring).

        ``method`` is the ODE solver, ``rtol``/``atol`` its tolerances. The default is the stiff
        Rosenbrock method Rodas5 for every parameter vector, as AMICI's CVODES BDF: a multi-start
        visits parameters far from the nominal ones, where the system may be stiff although it is
        not there. (``"auto"`` chooses at the nominal parameters: Rodas5 when the model is stiff
        there, else explicit Runge-Kutta. On Crauste_CellSystems2017, which is not stiff at its
        nominal parameters, ``"auto"``'s Dopri8 took 149 s for 12 Sobol starts and reached 275.81;
        Rodas5 takes 14 s for 20 and reaches 255.75. On Perelson_Science1996, the other shared
        problem not stiff there, 8 starts took 5.6 s with Dopri8 and 6.1 s with Rodas5.) The
        objective is compiled once; ``log_prior`` is set when the parameter table has objective
        priors.
        """
        return _Builder(self, method, rtol, atol, max_steps).objective()

    def dataset(self) -> Dataset:
        """The measurements as a :class:`~biotwin.data.Dataset`, one experiment per simulation condition.

        For plots and summaries: replicates at one time are averaged, and a condition's numeric
        overrides of model parameters and initial states become the experiment's overrides.
        Values are on the measurement scale (untransformed).
        """
        tables = self.tables
        frame = tables.measurement_df
        observables = tuple(dict.fromkeys(frame["observableId"]))
        experiments = []
        for key, rows in _experiment_groups(frame):
            times = np.array(sorted(set(rows["time"].astype(float))))
            values = np.full((times.size, len(observables)), np.nan)
            grouped = rows.groupby([rows["time"].astype(float), "observableId"])["measurement"].mean()
            for (time, observable), value in grouped.items():
                values[np.searchsorted(times, time), observables.index(observable)] = value
            overrides = {}
            condition = _condition_row(tables, key[1])
            for column, value in condition.items():
                name = self.sbml.symbols.get(column)
                number = _number(value)
                if name is not None and number is not None and (name in self.model.parameter_names or
                                                                 name in self.model.states):
                    overrides[name] = number
            experiments.append(Experiment(_experiment_name(key), times, observables, values, overrides=overrides, t0=0.0))
        return Dataset(tuple(experiments), source=str(self.path))


def load_petab(yaml_path: str | Path) -> PetabProblem:
    """Read the PEtab problem described by ``yaml_path`` (format version 1, one SBML model)."""
    import petab.v1 as petab

    path = Path(yaml_path)
    if not path.is_file():
        raise DataError(f"{path}: no such PEtab problem file")
    try:
        tables = petab.Problem.from_yaml(str(path))
    except Exception as error:  # petab raises many kinds; the user needs the message, once
        raise DataError(f"{path}: cannot read the PEtab problem ({' '.join(str(error).split())})") from None
    import yaml

    description = yaml.safe_load(path.read_text())
    problems = description.get("problems", [])
    if len(problems) != 1 or len(problems[0].get("sbml_files", [])) != 1:
        raise ModelError(f"{path}: only PEtab problems with exactly one SBML model are supported")
    sbml_path = path.parent / problems[0]["sbml_files"][0]
    sbml = import_sbml(sbml_path)
    problem = PetabProblem(name=path.stem, path=path, sbml=sbml, tables=tables)
    _check(problem)
    return problem


# ---------------------------------------------------------------------- checks
def _check(problem: PetabProblem) -> None:
    tables = problem.tables
    where = str(problem.path)
    if tables.measurement_df is None or tables.observable_df is None or tables.parameter_df is None:
        raise DataError(f"{where}: the problem needs measurement, observable and parameter tables")
    measurements = tables.measurement_df
    known = set(tables.observable_df.index)
    conditions = set(tables.condition_df.index) if tables.condition_df is not None else set()
    for row_number, row in enumerate(measurements.itertuples(index=False), start=2):
        row = row._asdict()
        if row["observableId"] not in known:
            raise DataError(
                f"{where}: measurement table line {row_number} names the observable '{row['observableId']}', which the "
                f"observable table does not define (observables: {', '.join(sorted(known))})"
            )
        for column in ("simulationConditionId", "preequilibrationConditionId"):
            condition = row.get(column)
            if _present(condition) and str(condition) not in conditions:
                raise DataError(
                    f"{where}: measurement table line {row_number} names the condition '{condition}' in {column}, "
                    "which the condition table does not define"
                )
        if math.isinf(float(row["time"])):
            raise ModelError(
                f"{where}: measurement table line {row_number} is a steady-state measurement (time inf), which is "
                "not supported; give finite times"
            )
    for observable, row in tables.observable_df.iterrows():
        transform = _text(row.get("observableTransformation"), "lin")
        distribution = _text(row.get("noiseDistribution"), "normal")
        if transform not in TRANSFORMS:
            raise ModelError(f"{where}: observable '{observable}' has the unknown observableTransformation '{transform}'")
        if distribution not in DISTRIBUTIONS:
            raise ModelError(
                f"{where}: observable '{observable}' has the noise distribution '{distribution}'; "
                f"supported: {', '.join(DISTRIBUTIONS)}"
            )


# ---------------------------------------------------------------------- the objective
class _Builder:
    """Turns the PEtab tables into a :class:`LikelihoodSpec`."""

    def __init__(self, problem: PetabProblem, method: str, rtol: float, atol: float, max_steps: int) -> None:
        self.problem = problem
        self.model = problem.model
        self.sbml = problem.sbml
        self.tables = problem.tables
        self.method, self.rtol, self.atol, self.max_steps = method, rtol, atol, max_steps
        parameters = self.tables.parameter_df
        self.table = parameters
        estimated = [str(i) for i, row in parameters.iterrows() if int(row["estimate"]) == 1]
        self.vector = ParameterVector(estimated)
        self.scales = tuple(_text(parameters.loc[n].get("parameterScale"), "lin") for n in estimated)
        self.estimated = tuple(estimated)
        # biotwin names of SBML ids, and back.
        self.sbml_id = {name: sbml_id for sbml_id, name in self.sbml.symbols.items()}

    # -------------------------------------------------------------- values of ids
    def resolve(self, token: Any, where: str) -> int:
        """The position in q of a number or a problem parameter id."""
        number = _number(token)
        if number is not None:
            return self.vector.constant(number)
        name = str(token).strip()
        if self.vector.is_estimated(name):
            return self.vector.parameter(name)
        if name in self.table.index:
            return self.vector.constant(float(self.table.loc[name, "nominalValue"]))
        biotwin_name = self.sbml.symbols.get(name)
        if biotwin_name is not None and biotwin_name in self.model.parameter_names:
            return self.vector.constant(self.model.parameter(biotwin_name).value)
        expression = self.sbml.expressions.get(name)
        if expression is not None and expression.is_number:
            return self.vector.constant(float(expression))
        raise ModelError(f"{where} refers to '{name}', which is neither a number nor a parameter of the problem")

    def condition_value(self, condition: str | None, sbml_id: str) -> Any:
        """The condition's entry for an SBML id, or None when it leaves it alone."""
        if condition is None:
            return None
        row = _condition_row(self.tables, condition)
        value = row.get(sbml_id)
        return value if _present(value) else None

    # -------------------------------------------------------------- pieces
    def experiment_arrays(self, keys: list[tuple[str | None, str]]) -> dict[str, np.ndarray]:
        model = self.model
        names, states = model.parameter_names, model.states
        n_e = len(keys)
        arrays = {
            "theta": np.zeros((n_e, len(names)), dtype=int),
            "initial": np.zeros((n_e, len(states)), dtype=int),
            "given": np.zeros((n_e, len(states)), dtype=bool),
            "pre_theta": np.zeros((n_e, len(names)), dtype=int),
            "pre_initial": np.zeros((n_e, len(states)), dtype=int),
            "pre_given": np.zeros((n_e, len(states)), dtype=bool),
            "has_pre": np.zeros(n_e, dtype=bool),
        }
        for e, (pre, simulation) in enumerate(keys):
            for suffix, condition in (("", simulation), ("pre_", pre)):
                if suffix and condition is None:
                    continue
                where = f"condition '{condition}'"
                for i, name in enumerate(names):
                    sbml_id = self.sbml_id.get(name, name)
                    value = self.condition_value(condition, sbml_id)
                    if value is not None:
                        index = self.resolve(value, where)
                    elif sbml_id in self.table.index:
                        index = self.resolve(sbml_id, "the parameter table")
                    else:
                        index = self.vector.constant(model.parameter(name).value)
                    arrays[suffix + "theta"][e, i] = index
                for k, state in enumerate(states):
                    value = self.condition_value(condition, self.sbml_id.get(state, state))
                    if value is not None:
                        arrays[suffix + "initial"][e, k] = self.resolve(value, where)
                        arrays[suffix + "given"][e, k] = True
            arrays["has_pre"][e] = pre is not None
        return arrays

    def symbol_meaning(self, symbol: str, placeholders: Sequence[str], observable: str) -> tuple[str, Any]:
        """What a symbol of an observable or noise formula stands for."""
        if symbol in placeholders:
            return "slot", symbol
        if symbol in self.model.states or symbol in self.model.parameter_names:
            return "model", sympy.Symbol(symbol)
        if symbol in self.table.index:
            return "slot", symbol
        if symbol == observable:
            return "observable", None
        if symbol in self.sbml.symbols:
            name = self.sbml.symbols[symbol]
            if name in self.model.states or name in self.model.parameter_names:
                return "model", sympy.Symbol(name)
        if symbol in self.sbml.expressions:
            return "model", self.sbml.expressions[symbol]
        if symbol in ("time", "t"):
            return "model", TIME
        raise ModelError(
            f"the formula of observable '{observable}' uses '{symbol}', which is not a species, parameter, "
            "placeholder or problem parameter"
        )

    def formula(self, text: Any, observable: str, placeholders: Sequence[str], own: sympy.Expr | None
                ) -> tuple[sympy.Expr, list[str]]:
        """A PEtab formula in model symbols, with its slots (placeholders and problem parameters) in order."""
        from petab.v1.math import sympify_petab

        try:
            expression = sympify_petab(str(text))
        except Exception as error:
            raise ModelError(f"observable '{observable}': cannot read the formula '{text}' ({error})") from None
        slots: list[str] = []
        replacements: dict[sympy.Symbol, sympy.Expr] = {}
        for symbol in sorted(expression.free_symbols, key=lambda s: s.name):
            kind, meaning = self.symbol_meaning(symbol.name, placeholders, observable)
            if kind == "slot":
                slots.append(symbol.name)
                replacements[symbol] = sympy.Symbol(f"slot__{len(slots) - 1}")
            elif kind == "observable":
                if own is None:
                    raise ModelError(f"the formula of observable '{observable}' refers to itself")
                replacements[symbol] = own
            else:
                replacements[symbol] = meaning
        return expression.xreplace(replacements), slots

    # -------------------------------------------------------------- the spec
    def objective(self) -> Objective:
        import jax
        import jax.numpy as jnp

        from biotwin import _jax  # noqa: F401

        model = self.model
        frame = self.tables.measurement_df
        observable_table = self.tables.observable_df
        groups = _experiment_groups(frame)
        keys = [key for key, _ in groups]
        arrays = self.experiment_arrays(keys)

        # Observables: formulas compiled per observable, with their slots.
        observable_ids = list(observable_table.index)
        compiled: dict[str, dict[str, Any]] = {}
        for observable in observable_ids:
            row = observable_table.loc[observable]
            observable_placeholders = _placeholders("observableParameter", observable, row["observableFormula"])
            noise_placeholders = _placeholders("noiseParameter", observable, row["noiseFormula"])
            h_expr, h_slots = self.formula(row["observableFormula"], observable, observable_placeholders, None)
            own = sympy.Symbol("observable__value")
            s_expr, s_slots = self.formula(row["noiseFormula"], observable, noise_placeholders + observable_placeholders, own)
            compiled[observable] = {
                "h": _lambdify(model, h_expr, len(h_slots), None),
                "sigma": _lambdify(model, s_expr, len(s_slots), own),
                "h_slots": h_slots,
                "s_slots": s_slots,
                "observable_placeholders": observable_placeholders,
                "noise_placeholders": noise_placeholders,
                "transform": TRANSFORMS.index(_text(row.get("observableTransformation"), "lin")),
                "laplace": _text(row.get("noiseDistribution"), "normal") == "laplace",
                "sigma_is_constant": not s_expr.free_symbols - {sympy.Symbol(f"slot__{i}") for i in range(len(s_slots))},
            }

        # Measurements, in the order of the measurement table within each experiment.
        times_of = []
        rows_e, rows_i, rows_k, rows_t, rows_y, h_index, s_index = [], [], [], [], [], [], []
        experiment_names, observable_names = [], []
        transform, laplace, varies = [], [], []
        for e, (key, rows) in enumerate(groups):
            times = np.array(sorted(set(rows["time"].astype(float))))
            times_of.append(times)
            for line, row in rows.iterrows():
                observable = str(row["observableId"])
                info = compiled[observable]
                where = f"measurement table line {line + 2}"
                given = {
                    **_assign(info["observable_placeholders"], row.get("observableParameters"), where, "observableParameters"),
                    **_assign(info["noise_placeholders"], row.get("noiseParameters"), where, "noiseParameters"),
                }
                h_slots = [self.slot(s, given, key[1], where) for s in info["h_slots"]]
                s_slots = [self.slot(s, given, key[1], where) for s in info["s_slots"]]
                value = float(row["measurement"])
                if info["transform"] != 0 and not value > 0:
                    raise DataError(
                        f"{where}: observable '{observable}' is log-transformed but the measurement is {value}; "
                        "a log-transformed measurement must be positive"
                    )
                rows_e.append(e), rows_k.append(observable_ids.index(observable))
                rows_i.append(int(np.searchsorted(times, float(row["time"]))))
                rows_t.append(float(row["time"])), rows_y.append(value)
                h_index.append(h_slots), s_index.append(s_slots)
                experiment_names.append(_experiment_name(key)), observable_names.append(observable)
                transform.append(info["transform"]), laplace.append(info["laplace"])
                varies.append(not info["sigma_is_constant"] or any(i < len(self.estimated) for i in s_slots))
        pad = self.vector.constant(0.0)
        h_index_array = _padded(h_index, pad)
        s_index_array = _padded(s_index, pad)
        rows_k_array = np.array(rows_k)

        n_times = max(t.size for t in times_of)
        plans = []
        for times in times_of:
            plan = make_plan(model, times, start=0.0, n_segments=1)
            plans.append(plan._replace(save_times=np.concatenate([times, np.full(n_times - times.size, times[-1])])))
        stacked = Plan(*(np.stack(parts) for parts in zip(*plans)))

        groups_k = [(np.flatnonzero(rows_k_array == k), compiled[o]) for k, o in enumerate(observable_ids)]
        groups_k = [(rows, info) for rows, info in groups_k if rows.size]

        def observe(t: Any, states: Any, _: Any, theta: Any, p: Any) -> Any:
            h = jnp.zeros(t.shape, dtype=jnp.float64)
            for rows, info in groups_k:
                function = info["h"]
                values = jax.vmap(lambda tt, y, th, pp: function(tt, y, th, pp, 0.0))(t[rows], states[rows], theta[rows], p[rows])
                h = h.at[rows].set(values)
            return h

        def noise(t: Any, states: Any, theta: Any, h: Any, p: Any) -> Any:
            sigma = jnp.ones(t.shape, dtype=jnp.float64)
            for rows, info in groups_k:
                function = info["sigma"]
                values = jax.vmap(function)(t[rows], states[rows], theta[rows], p[rows], h[rows])
                sigma = sigma.at[rows].set(values)
            return sigma

        table = self.table
        lower = np.array([to_scale(float(table.loc[n, "lowerBound"]), s) for n, s in zip(self.estimated, self.scales)])
        upper = np.array([to_scale(float(table.loc[n, "upperBound"]), s) for n, s in zip(self.estimated, self.scales)])
        nominal = np.array([to_scale(float(table.loc[n, "nominalValue"]), s) for n, s in zip(self.estimated, self.scales)])
        constants = self.vector.constants
        q0 = np.concatenate([[from_scale(v, s) for v, s in zip(nominal, self.scales)], constants])
        simulator = nominal_simulator(model, stacked, q0, arrays["theta"], arrays["initial"], arrays["given"],
                                      method=self.method, rtol=self.rtol, atol=self.atol, max_steps=self.max_steps)
        preequilibrate = self.preequilibration(arrays) if arrays["has_pre"].any() else None
        fixed = {str(n): float(r["nominalValue"]) for n, r in table.iterrows() if int(r["estimate"]) != 1}
        spec = LikelihoodSpec(
            model=model,
            simulator=simulator,
            plans=stacked,
            names=self.estimated,
            scales=self.scales,
            lower=lower,
            upper=upper,
            nominal=nominal,
            constants=constants,
            theta_index=arrays["theta"],
            initial_index=arrays["initial"],
            initial_given=arrays["given"],
            experiment=np.array(rows_e),
            time_index=np.array(rows_i),
            observe=observe,
            noise=noise,
            observe_index=h_index_array,
            noise_index=s_index_array,
            transform=np.array(transform),
            laplace=np.array(laplace, dtype=bool),
            sigma_floor=np.full(len(rows_y), DEFAULT_SIGMA_FLOOR),
            sigma_varies=np.array(varies, dtype=bool),
            measurements=Measurements(tuple(experiment_names), tuple(observable_names), np.array(rows_t), np.array(rows_y)),
            fixed=MappingProxyType(fixed),
            log_prior=_log_prior(table, self.estimated, self.scales),
            preequilibrate=preequilibrate,
        )
        return compile_objective(spec)

    def slot(self, name: str, given: Mapping[str, Any], condition: str, where: str) -> int:
        """The position in q of a formula's slot: a placeholder's value or a problem parameter."""
        if name in given:
            return self.resolve(given[name], where)
        value = self.condition_value(condition, name)
        return self.resolve(value if value is not None else name, where)

    def preequilibration(self, arrays: Mapping[str, np.ndarray]) -> Callable[..., Any]:
        """y0 after running each experiment's pre-equilibration condition to steady state."""
        import diffrax
        import jax
        import jax.numpy as jnp

        model = self.model
        compiled = model.compiled
        pre_theta = jnp.asarray(arrays["pre_theta"])
        pre_initial = jnp.asarray(arrays["pre_initial"])
        pre_given = jnp.asarray(arrays["pre_given"])
        has_pre = jnp.asarray(arrays["has_pre"])
        reinitialised = jnp.asarray(arrays["given"])
        from biotwin.likelihood import initial_function

        initial = initial_function(model)
        rtol, atol, max_steps = self.rtol, self.atol, self.max_steps
        no_inputs = jnp.zeros(compiled.n_inputs)
        rhs = finite_tangents(compiled.rhs)  # no derivatives at a diverged Newton iterate, as in every Simulator

        def steady_state(theta: Any, y0: Any) -> tuple[Any, Any]:
            term = diffrax.ODETerm(lambda t, y, args: rhs(t, y, theta, no_inputs))
            solution = diffrax.diffeqsolve(
                term, implicit_solver(rtol, atol), 0.0, PREEQUILIBRATION_HORIZON, None, y0,
                saveat=diffrax.SaveAt(t1=True),
                stepsize_controller=step_controller(rtol, atol),
                event=diffrax.Event(diffrax.steady_state_event(rtol=rtol, atol=atol)),
                max_steps=max_steps, adjoint=diffrax.ForwardMode(), throw=False,
            )
            ok = (solution.result == diffrax.RESULTS.successful) | (solution.result == diffrax.RESULTS.event_occurred)
            return solution.ys[-1], ~ok

        def preequilibrate(q: Any, thetas: Any, y0: Any) -> tuple[Any, Any]:
            theta_pre = q[pre_theta]
            start = jnp.where(pre_given, q[pre_initial], jax.vmap(initial)(theta_pre))
            steady, failed = jax.vmap(steady_state)(theta_pre, start)
            y_start = jnp.where(has_pre[:, None] & ~reinitialised, steady, y0)
            return y_start, has_pre & failed

        return preequilibrate


# ---------------------------------------------------------------------- helpers
def _lambdify(model: Model, expression: sympy.Expr, n_slots: int, own: sympy.Symbol | None) -> Callable[..., Any]:
    """f(t, y, theta, slots, h) for one formula; ``own`` is the symbol of the observable's value."""
    import jax.numpy as jnp

    states = [sympy.Symbol(s) for s in model.states]
    parameters = [sympy.Symbol(p) for p in model.parameter_names]
    slots = [sympy.Symbol(f"slot__{i}") for i in range(n_slots)]
    value = own if own is not None else sympy.Symbol("observable__unused")
    function = sympy.lambdify([TIME, states, parameters, slots, value], expression, modules="jax")

    def evaluate(t: Any, y: Any, theta: Any, p: Any, h: Any) -> Any:
        out = function(t, [y[i] for i in range(len(states))], [theta[i] for i in range(len(parameters))],
                       [p[i] for i in range(n_slots)], h)
        return jnp.zeros((), dtype=jnp.float64) + out

    return evaluate


def _placeholders(kind: str, observable: str, formula: Any) -> list[str]:
    """The placeholders ``<kind><n>_<observable>`` a formula uses, ordered by n (1, 2, ...)."""
    import re

    found = re.findall(rf"\b{kind}(\d+)_{re.escape(observable)}\b", str(formula))
    count = max((int(n) for n in found), default=0)
    return [f"{kind}{n}_{observable}" for n in range(1, count + 1)]


def _assign(placeholders: Sequence[str], entry: Any, where: str, column: str) -> dict[str, Any]:
    """The values a measurement row gives its placeholders (``a;b`` lists of numbers or parameter ids)."""
    import petab.v1 as petab

    if not placeholders:
        return {}
    values = petab.split_parameter_replacement_list(entry) if _present(entry) else []
    if len(values) != len(placeholders):
        raise DataError(
            f"{where}: {column} gives {len(values)} value(s) but the formula has {len(placeholders)} placeholder(s) "
            f"({', '.join(placeholders)}); separate them with ';'"
        )
    return dict(zip(placeholders, values))


def _padded(rows: list[list[int]], pad: int) -> np.ndarray:
    width = max((len(r) for r in rows), default=0)
    return np.array([r + [pad] * (width - len(r)) for r in rows], dtype=int).reshape(len(rows), width)


def _experiment_groups(frame: Any) -> list[tuple[tuple[str | None, str], Any]]:
    """Measurement rows by (pre-equilibration condition or None, simulation condition), in order of appearance."""
    pre = frame["preequilibrationConditionId"] if "preequilibrationConditionId" in frame else None
    keys = [
        (str(pre.iloc[i]) if pre is not None and _present(pre.iloc[i]) else None, str(frame["simulationConditionId"].iloc[i]))
        for i in range(len(frame))
    ]
    order = list(dict.fromkeys(keys))
    positions: dict[tuple[str | None, str], list[int]] = {key: [] for key in order}
    for i, key in enumerate(keys):
        positions[key].append(i)
    frame = frame.reset_index(drop=True)
    return [(key, frame.iloc[positions[key]]) for key in order]


def _experiment_name(key: tuple[str | None, str]) -> str:
    return key[1] if key[0] is None else f"{key[0]}->{key[1]}"


def _condition_row(tables: Any, condition: str) -> Mapping[str, Any]:
    frame = tables.condition_df
    if frame is None or condition not in frame.index:
        return {}
    return {str(k): v for k, v in frame.loc[condition].items() if k != "conditionName"}


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return str(value).strip() not in ("", "nan")


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return None if math.isnan(float(value)) else float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _text(value: Any, default: str) -> str:
    return str(value).strip() if _present(value) else default


def _log_prior(table: Any, names: Sequence[str], scales: Sequence[str]) -> Callable[[Any], Any] | None:
    """The log prior density of x from the table's ``objectivePriorType`` columns, or None without them.

    Each prior is a distribution of a variable v: the linear value p (uniform, normal, laplace),
    its logarithm ln p (logNormal, logLaplace) or x itself (parameterScaleUniform, -Normal,
    -Laplace), truncated to the bounds and renormalised as the ``petab`` package does. As the
    :class:`~biotwin.objective.Objective` promises, ``log_prior`` is the density of x, the
    parameter on its optimisation scale: log pi(v(x)) + log |dv/dx| (petab's
    ``Prior.pdf(x, x_scaled=True, rescale=True)``). Estimated parameters without a prior add nothing.
    """
    if "objectivePriorType" not in table.columns:
        return None
    import jax
    import jax.numpy as jnp
    from petab.v1.priors import Prior

    terms = []
    for k, (name, scale) in enumerate(zip(names, scales)):
        row = table.loc[name]
        kind = _text(row.get("objectivePriorType"), "")
        if not kind:
            continue
        if kind not in ("uniform", "normal", "laplace", "logNormal", "logLaplace", "parameterScaleUniform",
                        "parameterScaleNormal", "parameterScaleLaplace"):
            raise ModelError(f"parameter '{name}' has the unknown objectivePriorType '{kind}'")
        a, b = (float(v) for v in str(row.get("objectivePriorParameters")).split(";"))
        bounds = (float(row["lowerBound"]), float(row["upperBound"]))
        prior = Prior(kind, (a, b), bounds=bounds, transformation=scale)

        def variable(x: Any, kind: str = kind, scale: str = scale) -> Any:
            if kind.startswith("parameterScale"):
                return x
            p = from_scale(x, scale)
            return jnp.log(p) if kind.startswith("log") else p

        def density(x: Any, kind: str = kind, a: float = a, b: float = b, variable: Callable = variable) -> Any:
            v = variable(x)
            family = kind.replace("parameterScale", "").replace("log", "").lower()
            if family == "uniform":
                core = jnp.where((v >= a) & (v <= b), -math.log(b - a), -jnp.inf)
            elif family == "normal":
                core = -0.5 * math.log(2 * math.pi * b * b) - 0.5 * ((v - a) / b) ** 2
            else:
                core = -math.log(2 * b) - jnp.abs(v - a) / b
            return core + jnp.log(jnp.abs(jax.grad(variable)(x)))

        # Truncation to the bounds renormalises by a constant: petab's value minus ours at the nominal value.
        x_nominal = float(to_scale(float(row["nominalValue"]), scale))
        reference = float(np.log(prior.pdf(x_nominal, x_scaled=True, rescale=True)))
        offset = reference - float(density(jnp.asarray(x_nominal, dtype=jnp.float64)))
        terms.append((k, density, offset))
    if not terms:
        return None

    def log_prior(x: Any) -> Any:
        x = jnp.asarray(x, dtype=jnp.float64)
        total = jnp.zeros((), dtype=jnp.float64)
        for k, density, offset in terms:
            total = total + density(x[k]) + offset
        return total

    return log_prior


# ---------------------------------------------------------------------- writing
#: The files of a problem written by :func:`write_petab`, in its folder.
PETAB_FILES = MappingProxyType({
    "yaml": "problem.yaml", "sbml": "model.xml", "conditions": "conditions.tsv",
    "measurements": "measurements.tsv", "observables": "observables.tsv", "parameters": "parameters.tsv",
})


def write_petab(
    model: Model,
    dataset: Dataset,
    folder: str | Path,
    *,
    noise: str = "normal",
    parameters: Mapping[str, float] | None = None,
    sigma: float | Mapping[str, float] | None = None,
) -> Path:
    """Write ``model`` and ``dataset`` as a PEtab (format version 1) problem in ``folder``; returns its YAML file.

    The problem's negative log-likelihood is that of
    :func:`~biotwin.likelihood.dataset_objective` with the same ``noise`` and ``sigma``:

    * the model is :func:`~biotwin.io.sbml.write_sbml`'s SBML at the values in ``parameters``
      (fitted values by name; model defaults otherwise), without observables, which live in the
      observable table;
    * one condition per experiment (its id is the experiment's name made a valid identifier, its
      ``conditionName`` the name itself), with a column for every parameter an experiment
      overrides, every initial state an experiment gives (its override, or its first measurement
      when the model has no initial value for it; empty: the model's initial value) and every
      input an experiment sets (its level, which must be constant; 0 where it sets none);
    * measurements at times relative to each experiment's start (PEtab starts every simulation at
      t = 0), so a model whose equations use ``t`` needs experiments that start at 0;
    * one observable per measured observable, its id the observable's name unless that is an SBML
      id (a state observed as itself is ``obs_<state>``), its formula h the model's, with the noise
      ``noise``: normal, sigma_j; lognormal, transformation ``log`` and sigma_j; proportional,
      sigma_j max(|h|, delta_j) with delta_j = 1e-8 max|y_j| as in ``dataset_objective`` (h
      written out, since a PEtab v1 noise formula cannot name its observable);
    * the parameter table: every model parameter with its scale, bounds and nominal value,
      estimated (``estimate`` 1) when its bounds are finite and it is not declared ``fixed``, else fixed; a parameter that some
      experiment overrides is a condition-table column, so the others refer to the estimated
      ``<name>_estimated`` in its place; then ``sigma_<observable>`` on the log10 scale with
      ``dataset_objective``'s bounds and start (fixed at ``sigma`` where that gives it; a
      ``parameters`` entry ``sigma_<observable>`` sets the nominal value). Measurement sigmas
      stored in the dataset are not used, as in ``dataset_objective``.

    Doses and time-varying inputs need SBML events, which PEtab v1 problems here cannot hold:
    an experiment with one raises :class:`ModelError`. The files are written into a staging
    folder renamed to ``folder`` at the end, so an error leaves nothing half-written; an existing
    ``folder`` is replaced only when it holds nothing but the files of a PEtab export.
    """
    import pandas as pd
    import yaml

    folder = Path(folder)
    levels = {e.name: _constant_inputs(model, e) for e in dataset}
    bounded = [p.name for p in model.parameters if not p.fixed and math.isfinite(p.lower) and math.isfinite(p.upper)]
    objective = dataset_objective(model, dataset, noise=noise, estimate=bounded, sigma=sigma)
    observables = dataset.observables
    sigma_names = {o: f"{NOISE_PREFIX}{o}" for o in observables}
    values = _written_parameters(model, objective, parameters, tuple(sigma_names.values()))

    names = _Names({*model.states, *model.parameter_names, *model.inputs, COMPARTMENT, *sigma_names.values()})
    overridden = [p for p in model.parameter_names if any(p in e.overrides for e in dataset)]
    proxy = {p: names.fresh(f"{p}_estimated") for p in overridden if p in bounded}
    observable_ids = {o: names.fresh(f"obs_{o}" if o in names.taken else o) for o in observables}
    condition_ids = {e.name: names.fresh(_identifier(e.name)) for e in dataset}

    initial = {e.name: given_initial_values(model, e) for e in dataset}
    state_columns = [s for s in model.states if any(s in given for given in initial.values())]
    input_columns = [u for u in model.inputs if any(u in given for given in levels.values())]
    conditions, measurements = [], []
    for e in dataset:
        row: dict[str, Any] = {"conditionId": condition_ids[e.name], "conditionName": e.name}
        for p in overridden:
            row[p] = e.overrides.get(p, proxy.get(p, values[p]))
        row.update({s: initial[e.name].get(s, math.nan) for s in state_columns})
        row.update({u: levels[e.name].get(u, 0.0) for u in input_columns})
        conditions.append(row)
        start = e.start
        for i, t in enumerate(e.times):
            for k, o in enumerate(observables):
                if not math.isnan(e.values[i, k]):
                    measurements.append({"observableId": observable_ids[o], "simulationConditionId": condition_ids[e.name],
                                         "time": float(t) - start, "measurement": float(e.values[i, k])})

    observable_rows = []
    for o in observables:
        sigma_j = sigma_names[o]
        formula = _petab_math(next(ob.expr for ob in model.observables if ob.name == o))
        if noise == "proportional":
            # PEtab v1 noise formulas cannot name the observable: they repeat its formula.
            measured = np.concatenate([e.observed(o)[1] for e in dataset])
            floor = (PROPORTIONAL_FLOOR * float(np.max(np.abs(measured))) if measured.size else 0.0) or PROPORTIONAL_FLOOR
            noise_formula = f"{sigma_j} * max(abs({formula}), {floor!r})"
        else:
            noise_formula = sigma_j
        observable_rows.append({
            "observableId": observable_ids[o], "observableName": o, "observableFormula": formula,
            "observableTransformation": "log" if noise == "lognormal" else "lin",
            "noiseFormula": noise_formula, "noiseDistribution": "normal",
        })

    parameter_rows = []
    for p in model.parameters:
        if p.name in overridden and p.name not in proxy:
            continue  # fixed, and every condition gives its value
        parameter_rows.append({
            "parameterId": proxy.get(p.name, p.name), "parameterName": p.name, "parameterScale": p.scale,
            "lowerBound": p.lower, "upperBound": p.upper, "nominalValue": values[p.name], "estimate": int(p.name in bounded),
        })
    for o in observables:
        name = sigma_names[o]
        if name in objective.names:
            k = objective.names.index(name)
            lower, upper = (float(from_scale(objective.lower[k], "log10")), float(from_scale(objective.upper[k], "log10")))
        else:
            lower = upper = values[name]
        parameter_rows.append({
            "parameterId": name, "parameterName": f"noise scale of {o}", "parameterScale": "log10",
            "lowerBound": lower, "upperBound": upper, "nominalValue": values[name], "estimate": int(name in objective.names),
        })

    # Everything is known: now the files, in a staging folder published at once.
    sbml_initial = {s: next(g[s] for g in initial.values() if s in g) for s in model.states if s not in model.initial}
    sbml_values = {p: v for p, v in values.items() if p in model.parameter_names}
    tables = {
        "conditions": pd.DataFrame(conditions, columns=["conditionId", "conditionName", *overridden, *state_columns,
                                                        *input_columns]),
        "measurements": pd.DataFrame(measurements, columns=["observableId", "simulationConditionId", "time", "measurement"]),
        "observables": pd.DataFrame(observable_rows),
        "parameters": pd.DataFrame(parameter_rows),
    }
    description = {
        "format_version": 1,
        "parameter_file": PETAB_FILES["parameters"],
        "problems": [{
            "sbml_files": [PETAB_FILES["sbml"]],
            "condition_files": [PETAB_FILES["conditions"]],
            "measurement_files": [PETAB_FILES["measurements"]],
            "observable_files": [PETAB_FILES["observables"]],
        }],
    }
    sbml_text = write_sbml(model, parameters=sbml_values, initial=sbml_initial, observables=False)

    def write(staging: Path) -> None:
        (staging / PETAB_FILES["sbml"]).write_text(sbml_text, encoding="utf-8")
        for key, frame in tables.items():
            frame.to_csv(staging / PETAB_FILES[key], sep="\t", index=False, na_rep="")
        (staging / PETAB_FILES["yaml"]).write_text(yaml.safe_dump(description, sort_keys=False), encoding="utf-8")

    _publish(folder, write, set(PETAB_FILES.values()))
    return folder / PETAB_FILES["yaml"]


class _Names:
    """Identifiers handed out once each, renamed apart from the ``taken`` ones with underscores."""

    def __init__(self, taken: set[str]) -> None:
        self.taken = set(taken)

    def fresh(self, name: str) -> str:
        while name in self.taken:
            name += "_"
        self.taken.add(name)
        return name


def _identifier(name: str) -> str:
    """A PEtab identifier ([A-Za-z_][A-Za-z0-9_]*) made from an experiment's name."""
    identifier = re.sub(r"\W", "_", name, flags=re.ASCII)
    return identifier if re.match(r"[A-Za-z_]", identifier) else f"condition_{identifier}"


def _constant_inputs(model: Model, experiment: Experiment) -> dict[str, float]:
    """The level of each input the experiment sets, checked to be constant over the experiment.

    Raises :class:`ModelError` for what a PEtab v1 condition cannot hold: doses, infusions,
    inputs that switch during the experiment, and a start other than 0 when the equations use t.
    """
    name = experiment.name
    if experiment.doses:
        dose = experiment.doses[0]
        raise ModelError(
            f"experiment '{name}' has doses (e.g. {dose.amount!r} into '{dose.state}' at t={dose.time!r}), which PEtab "
            "v1 can only hold as SBML events; export the experiments without doses"
        )
    start, end = experiment.start, float(experiment.times[-1])
    uses_time = any(TIME in e.free_symbols for e in (*model.rhs, *(o.expr for o in model.observables)))
    if start != 0 and uses_time:
        raise ModelError(
            f"experiment '{name}' starts at t={start!r} but PEtab starts every simulation at 0 and the model's "
            "equations use t; give the experiment t0=0"
        )
    levels = {}
    for signal in experiment.inputs:
        if signal.name not in model.inputs:
            raise ModelError(
                f"experiment '{name}' infuses into '{signal.name}', which PEtab v1 can only hold as SBML events; "
                "declare the infusion rate as a model input or export the experiments without it"
            )
        level = signal(start)
        switches = [t for t in signal.times if start < t <= end and signal(t) != level]
        if switches:
            raise ModelError(
                f"experiment '{name}' switches input '{signal.name}' at t={switches[0]!r}; PEtab v1 conditions hold "
                "constant inputs only (time-varying inputs need SBML events), so split the experiment at its switches"
            )
        levels[signal.name] = level
    return levels


def _written_parameters(model: Model, objective: Objective, parameters: Mapping[str, float] | None,
                        sigma_names: Sequence[str]) -> dict[str, float]:
    """Nominal values, linear scale: ``parameters`` where given, else the model's and the objective's starts."""
    given = {str(k): float(v) for k, v in dict(parameters or {}).items()}
    known = (*model.parameter_names, *sigma_names)
    for key, value in given.items():
        if key not in known:
            raise ModelError(Model.unknown_message("parameter", key, known))
        if not math.isfinite(value):
            raise ModelError(f"the value of '{key}' is {value}; give a finite number")
    starts = {**objective.values(objective.nominal), **objective.fixed}
    values = {p.name: given.get(p.name, p.value) for p in model.parameters}
    for name in sigma_names:
        values[name] = objective.fixed[name] if name in objective.fixed else given.get(name, starts[name])
    return values


def _petab_math(expr: sympy.Expr) -> str:
    """PEtab math text of a SymPy expression: exact floats, ``time``, ``==`` and ``&&``."""
    from petab.v1.math.printer import PetabStrPrinter

    class Printer(PetabStrPrinter):
        def _print_Float(self, e: Any) -> str:
            return repr(float(e))

        def _print_Symbol(self, e: Any) -> str:
            return "time" if e == TIME else e.name

        def _print_Relational(self, e: Any) -> str:
            return f"{self._print(e.lhs)} {e.rel_op} {self._print(e.rhs)}"

        def _print_And(self, e: Any) -> str:
            return " && ".join(f"({self._print(a)})" for a in e.args)

        def _print_Or(self, e: Any) -> str:
            return " || ".join(f"({self._print(a)})" for a in e.args)

        def _print_Not(self, e: Any) -> str:
            return f"!({self._print(e.args[0])})"

    return Printer().doprint(as_piecewise(expr))


def _publish(folder: Path, write: Callable[[Path], None], names: set[str]) -> None:
    """Let ``write`` fill a staging folder next to ``folder``, then rename it to ``folder``.

    An existing ``folder`` is replaced only when it holds nothing but files in ``names``; it is
    moved aside first and removed once the new folder is in place.
    """
    if folder.exists():
        if not folder.is_dir():
            raise DataError(f"{folder} is a file; give a folder for the PEtab problem")
        others = sorted(p.name for p in folder.iterdir() if p.name not in names)
        if others:
            raise DataError(
                f"{folder} already holds files other than a PEtab export (e.g. '{others[0]}'); give a new or empty folder"
            )
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    old = None
    try:
        write(staging)
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            os.replace(folder, old / folder.name)
        os.replace(staging, folder)
    except BaseException:
        if old is not None and not folder.exists():
            os.replace(old / folder.name, folder)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

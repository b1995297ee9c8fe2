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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import sympy

from biotwin.data import Dataset, Experiment
from biotwin.errors import DataError, ModelError
from biotwin.io.sbml import SbmlModel, import_sbml
from biotwin.likelihood import (
    DEFAULT_SIGMA_FLOOR,
    DISTRIBUTIONS,
    LikelihoodSpec,
    ParameterVector,
    compile_objective,
    nominal_simulator,
)
from biotwin.model import TIME, Model
from biotwin.objective import TRANSFORMS, Measurements, Objective, from_scale, to_scale
from biotwin.simulate import Plan, implicit_solver, make_plan

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
        self, *, method: str = "auto", rtol: float = 1e-8, atol: float = 1e-10, max_steps: int = PETAB_MAX_STEPS,
    ) -> Objective:
        """The problem's negative log-likelihood over its estimated parameters (see the module docstring).

        ``method`` is the ODE solver (``"auto"``: Kvaerno5 when the model is stiff at the nominal
        parameters, else explicit Runge-Kutta), ``rtol``/``atol`` its tolerances. The objective is
        compiled once; ``log_prior`` is set when the parameter table has objective priors.
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

        def steady_state(theta: Any, y0: Any) -> tuple[Any, Any]:
            term = diffrax.ODETerm(lambda t, y, args: compiled.rhs(t, y, theta, no_inputs))
            solution = diffrax.diffeqsolve(
                term, implicit_solver(rtol, atol), 0.0, PREEQUILIBRATION_HORIZON, None, y0,
                saveat=diffrax.SaveAt(t1=True),
                stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
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

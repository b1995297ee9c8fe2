"""The likelihood of measured time courses under a noise model, as one compiled :class:`Objective`.

A measurement y_m of observable k_m at time t_m in experiment e_m is explained by the prediction
h_m = g_k(x_e(t_m), theta_e) of the model and a noise scale sigma_m. Each measurement has a
*transformation* T (lin: T(y) = y, log: ln y, log10: log10 y) and a *distribution* (normal or
Laplace) of the transformed value around the transformed prediction, which is how PEtab writes
every noise model:

    normal:   J_m = 1/2 log(2 pi) + log sigma_m + log T'(y_m) + 1/2 r_m^2,
    Laplace:  J_m = log 2         + log sigma_m + log T'(y_m) + |r_m|,
    r_m = (T(y_m) - T(h_m)) / sigma_m,

with the Jacobian term log T'(y) = 0, log y or log(y ln 10) that makes J a density of the
*untransformed* measurement (PEtab's and AMICI's convention; it does not depend on the
parameters). The objective is J(x) = sum_m J_m; a failed solve or a prediction outside the
transformation's domain (h <= 0 under a log) gives J = +inf.

Everything that varies with the estimated parameters goes through one vector q: the estimated
parameters on the linear scale followed by every constant of the problem (fixed parameters,
overrides, given initial states). Each experiment's model parameters are theta_e = q[I_e] and
its initial state x_e(t0) = q[J_e] where the data give it, else the model's initial expression
at theta_e; so one compiled program, vmapped over experiments, serves every experiment of any
condition table.

Derivatives: the solves use diffrax's forward-mode adjoint, and the predictions (h, sigma) carry
a custom JVP whose tangent is J_h(x) v with the Jacobian J_h computed by forward sensitivities.
The tangent is then linear in v, so ``jax.grad`` (which transposes it), ``jax.jacfwd`` and
``jax.hessian`` all work, and so does NUTS: every derivative costs one forward-sensitivity solve
with one tangent per estimated parameter, as in AMICI's forward sensitivity analysis.

:func:`dataset_objective` builds the objective of a :class:`~biotwin.data.Dataset` under one of
three noise models with one noise parameter per observable; :mod:`biotwin.io.petab` builds the
objective of a PEtab problem with the same machinery (:func:`compile_objective`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np
import sympy

from biotwin.data import Dataset, Experiment
from biotwin.errors import DataError, ModelError
from biotwin.model import Model
from biotwin.objective import Measurements, Objective, from_scale, to_scale
from biotwin.simulate import (
    OK,
    SENSITIVITY_STIFF_METHOD,
    Plan,
    Simulator,
    explicit_method,
    is_stiff,
    plan_for_experiment,
)

#: The noise models of :func:`dataset_objective`.
NOISE_MODELS = ("normal", "lognormal", "proportional")
#: The estimated noise scale of observable j is the parameter ``sigma_<j>``.
NOISE_PREFIX = "sigma_"
#: Distributions of the transformed measurement (PEtab's ``noiseDistribution``).
DISTRIBUTIONS = ("normal", "laplace")
#: Bounds of an estimated noise parameter sigma_j, relative to its reference size s_j (the
#: spread of observable j's measurements for normal noise; 1 for the relative noise models):
#: sigma_j in [1e-6 s_j, 10 s_j], starting at 0.1 s_j.
SIGMA_LOWER, SIGMA_UPPER, SIGMA_START = 1e-6, 10.0, 0.1
#: Proportional noise uses sigma_m = sigma |h_m| floored at this fraction of the largest |y| of the
#: observable, so that a prediction crossing zero keeps a finite likelihood.
PROPORTIONAL_FLOOR = 1e-8
#: Smallest noise scale assumed by the sigma residuals when no bound on sigma is known.
DEFAULT_SIGMA_FLOOR = 1e-30
DEFAULT_MAX_STEPS = 100_000
#: Residual of every measurement when the solve fails (the NLL is +inf there): large, but finite,
#: so that a least-squares optimiser backs away instead of stopping.
FAILED_RESIDUAL = 1e3


# ---------------------------------------------------------------------- the compiled core
@dataclass(frozen=True, eq=False)
class LikelihoodSpec:
    """Everything :func:`compile_objective` needs, as arrays over experiments E and measurements M.

    Estimated parameters: ``names``, ``scales``, ``lower``/``upper``/``nominal`` on their scales.
    ``constants`` (C,) follow them in q = (from_scale(x), constants). ``theta_index`` (E, P) and
    ``initial_index`` (E, n) index q; ``initial_given`` (E, n) says which initial states come
    from q (the rest from the model's initial expressions). ``plans`` stacks one
    :class:`~biotwin.simulate.Plan` per experiment.

    Per measurement: ``experiment`` and ``time_index`` say where in the solution it lies;
    ``observe(t, states, observables, theta, p) -> h`` and ``noise(t, states, theta, h, p) -> sigma``
    compute predictions and noise scales of all measurements at once (batched over M) from the
    states (M, n), the model's observables (M, O), parameters (M, P) and the measurement's own
    parameters p = q[``observe_index``] (M, A) or q[``noise_index``] (M, B). ``transform`` (M,)
    indexes :data:`biotwin.objective.TRANSFORMS`; ``laplace`` (M,) marks Laplace noise. ``sigma_floor`` (M,) is a lower
    bound of sigma_m used by the sigma residuals, and ``sigma_varies`` (M,) marks the measurements
    whose sigma depends on x.
    """

    model: Model
    simulator: Simulator
    plans: Plan
    names: tuple[str, ...]
    scales: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    nominal: np.ndarray
    constants: np.ndarray
    theta_index: np.ndarray
    initial_index: np.ndarray
    initial_given: np.ndarray
    experiment: np.ndarray
    time_index: np.ndarray
    observe: Callable[..., Any]
    noise: Callable[..., Any]
    observe_index: np.ndarray
    noise_index: np.ndarray
    transform: np.ndarray
    laplace: np.ndarray
    sigma_floor: np.ndarray
    sigma_varies: np.ndarray
    measurements: Measurements
    fixed: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    log_prior: Callable[[Any], Any] | None = None
    preequilibrate: Callable[..., Any] | None = None


def measurement_constant(value: np.ndarray, transform: np.ndarray, laplace: np.ndarray) -> np.ndarray:
    """The part of J_m that does not depend on the parameters: the density's normaliser and log T'(y)."""
    value = np.asarray(value, dtype=float)
    base = np.where(laplace, math.log(2.0), 0.5 * math.log(2.0 * math.pi))
    with np.errstate(divide="ignore", invalid="ignore"):
        jacobian = np.select(
            [transform == 0, transform == 1, transform == 2],
            [np.zeros_like(value), np.log(value), np.log(value * math.log(10.0))],
        )
    return base + jacobian


def _transformed(values: Any, transform: np.ndarray) -> Any:
    """T(values) per measurement; values outside the domain of a log come back NaN."""
    import jax.numpy as jnp

    safe = jnp.where(values > 0, values, 1.0)
    log = jnp.log(safe)
    out = jnp.where(transform == 0, values, jnp.where(transform == 1, log, log / math.log(10.0)))
    return jnp.where((transform == 0) | (values > 0), out, jnp.nan)


def compile_objective(spec: LikelihoodSpec) -> Objective:
    """The :class:`Objective` of ``spec``: jitted, pure JAX ``nll``, ``predict``, ``sigma`` and ``residuals``.

    ``residuals`` (only when every measurement is normal) is r = (r_m, s_m) with the standardised
    residuals r_m and, for each measurement whose sigma depends on x, the sigma residual

        s_m = sqrt(2 log(sigma_m / sigma_floor_m)),

    so that 1/2 |r|^2 = J(x) - sum_m c_m - sum_{m: sigma varies} log sigma_floor_m
    - sum_{m: sigma fixed} log sigma_m with c_m the constants of :func:`measurement_constant`.
    """
    import jax
    import jax.numpy as jnp

    from biotwin import _jax  # noqa: F401

    model = spec.model
    scales = spec.scales
    constants = jnp.asarray(spec.constants, dtype=jnp.float64)
    theta_index = jnp.asarray(spec.theta_index)
    initial_index = jnp.asarray(spec.initial_index)
    initial_given = jnp.asarray(spec.initial_given)
    plans = Plan(*(jnp.asarray(a, dtype=jnp.float64) for a in spec.plans))
    experiment = jnp.asarray(spec.experiment)
    time_index = jnp.asarray(spec.time_index)
    observe_index = jnp.asarray(spec.observe_index)
    noise_index = jnp.asarray(spec.noise_index)
    transform = np.asarray(spec.transform)
    laplace = jnp.asarray(spec.laplace)
    values = np.asarray(spec.measurements.value, dtype=float)
    t_measured = jnp.asarray(spec.measurements.time, dtype=jnp.float64)
    y_transformed = np.select(
        [transform == 0, transform == 1, transform == 2],
        [values, np.log(np.where(values > 0, values, 1.0)), np.log10(np.where(values > 0, values, 1.0))],
    )
    y_transformed = jnp.asarray(y_transformed)
    constant_terms = measurement_constant(values, transform, np.asarray(spec.laplace))
    total_constant = float(np.sum(constant_terms))
    sigma_floor = jnp.asarray(spec.sigma_floor, dtype=jnp.float64)
    varies = np.asarray(spec.sigma_varies, dtype=bool)
    varies_index = jnp.asarray(np.flatnonzero(varies))
    initial_states = initial_function(model)
    solve_all = jax.vmap(spec.simulator.solve, in_axes=(0, 0, 0))
    preequilibrate = spec.preequilibrate

    def q_vector(x: Any) -> Any:
        x = jnp.asarray(x, dtype=jnp.float64)
        linear = [from_scale(x[i], scale) for i, scale in enumerate(scales)]
        head = jnp.stack(linear) if linear else jnp.zeros(0)
        return jnp.concatenate([head, constants])

    def raw_predictions(x: Any) -> tuple[Any, Any]:
        q = q_vector(x)
        thetas = q[theta_index]
        y0 = jnp.where(initial_given, q[initial_index], jax.vmap(initial_states)(thetas))
        failed_before = jnp.zeros(thetas.shape[0], dtype=bool)
        if preequilibrate is not None:
            y0, failed_before = preequilibrate(q, thetas, y0)
        states, observables, status, _ = solve_all(thetas, y0, plans)
        failed = (status != OK) | failed_before
        states_m = states[experiment, time_index]
        observables_m = observables[experiment, time_index]
        theta_m = thetas[experiment]
        h = spec.observe(t_measured, states_m, observables_m, theta_m, q[observe_index])
        sigma = spec.noise(t_measured, states_m, theta_m, h, q[noise_index])
        h = jnp.where(failed[experiment], jnp.nan, h)
        return h, sigma

    @jax.custom_jvp
    def predictions(x: Any) -> tuple[Any, Any]:
        return raw_predictions(x)

    @predictions.defjvp
    def _predictions_jvp(primals: Any, tangents: Any) -> Any:
        (x,), (v,) = primals, tangents

        def with_value(x: Any) -> Any:
            out = raw_predictions(x)
            return out, out

        jacobian, out = jax.jacfwd(with_value, has_aux=True)(x)
        # A failed solve has no derivative; zeros keep NaN out of the gradient (J is +inf there).
        jacobian = jax.tree_util.tree_map(lambda j: jnp.where(jnp.isfinite(j), j, 0.0), jacobian)
        return out, jax.tree_util.tree_map(lambda j: j @ v, jacobian)

    def standardised(x: Any, solve: Callable[[Any], tuple[Any, Any]] = predictions) -> tuple[Any, Any, Any]:
        h, sigma = solve(x)
        h_t = _transformed(h, transform)
        ok = jnp.isfinite(h_t) & jnp.isfinite(sigma) & (sigma > 0)
        safe_sigma = jnp.where(ok, sigma, 1.0)
        r = jnp.where(ok, (y_transformed - jnp.where(ok, h_t, 0.0)) / safe_sigma, 0.0)
        return r, safe_sigma, jnp.all(ok)

    def nll_of(r: Any, sigma: Any, ok: Any) -> Any:
        terms = jnp.log(sigma) + jnp.where(laplace, jnp.abs(r), 0.5 * r**2)
        return jnp.where(ok, total_constant + jnp.sum(terms), jnp.inf)

    def nll(x: Any) -> Any:
        return nll_of(*standardised(x))

    def least_squares(x: Any) -> tuple[Any, Any]:
        # Gauss-Newton takes J_r by jacfwd, which differentiates the raw solve by forward
        # sensitivities as the custom JVP would; going through the custom JVP would also trace
        # the primal solve once more, a third of the compile time on Boehm. Forward mode only.
        r, sigma, ok = standardised(x, raw_predictions)
        # A failed solve is the worst fit, not a perfect one: a least-squares step backs away from it.
        r_ok = jnp.where(ok, r, FAILED_RESIDUAL)
        sigma_part = jnp.sqrt(jnp.maximum(2.0 * jnp.log(sigma[varies_index] / sigma_floor[varies_index]), 0.0))
        return jnp.concatenate([r_ok, sigma_part]), nll_of(r, sigma, ok)

    def predict(x: Any) -> Any:
        return predictions(x)[0]

    def sigma(x: Any) -> Any:
        return predictions(x)[1]

    return Objective(
        names=spec.names,
        scales=spec.scales,
        lower=np.asarray(spec.lower, dtype=float),
        upper=np.asarray(spec.upper, dtype=float),
        nominal=np.asarray(spec.nominal, dtype=float),
        nll=jax.jit(nll),
        measurements=replace(spec.measurements, transform=spec.transform, laplace=spec.laplace),
        predict=jax.jit(predict),
        sigma=jax.jit(sigma),
        least_squares=None if bool(np.any(spec.laplace)) else jax.jit(least_squares),
        log_prior=spec.log_prior,
        fixed=MappingProxyType(dict(spec.fixed)),
    )


def initial_function(model: Model) -> Callable[[Any], Any]:
    """x0(theta): the model's initial expressions as a JAX function (0 where a state has none)."""
    import jax.numpy as jnp

    parameters = [sympy.Symbol(n) for n in model.parameter_names]
    expressions = [model.initial.get(s, sympy.Integer(0)) for s in model.states]
    function = sympy.lambdify([parameters], expressions, modules="jax")

    def initial(theta: Any) -> Any:
        out = function([theta[i] for i in range(len(parameters))])
        return jnp.stack([jnp.zeros((), dtype=jnp.float64) + v for v in out])

    return initial


def nominal_simulator(
    model: Model, plans: Plan, q0: np.ndarray, theta_index: np.ndarray, initial_index: np.ndarray,
    initial_given: np.ndarray, *, method: str, rtol: float, atol: float, max_steps: int,
) -> Simulator:
    """The forward-mode simulator of a compiled objective, its solver chosen at the nominal point.

    ``q0`` is the problem vector q at the nominal parameters. With ``method="auto"`` the first
    experiment's Jacobian there decides: Rodas5 (:data:`~biotwin.simulate.SENSITIVITY_STIFF_METHOD`)
    for a stiff start, else the explicit method for ``rtol``; any other ``method`` is used as given.
    """
    if method == "auto":
        theta0 = q0[theta_index[0]]
        values = dict(zip(model.parameter_names, theta0))
        defaults = np.array([model.initial_value(s, values) if s in model.initial else 0.0 for s in model.states])
        y0 = np.where(initial_given[0], q0[initial_index[0]], defaults)
        span = float(np.max(plans.boundaries[:, -1] - plans.boundaries[:, 0]))
        method = SENSITIVITY_STIFF_METHOD if is_stiff(model, theta0, y0, span) else explicit_method(rtol)
    return Simulator(model, method, rtol=rtol, atol=atol, max_steps=max_steps, adjoint="forward")


class ParameterVector:
    """Builds q: the estimated parameters first, then constants, each constant stored once."""

    def __init__(self, estimated: Sequence[str]) -> None:
        self.estimated = tuple(estimated)
        self._position = {name: i for i, name in enumerate(self.estimated)}
        self._constants: list[float] = []
        self._constant_position: dict[float, int] = {}

    def parameter(self, name: str) -> int:
        return self._position[name]

    def is_estimated(self, name: str) -> bool:
        return name in self._position

    def constant(self, value: float) -> int:
        value = float(value)
        key = value if not math.isnan(value) else "nan"
        if key not in self._constant_position:
            self._constant_position[key] = len(self.estimated) + len(self._constants)
            self._constants.append(value)
        return self._constant_position[key]

    @property
    def constants(self) -> np.ndarray:
        return np.array(self._constants, dtype=float)


# ---------------------------------------------------------------------- datasets
def given_initial_values(model: Model, experiment: Experiment) -> dict[str, float]:
    """The initial states an experiment gives: its overrides, then first measurements.

    A state overridden by the experiment starts there; a state without an initial expression in
    the model starts at its first measurement when it is observed under its own name. Any other
    state without either raises :class:`ModelError`.
    """
    given: dict[str, float] = {}
    for state in model.states:
        if state in experiment.overrides:
            given[state] = float(experiment.overrides[state])
        elif state in model.initial:
            continue
        elif state in experiment.observables:
            times, values = experiment.observed(state)
            if times.size == 0:
                raise ModelError(
                    f"no initial value for '{state}' in experiment '{experiment.name}' and no measurement of it; "
                    f"add '{state}(0) = ...' to the model or override '{state}' in the experiment"
                )
            given[state] = float(values[0])
        else:
            raise ModelError(
                f"no initial value for the hidden state '{state}' in experiment '{experiment.name}'; "
                f"add '{state}(0) = ...' to the model or override '{state}' in the experiment"
            )
    return given


def stacked_plans(model: Model, dataset: Dataset) -> Plan:
    """One plan per experiment at its measurement times, padded to one shape and stacked.

    Padding repeats the last measurement time and adds zero-length segments, which change
    nothing in the solution.
    """
    n_segments = max(plan_for_experiment(model, e).jumps.shape[0] for e in dataset)
    n_times = max(e.times.size for e in dataset)
    plans = []
    for experiment in dataset:
        plan = plan_for_experiment(model, experiment, n_segments=n_segments)
        pad = n_times - experiment.times.size
        plans.append(plan._replace(save_times=np.concatenate([plan.save_times, np.full(pad, plan.save_times[-1])])))
    return Plan(*(np.stack(parts) for parts in zip(*plans)))


def dataset_objective(
    model: Model,
    dataset: Dataset,
    *,
    noise: str = "normal",
    estimate: Sequence[str] | None = None,
    sigma: float | Mapping[str, float] | None = None,
    method: str = "auto",
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> Objective:
    """The negative log-likelihood of ``dataset`` given ``model`` under a noise model.

    Noise models, for measurement y of observable j with prediction h:

    * ``"normal"``:       y = h + sigma_j e,                    e ~ N(0, 1);
    * ``"lognormal"``:    log y = log h + sigma_j e              (PEtab's log transformation; the
      NLL includes the Jacobian term log y, so it is a density of y itself);
    * ``"proportional"``: y = h (1 + sigma_j e), i.e. normal with sigma_m = sigma_j max(|h|, delta_j),
      where delta_j = 1e-8 max|y_j| keeps the likelihood finite where h crosses zero.

    Estimated parameters: ``estimate`` (default: every model parameter not declared ``fixed``), each on the scale its
    :class:`~biotwin.model.Parameter` declares, within its bounds (which must then be finite: a
    multi-start needs a box, so an unbounded estimated parameter raises :class:`ModelError`);
    then one noise parameter ``sigma_<observable>`` per observable on the log10 scale, within
    [1e-6 s_j, 10 s_j] from 0.1 s_j, with s_j the spread of the observable's measurements for
    normal noise and 1 for the relative noise models. ``sigma`` fixes the noise scales instead:
    one number for every observable, or a mapping for some (the others are estimated).
    Measurement sigmas stored in the dataset are not used.

    Initial states come from each experiment's overrides, else the model's initial expressions
    (at the estimated parameters), else the first measurement of a state observed under its
    own name. All experiments are solved in one vmapped, compiled solve with ``method``
    (``"auto"``: Rodas5 when the system is stiff at the nominal parameters, else explicit).
    """
    from biotwin import _jax  # noqa: F401

    if noise not in NOISE_MODELS:
        raise ModelError(f"unknown noise model '{noise}'; choose one of {', '.join(NOISE_MODELS)}")
    names = model.parameter_names
    estimated = tuple(model.free_parameter_names if estimate is None else estimate)
    for name in estimated:
        if name not in names:
            raise ModelError(model.unknown_message("parameter", name, names))
    repeated = sorted({n for n in estimated if estimated.count(n) > 1})
    if repeated:
        raise ModelError(f"parameter '{repeated[0]}' is listed twice in estimate; list each once")
    for name in estimated:
        parameter = model.parameter(name)
        if not (math.isfinite(parameter.lower) and math.isfinite(parameter.upper)):
            raise ModelError(
                f"parameter '{name}' is estimated but has no finite bounds [{parameter.lower}, {parameter.upper}]; "
                f"give them in the model (e.g. '{name} in [0, 10]') or leave '{name}' out of estimate"
            )
    observables = dataset.observables
    unknown = [o for o in observables if o not in model.observable_names]
    if unknown:
        raise DataError(
            f"the data measure '{unknown[0]}', which is not an observable of the model (observables: "
            f"{', '.join(model.observable_names)}); add 'observable {unknown[0]} = ...' to the model or drop the column"
        )
    for experiment in dataset:
        bad = [k for k in experiment.overrides if k not in names and k not in model.states]
        if bad:
            raise ModelError(
                f"experiment '{experiment.name}' overrides '{bad[0]}', which is neither a parameter nor a state of the model"
            )

    # Noise parameters: fixed or estimated, per observable.
    if sigma is None:
        fixed_sigma: dict[str, float] = {}
    elif isinstance(sigma, Mapping):
        fixed_sigma = {str(k): float(v) for k, v in sigma.items()}
        for key in fixed_sigma:
            if key not in observables:
                raise ModelError(Model.unknown_message("observable", key, observables))
    else:
        fixed_sigma = {o: float(sigma) for o in observables}
    for key, value in fixed_sigma.items():
        if not (math.isfinite(value) and value > 0):
            raise ModelError(f"the noise scale of '{key}' must be positive and finite, got {value}")
    sigma_names = {o: f"{NOISE_PREFIX}{o}" for o in observables}
    clash = [s for o, s in sigma_names.items() if o not in fixed_sigma and s in names]
    if clash:
        raise ModelError(f"the model has a parameter '{clash[0]}', which is the name of a noise parameter; rename it")
    estimated_sigma = [o for o in observables if o not in fixed_sigma]
    all_values = {o: np.concatenate([e.observed(o)[1] for e in dataset]) for o in observables}
    if noise == "lognormal":
        for experiment in dataset:
            for o in observables:
                times, vals = experiment.observed(o)
                if np.any(vals <= 0):
                    raise DataError(
                        f"experiment '{experiment.name}': '{o}' = {vals[vals <= 0][0]} at t={times[vals <= 0][0]}; "
                        "log-normal noise needs positive measurements (use noise='normal' or drop the value)"
                    )

    def reference(o: str) -> float:
        if noise != "normal":
            return 1.0
        measured = all_values[o]
        spread = float(np.std(measured)) if measured.size > 1 else 0.0
        level = float(np.mean(np.abs(measured))) if measured.size else 0.0
        size = spread if spread > 1e-3 * level else level
        return size if size > 0 else 1.0

    parameter_names = list(estimated) + [sigma_names[o] for o in estimated_sigma]
    scales = [model.parameter(n).scale for n in estimated] + ["log10"] * len(estimated_sigma)
    lower = [to_scale(model.parameter(n).lower, model.parameter(n).scale) for n in estimated]
    upper = [to_scale(model.parameter(n).upper, model.parameter(n).scale) for n in estimated]
    nominal = [to_scale(model.parameter(n).value, model.parameter(n).scale) for n in estimated]
    for o in estimated_sigma:
        size = reference(o)
        lower.append(math.log10(SIGMA_LOWER * size))
        upper.append(math.log10(SIGMA_UPPER * size))
        nominal.append(math.log10(SIGMA_START * size))
    vector = ParameterVector(parameter_names)

    # Per-experiment parameters and initial states.
    n_states = len(model.states)
    theta_index = np.zeros((len(dataset), len(names)), dtype=int)
    initial_index = np.zeros((len(dataset), n_states), dtype=int)
    initial_given = np.zeros((len(dataset), n_states), dtype=bool)
    for e, experiment in enumerate(dataset):
        for i, name in enumerate(names):
            if name in experiment.overrides:
                theta_index[e, i] = vector.constant(experiment.overrides[name])
            elif vector.is_estimated(name):
                theta_index[e, i] = vector.parameter(name)
            else:
                theta_index[e, i] = vector.constant(model.parameter(name).value)
        for state, value in given_initial_values(model, experiment).items():
            k = model.states.index(state)
            initial_index[e, k] = vector.constant(value)
            initial_given[e, k] = True

    # Measurements, experiment by experiment, time by time, observable by observable.
    rows_e, rows_i, rows_k, rows_t, rows_y = [], [], [], [], []
    for e, experiment in enumerate(dataset):
        for i, t in enumerate(experiment.times):
            for k, o in enumerate(observables):
                value = experiment.values[i, k]
                if not math.isnan(value):
                    rows_e.append(e), rows_i.append(i), rows_k.append(k), rows_t.append(float(t)), rows_y.append(value)
    if not rows_y:
        raise DataError("the dataset holds no measurement")
    observable_column = np.array([model.observable_names.index(o) for o in observables])[np.array(rows_k)]
    noise_index = np.array([
        [vector.parameter(sigma_names[observables[k]]) if observables[k] in estimated_sigma
         else vector.constant(fixed_sigma[observables[k]])] for k in rows_k
    ])
    floors = {o: PROPORTIONAL_FLOOR * float(np.max(np.abs(all_values[o]))) if all_values[o].size else PROPORTIONAL_FLOOR
              for o in observables}
    floor_m = np.array([floors[observables[k]] or PROPORTIONAL_FLOOR for k in rows_k])
    sigma_lower = {o: (SIGMA_LOWER * reference(o) if o in estimated_sigma else fixed_sigma[o]) for o in observables}
    sigma_floor = np.array([sigma_lower[observables[k]] for k in rows_k])
    if noise == "proportional":
        sigma_floor = sigma_floor * floor_m
    sigma_varies = np.array([noise == "proportional" or observables[k] in estimated_sigma for k in rows_k])
    measurements = Measurements(
        experiment=tuple(dataset.names[e] for e in rows_e),
        observable=tuple(observables[k] for k in rows_k),
        time=np.array(rows_t),
        value=np.array(rows_y, dtype=float),
    )
    column = observable_column
    floor_j = floor_m

    def observe(t: Any, states: Any, model_observables: Any, theta: Any, p: Any) -> Any:
        import jax.numpy as jnp

        return jnp.take_along_axis(model_observables, jnp.asarray(column)[:, None], axis=1)[:, 0]

    def noise_scale(t: Any, states: Any, theta: Any, h: Any, p: Any) -> Any:
        import jax.numpy as jnp

        if noise == "proportional":
            return p[:, 0] * jnp.maximum(jnp.abs(h), jnp.asarray(floor_j))
        return p[:, 0]

    plans = stacked_plans(model, dataset)
    q0 = np.concatenate([[from_scale(v, s) for v, s in zip(nominal, scales)], vector.constants])
    simulator = nominal_simulator(model, plans, q0, theta_index, initial_index, initial_given,
                                  method=method, rtol=rtol, atol=atol, max_steps=max_steps)
    n_m = len(rows_y)
    spec = LikelihoodSpec(
        model=model,
        simulator=simulator,
        plans=plans,
        names=tuple(parameter_names),
        scales=tuple(scales),
        lower=np.array(lower),
        upper=np.array(upper),
        nominal=np.array(nominal),
        constants=vector.constants,
        theta_index=theta_index,
        initial_index=initial_index,
        initial_given=initial_given,
        experiment=np.array(rows_e),
        time_index=np.array(rows_i),
        observe=observe,
        noise=noise_scale,
        observe_index=np.zeros((n_m, 0), dtype=int),
        noise_index=noise_index,
        transform=np.full(n_m, 1 if noise == "lognormal" else 0),
        laplace=np.zeros(n_m, dtype=bool),
        sigma_floor=sigma_floor,
        sigma_varies=sigma_varies,
        measurements=measurements,
        fixed=MappingProxyType({
            **{n: model.parameter(n).value for n in names if n not in estimated},
            **{sigma_names[o]: v for o, v in fixed_sigma.items()},
        }),
    )
    return compile_objective(spec)

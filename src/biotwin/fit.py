"""Calibration on whole trajectories: weighted least squares over all experiments jointly.

For parameters theta and the initial states x0_e of experiments e, the objective is

    S(theta, x0) = sum_e sum_i sum_j w_j^2 (y_eij - g_j(x_e(t_i; theta, x0_e), theta))^2,

where x_e solves the model with experiment e's doses, inputs and overrides and y_eij are the
measurements (missing ones skipped). With ``weights="absolute"`` (constant noise) w_ej = 1 / scale_j
weighs each observable by the inverse of its typical size, so that observables in different units
count alike; with ``weights="relative"`` (noise proportional to the signal, as in ODEBench's
multiplicative noise) each measurement is weighed by 1 / max(|y_eij|, 0.05 max|y_j|); with ``weights="log"``
an observable whose measurements are all positive and span more than two decades (a virus titre)
is compared on the log scale, (log h - log y) / sd(log y_j), the others as with "absolute". Residuals and their exact
Jacobian come from one compiled JAX program (forward-mode derivatives through the diffrax solve);
SciPy's trust-region reflective least squares takes the steps within the bounds.

A :class:`TrajectoryProblem` is compiled once per model and dataset. Which parameters are free is
data, not structure (a selection matrix padded to ``max_free`` columns), so refitting many subsets
of parameters, as discovery does for every candidate sparsity pattern, never recompiles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from biotwin._callable import callable_module
from biotwin.data import Dataset
from biotwin.errors import DataError, ModelError
from biotwin.likelihood import FAILED_RESIDUAL, given_initial_values, stacked_plans
from biotwin.model import Model
from biotwin.simulate import Plan, Simulator, explicit_method

FIT_MAX_STEPS = 4096
#: Largest Jacobian entry handed to the optimiser.
JACOBIAN_LIMIT = 1e10
#: Weight of the residual that keeps a non-negative state above zero.
NEGATIVITY_WEIGHT = 10.0


@dataclass(frozen=True, eq=False)
class Fit:
    """A calibrated model: its parameter values, each experiment's initial state, and the fit's quality.

    ``rss`` is the weighted residual sum of squares over ``n_data`` measurements with
    ``n_free`` estimated quantities (parameters and initial states). ``aicc`` and ``bic`` are
    the information criteria of the Gaussian likelihood with the noise variance profiled out:
    n log(RSS/n) + 2k + 2k(k+1)/(n-k-1) and n log(RSS/n) + k log n.
    """

    model: Model
    parameters: Mapping[str, float]
    initial: Mapping[str, Mapping[str, float]]
    rss: float
    n_data: int
    n_free: int
    success: bool
    message: str = ""
    evaluations: int = 0
    free: tuple[str, ...] = field(default_factory=tuple)

    @property
    def aicc(self) -> float:
        return information_criterion(self.rss, self.n_data, self.n_free, "aicc")

    @property
    def bic(self) -> float:
        return information_criterion(self.rss, self.n_data, self.n_free, "bic")

    @property
    def rmse(self) -> float:
        """Root mean weighted residual (1 means errors the size of each observable's scale)."""
        return math.sqrt(self.rss / max(self.n_data, 1))


def information_criterion(rss: float, n: int, k: int, kind: str = "aicc") -> float:
    """AICc or BIC of a least-squares fit with Gaussian errors of unknown variance."""
    if not math.isfinite(rss) or n <= 0:
        return math.inf
    fit_term = n * math.log(max(rss, 1e-300) / n)
    if kind == "bic":
        return fit_term + k * math.log(n)
    if n - k - 1 <= 0:
        return math.inf
    return fit_term + 2 * k + 2 * k * (k + 1) / (n - k - 1)


@dataclass(frozen=True, eq=False)
class LogScale:
    """Which observables are compared on the log scale, and the log's floor and spread for each.

    An observable (last axis) qualifies when all its measurements are positive and its largest is
    more than 100 times its smallest: on the linear scale its early, small values would not count.
    Predictions are floored at a thousandth of the smallest measurement, so that a prediction at
    or below zero is a large but finite miss.
    """

    used: np.ndarray
    floor: np.ndarray
    spread: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray, seen: np.ndarray, *, enabled: bool = True) -> LogScale:
        """The log scale of measurements ``values`` (..., O) where ``seen``."""
        columns = [values[..., k][seen[..., k]] for k in range(values.shape[-1])]
        used = np.array([enabled and c.size > 0 and bool(np.all(c > 0)) and c.max() > 100 * c.min() for c in columns])
        floor = np.array([1e-3 * c.min() if u else 1.0 for c, u in zip(columns, used)])
        spread = np.array([max(float(np.std(np.log(c))), 1e-12) if u else 1.0 for c, u in zip(columns, used)])
        return cls(used, floor, spread)

    def transform(self, values: Any, xp: Any) -> Any:
        """log(max(y, floor)) for the observables on the log scale, y for the others (NumPy or JAX as ``xp``)."""
        if not self.used.any():
            return values
        # The log's argument is 1 where unused: a where() after a log of 0 would still pass NaN gradients.
        inside = xp.where(self.used, values, 1.0)
        return xp.where(self.used, xp.log(xp.maximum(inside, self.floor)), values)


class PaddedData(NamedTuple):
    """A dataset as arrays of one shape: what every trajectory fit of a model on it needs.

    ``values`` (E, T, O) the measurements of the fitted observables (0 where missing; the log of
    those on ``log_scale``), ``seen`` (E, T, O) which are measured, ``weights`` (E, T, O) the
    residual weights, ``plans`` the stacked experiment plans, and ``override_mask`` /
    ``override_value`` (E, P) the parameters each experiment sets for itself.
    """

    values: np.ndarray
    seen: np.ndarray
    weights: np.ndarray
    log_scale: LogScale
    plans: Plan
    override_mask: np.ndarray
    override_value: np.ndarray


class TrajectoryProblem:
    """The least-squares problem of a model on a dataset, compiled once.

    ``scales`` maps observables to the typical size used to weigh them (default: the standard
    deviation of the observable's measurements, or its mean absolute value when nearly constant).
    ``max_free`` is the most parameters any one fit will free (padding of the selection matrix).
    ``max_steps`` bounds the solver steps per experiment; a solve that needs more counts as failed.
    """

    def __init__(
        self,
        model: Model,
        dataset: Dataset,
        *,
        max_free: int | None = None,
        scales: Mapping[str, float] | None = None,
        method: str | None = None,
        rtol: float = 1e-6,
        atol: float = 1e-8,
        weights: str = "absolute",
        nonnegative: Sequence[str] = (),
        max_steps: int = FIT_MAX_STEPS,
    ) -> None:
        import jax
        import jax.numpy as jnp

        from biotwin._jax import quick_jit

        self.model = model
        self.dataset = dataset
        shared = [o for o in dataset.observables if o in model.observable_names]
        if not shared:
            raise DataError(
                f"no observable of the data ({', '.join(dataset.observables)}) is an observable of the model "
                f"({', '.join(model.observable_names)})"
            )
        self.observables = tuple(shared)
        for experiment in dataset:
            unknown = [k for k in experiment.overrides if k not in model.parameter_names and k not in model.states]
            if unknown:
                raise ModelError(f"experiment '{experiment.name}' overrides '{unknown[0]}', not a parameter or state of the model")
        self.max_free = int(max_free if max_free is not None else len(model.parameters))
        n_exp, n_states = len(dataset), len(model.states)
        names = model.parameter_names

        # Data, padded to common shapes so all experiments solve in one batch.
        n_times = max(e.times.size for e in dataset)
        values = []
        columns = [dataset.observables.index(o) for o in self.observables]
        for experiment in dataset:
            block = np.full((n_times, len(columns)), np.nan)
            block[: experiment.times.size] = experiment.values[:, columns]
            values.append(block)
        data = np.stack(values)
        self._mask = ~np.isnan(data)
        self.n_data = int(self._mask.sum())
        if self.n_data == 0:
            raise DataError("the dataset has no measurement of any observable of the model")
        self.scales = np.array([self._scale(o, data[..., k], scales) for k, o in enumerate(self.observables)])
        self._data = np.where(self._mask, data, 0.0)
        self._logged = LogScale.of(data, self._mask, enabled=weights == "log")
        if weights == "relative":
            largest = np.nanmax(np.abs(data), axis=(0, 1))
            self._weights = 1.0 / np.maximum(np.abs(self._data), 0.05 * np.where(largest > 0, largest, 1.0))
        elif weights in ("absolute", "log"):
            self._weights = np.broadcast_to(1.0 / np.where(self._logged.used, self._logged.spread, self.scales),
                                            data.shape).copy()
        else:
            raise DataError(f"weights must be 'absolute', 'relative' or 'log', got {weights!r}")
        self._data = self._logged.transform(self._data, np)
        self.weights = weights
        self._plans = stacked_plans(model, dataset)
        self._observable_index = np.array([model.observable_names.index(o) for o in self.observables])

        # Per-experiment parameter overrides: theta_e = where(mask, value, theta).
        self._override_mask = np.zeros((n_exp, len(names)), dtype=bool)
        self._override_value = np.zeros((n_exp, len(names)))
        for e, experiment in enumerate(dataset):
            for key, value in experiment.overrides.items():
                if key in names:
                    self._override_mask[e, names.index(key)] = True
                    self._override_value[e, names.index(key)] = value

        theta0 = model.parameter_vector()
        self.method = method or explicit_method(rtol)
        simulator = Simulator(model, self.method, rtol=rtol, atol=atol, max_steps=max_steps, adjoint="forward")
        solve_all = jax.vmap(simulator.solve, in_axes=(0, 0, 0))
        mask, data_j, weights = jnp.asarray(self._mask), jnp.asarray(self._data), jnp.asarray(self._weights)
        override_mask, override_value = jnp.asarray(self._override_mask), jnp.asarray(self._override_value)
        plans_j = Plan(*(jnp.asarray(a) for a in self._plans))
        observable_index = jnp.asarray(self._observable_index)
        logged = self._logged

        unknown = [s for s in nonnegative if s not in model.states]
        if unknown:
            raise ModelError(self.model.unknown_message("state", unknown[0], model.states))
        # A state declared non-negative pays, at every output time, a residual proportional to how
        # far below zero it goes (in units of its scale): zero whenever it stays >= 0.
        negative_index = jnp.asarray([model.states.index(s) for s in nonnegative], dtype=int)
        negative_scale = jnp.asarray([
            self.scales[self.observables.index(s)] if s in self.observables else 1.0 for s in nonnegative
        ])

        def residuals(p: Any, theta_base: Any, select_theta: Any, y0_base: Any, select_y0: Any) -> Any:
            theta = theta_base + select_theta @ p[: self.max_free]
            y0 = y0_base + (select_y0 @ p[self.max_free :]).reshape(n_exp, n_states)
            thetas = jnp.where(override_mask, override_value, theta)
            states, predicted, _, _ = solve_all(thetas, y0, plans_j)
            difference = (logged.transform(predicted[..., observable_index], jnp) - data_j) * weights
            # A prediction that is not finite, or absurdly far off, counts as a failed solve.
            difference = jnp.clip(jnp.where(jnp.isfinite(difference), difference, FAILED_RESIDUAL),
                                  -FAILED_RESIDUAL, FAILED_RESIDUAL)
            fit_part = jnp.where(mask, difference, 0.0).ravel()
            below = NEGATIVITY_WEIGHT * jnp.minimum(states[..., negative_index], 0.0) / negative_scale
            return jnp.concatenate([fit_part, jnp.where(jnp.isfinite(below), below, FAILED_RESIDUAL).ravel()])

        def with_residuals(p: Any, *arguments: Any) -> Any:  # (r, r) to get r beside dr/dp from one solve
            r = residuals(p, *arguments)
            return r, r

        # One program, one solve, returns r and its Jacobian: the trust region asks for the
        # Jacobian at nearly every point where it evaluates r (about 9 in 10 on ODEBench), and a
        # separate residual-only program cost a solve more there and a compilation more per problem.
        # Compiled quickly (quick_jit): `biotwin bench run --suite bio -m biotwin` took 566 s
        # against 612 s, every system discovering the same equations.
        self._evaluate = quick_jit(jax.jacfwd(with_residuals, argnums=0, has_aux=True))
        self._theta0 = theta0
        self._n_states = n_states

    def padded(self) -> PaddedData:
        """The data, plans and overrides of the problem as padded arrays (see :class:`PaddedData`)."""
        return PaddedData(self._data, self._mask, self._weights, self._logged, self._plans, self._override_mask,
                          self._override_value)

    def _scale(self, name: str, values: np.ndarray, scales: Mapping[str, float] | None) -> float:
        if scales and name in scales:
            return float(scales[name])
        measured = values[~np.isnan(values)]
        spread = float(np.std(measured)) if measured.size else 0.0
        level = float(np.mean(np.abs(measured))) if measured.size else 0.0
        scale = spread if spread > 1e-3 * level else level
        return scale if scale > 0 else 1.0

    def initial_guess(self) -> np.ndarray:
        """Each experiment's initial state: overrides, then the model's initial values, then the first measurement.

        A state observed under its own name starts at its first measured value when nothing
        else gives it; any other state without a value raises :class:`ModelError`.
        """
        guesses = []
        names = self.model.parameter_names
        for experiment in self.dataset:
            theta = dict(zip(names, self._theta0))
            theta.update({k: v for k, v in experiment.overrides.items() if k in names})
            given = given_initial_values(self.model, experiment)
            guesses.append([given[s] if s in given else self.model.initial_value(s, theta) for s in self.model.states])
        return np.array(guesses)

    def fit(
        self,
        free: Sequence[str],
        *,
        start: Mapping[str, float] | None = None,
        initial: np.ndarray | None = None,
        estimate_initial: bool = True,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        max_evaluations: int = 200,
    ) -> Fit:
        """Least-squares fit of the parameters ``free`` (others at their start or default values).

        ``start`` overrides the starting parameter values; ``initial`` (experiments x states) the
        starting initial states, which are estimated too when ``estimate_initial``.
        """
        from scipy.optimize import least_squares

        names = self.model.parameter_names
        unknown = [n for n in free if n not in names]
        if unknown:
            raise ModelError(self.model.unknown_message("parameter", unknown[0], names))
        if len(free) > self.max_free:
            raise ModelError(f"{len(free)} free parameters but the problem was built for at most {self.max_free}")
        theta = self._theta0.copy()
        for key, value in (start or {}).items():
            theta[names.index(key)] = value
        y0 = self.initial_guess() if initial is None else np.asarray(initial, dtype=float)
        n_exp, n_states = y0.shape
        select_theta = np.zeros((len(names), self.max_free))
        lower, upper = [], []
        for column, name in enumerate(free):
            index = names.index(name)
            select_theta[index, column] = 1.0
            parameter = self.model.parameter(name)
            low, high = (bounds or {}).get(name, (parameter.lower, parameter.upper))
            lower.append(low - theta[index])
            upper.append(high - theta[index])
        n_initial = n_exp * n_states
        select_y0 = np.eye(n_initial) if estimate_initial else np.zeros((n_initial, n_initial))
        # Initial states given by an experiment's overrides are data, not estimates.
        for e, experiment in enumerate(self.dataset):
            for k, state in enumerate(self.model.states):
                if state in experiment.overrides:
                    select_y0[e * n_states + k, e * n_states + k] = 0.0
        estimated = np.flatnonzero(select_y0.diagonal())
        y0_scale = np.maximum(np.abs(y0.ravel()[estimated]), 1e-8)
        lower += list(-10.0 * y0_scale - 1.0)
        upper += list(10.0 * y0_scale + 1.0)
        # The optimiser sees only the active entries; the compiled residuals take the padded vector.
        active = np.concatenate([np.arange(len(free)), self.max_free + estimated]).astype(int)
        arguments = (theta, select_theta, y0, select_y0)

        def padded(q: np.ndarray) -> np.ndarray:
            p = np.zeros(self.max_free + n_initial)
            p[active] = q
            return p

        latest: dict[str, np.ndarray] = {}

        def fun(q: np.ndarray) -> np.ndarray:
            jacobian, r = self._evaluate(padded(q), *arguments)
            latest.update(q=np.array(q), jacobian=np.asarray(jacobian))
            return np.asarray(r)

        def jac(q: np.ndarray) -> np.ndarray:
            if "q" not in latest or not np.array_equal(latest["q"], q):  # SciPy asks where it last evaluated
                fun(q)
            full = latest["jacobian"][:, active]
            # Bounded so that the trust-region scaling stays finite near a blow-up.
            return np.clip(np.nan_to_num(full, nan=0.0, posinf=0.0, neginf=0.0), -JACOBIAN_LIMIT, JACOBIAN_LIMIT)

        low, high = np.array(lower), np.array(upper)
        q0 = np.clip(np.zeros(active.size), low, high)
        try:
            result = least_squares(fun, q0, jac=jac, bounds=(low, high), method="trf", x_scale="jac",
                                   max_nfev=max_evaluations)
        except (ValueError, np.linalg.LinAlgError) as error:
            # The optimiser broke on this structure (its solves overflow): a failed fit, not a crash.
            return self._result(theta, y0, free, len(free) + estimated.size, math.inf, False, str(error), 0)
        p = padded(result.x)
        fitted_theta = theta + select_theta @ p[: self.max_free]
        fitted_y0 = y0 + (select_y0 @ p[self.max_free :]).reshape(n_exp, n_states)
        rss = float(np.sum(result.fun**2))
        return self._result(fitted_theta, fitted_y0, free, len(free) + estimated.size, rss,
                            bool(result.success) and math.isfinite(rss), str(result.message), int(result.nfev))

    def _result(self, theta: np.ndarray, y0: np.ndarray, free: Sequence[str], n_free: int, rss: float,
                success: bool, message: str, evaluations: int) -> Fit:
        return Fit(
            model=self.model,
            parameters=MappingProxyType(dict(zip(self.model.parameter_names, map(float, theta)))),
            initial=MappingProxyType({
                e.name: MappingProxyType(dict(zip(self.model.states, map(float, y0[i])))) for i, e in enumerate(self.dataset)
            }),
            rss=rss, n_data=self.n_data, n_free=n_free, success=success, message=message, evaluations=evaluations,
            free=tuple(free),
        )


def fit_trajectories(
    model: Model,
    dataset: Dataset,
    *,
    free: Sequence[str] | None = None,
    estimate_initial: bool = True,
    start: Mapping[str, float] | None = None,
    max_evaluations: int = 200,
    weights: str = "absolute",
) -> Fit:
    """Weighted least squares on the trajectories of ``free`` parameters (default: all) and, optionally, each experiment's initial state."""
    names = tuple(free) if free is not None else model.parameter_names
    problem = TrajectoryProblem(model, dataset, max_free=len(names), weights=weights)
    return problem.fit(names, start=start, estimate_initial=estimate_initial, max_evaluations=max_evaluations)


def fit(
    target: Any,
    dataset: Dataset | None = None,
    *,
    noise: str = "normal",
    starts: int | np.ndarray = 20,
    seed: int = 0,
    processes: int = 1,
    progress: Any = None,
    from_nominal: bool = False,
    abandon: bool = True,
    screen: bool = True,
) -> Calibration:
    """Maximum-likelihood calibration by multi-start: ``biotwin.fit(model, dataset)`` or ``biotwin.fit(objective)``.

    ``target`` is a :class:`~biotwin.model.Model` (with ``dataset`` and a ``noise`` model, whose
    scales are estimated; see :func:`biotwin.likelihood.dataset_objective`), an
    :class:`~biotwin.objective.Objective` (e.g. ``load_petab(path).objective()``), or a
    :class:`~biotwin.problem.Problem`, which alone can use several ``processes``. See
    :func:`multistart` for the starts and the result.
    """
    from biotwin.objective import Objective
    from biotwin.problem import Problem

    rebuild = None
    if isinstance(target, Problem):
        objective, rebuild = target.objective(), target.objective
    elif isinstance(target, Objective):
        objective = target
    elif isinstance(target, Model):
        if dataset is None:
            raise DataError("fitting a model needs a dataset: biotwin.fit(model, dataset)")
        from biotwin.likelihood import dataset_objective

        objective = dataset_objective(target, dataset, noise=noise)
    else:
        raise ModelError(f"cannot fit a {type(target).__name__}; give a Model and a Dataset, an Objective or a Problem")
    if processes > 1 and rebuild is None:
        raise ModelError("fitting in several processes needs a Problem (files the workers can read): use biotwin.problem.problem(...)")
    return multistart(objective, starts=starts, seed=seed, processes=processes, rebuild=rebuild, progress=progress,
                      from_nominal=from_nominal, abandon=abandon, screen=screen)


callable_module(__name__, "fit")


# ---------------------------------------------------------------------- multi-start calibration
#: A start has converged when its NLL is within this of the best start's: well inside the 1.92 of
#: a 95 % likelihood-ratio interval, well above the optimiser's tolerance.
CONVERGED_WITHIN = 0.1
#: Two starts whose NLLs differ by less than this reached the same optimum (the local optimiser
#: stops on NLL changes of 1e-6).
SAME_OPTIMUM = 1e-3
#: A start is abandoned (:func:`cannot_catch_up`) no earlier than after this many evaluations,
#: and its rate of progress is measured over its last this many.
ABANDON_WINDOW = 50
#: ... and only while it lies further above the best finished start than this: the width of a
#: 95 % likelihood-ratio interval, chi2_1(0.95) / 2.
ABANDON_MARGIN = 1.92


def cannot_catch_up(history: list[float], best_known: float, max_evaluations: int) -> bool:
    """Whether a running start should be abandoned: at its recent rate it cannot reach the best NLL found.

    With J_e the start's best NLL after its e-th evaluation, J* the best NLL of the starts
    already finished, E the evaluation budget and W = :data:`ABANDON_WINDOW`, the start's recent
    rate of progress is rho = (J_{e-W} - J_e) / W per evaluation, and it is abandoned at e >= W
    when

        J_e - J* > max(Delta, rho (E - e)),   Delta = :data:`ABANDON_MARGIN` = 1.92:

    it lies further above the best than a 95 % likelihood-ratio interval is wide, and even at
    its recent rate it would not reach the best within its remaining budget. A local
    optimiser's descent slows as it nears its optimum, so the linear extrapolation promises
    more than such a start goes on to gain. It ends at the point it reached, marked abandoned.

    Simulated on the per-evaluation traces of the 20 Sobol starts of ``benchmarks/
    calibrate_vs_pypesto.py`` (Rodas5): on Elowitz_Nature2000 it abandons 5 starts and 1,861 of
    3,739 evaluations (64 s of the run's 110 s); they went on to -25.57 at best, the best start
    ends at -60.09. On Crauste_CellSystems2017 it abandons 7 starts, 645 of 1,577 evaluations,
    which went on to 275.12 at best (best 255.75). On Boehm_JProteomeRes2014 and
    Perelson_Science1996 it abandons none. Over a window of 20 evaluations instead of 50 it
    would also have abandoned two Elowitz starts that went on to -59.77 and -59.94. In the
    screened order (:func:`run_order`) it abandons 7 Elowitz starts (2,314 evaluations), which
    went on to -25.57 at best, and 9 Crauste starts (719 evaluations), to 275.12 at best.
    """
    e = len(history)
    if e <= ABANDON_WINDOW or not math.isfinite(best_known):
        return False
    now, then = history[-1], history[-1 - ABANDON_WINDOW]
    if not math.isfinite(now):
        return False
    gap = now - best_known
    rate = (then - now) / ABANDON_WINDOW if math.isfinite(then) else math.inf
    return gap > ABANDON_MARGIN and gap > rate * (max_evaluations - e)


@dataclass(frozen=True)
class Start:
    """One local optimisation of a multi-start: where it began, where it ended, at what cost.

    ``index`` is its place among the start points; ``seconds`` its own wall time; ``finished``
    the wall time from the beginning of the multi-start (compilation included) to its end.
    ``abandoned``: it was stopped before it converged, as it could not catch up with the best
    finished start (:func:`cannot_catch_up`); ``x`` and ``nll`` are where it stood.
    ``initial_nll`` is J at x0 where the starts were screened (:func:`run_order`), else NaN.
    """

    x0: np.ndarray
    x: np.ndarray
    nll: float
    evaluations: int
    seconds: float
    index: int = 0
    finished: float = math.nan
    abandoned: bool = False
    initial_nll: float = math.nan


@dataclass(frozen=True, eq=False)
class Calibration:
    """The result of a multi-start fit of an objective: every start, best first.

    ``best_x`` (optimisation scale) and ``best_nll`` are the best start's; :attr:`parameters` its
    values on the linear scale; :attr:`converged` the number of starts that reached the best NLL
    (within :data:`CONVERGED_WITHIN`); the sorted NLLs are the *waterfall*, whose steps show the
    local optima the problem has. ``compile_seconds`` is the time to build the compiled objective
    and its derivatives (in the first process), ``seconds`` the wall time of the whole fit.
    ``nominal_nll`` is J at the objective's nominal values (a PEtab parameter table's, or a model
    file's): a published fit that the best start should match or beat (see :meth:`missed_nominal`).
    """

    names: tuple[str, ...]
    scales: tuple[str, ...]
    starts: tuple[Start, ...]
    seconds: float
    compile_seconds: float
    nominal_nll: float = math.nan

    @property
    def best(self) -> Start:
        return self.starts[0]

    @property
    def best_x(self) -> np.ndarray:
        return self.starts[0].x

    @property
    def best_nll(self) -> float:
        return self.starts[0].nll

    @property
    def parameters(self) -> dict[str, float]:
        from biotwin.objective import from_scale

        return {n: float(from_scale(float(v), s)) for n, v, s in zip(self.names, self.best_x, self.scales)}

    @property
    def waterfall(self) -> np.ndarray:
        return np.array([s.nll for s in self.starts])

    @property
    def converged(self) -> int:
        return int(np.sum(self.waterfall <= self.best_nll + CONVERGED_WITHIN))

    @property
    def abandoned(self) -> int:
        """How many starts were abandoned, unable to catch up with the best (:func:`cannot_catch_up`)."""
        return sum(s.abandoned for s in self.starts)

    @property
    def seconds_to_best(self) -> float:
        """Wall time from the beginning until the first start that reached the best NLL (within
        :data:`SAME_OPTIMUM`) finished, compilation included."""
        reached = [s.finished for s in self.starts if s.nll <= self.best_nll + SAME_OPTIMUM]
        return min(reached) if reached and math.isfinite(self.best_nll) else math.inf

    def missed_nominal(self) -> str | None:
        """A one-line warning when the nominal values fit better than every start's optimum, else None.

        Then no start reached the nominal point's basin, which may be narrow or shallow (on
        Crauste_CellSystems2017, 100 Sobol starts end 0.002 above the nominal NLL, and along
        mu_P's profile from there the NLL rises by only 0.014 before it falls to the nominal
        one). More starts, a start at the nominal values, or a refinement of the best fit by
        kicks and profile walks (:func:`biotwin.refine.refine`) reach it.
        """
        if not (math.isfinite(self.nominal_nll) and self.nominal_nll < self.best_nll - SAME_OPTIMUM):
            return None
        return (f"the nominal parameter values fit better (NLL {self.nominal_nll:.6g}) than the best of "
                f"{len(self.starts)} starts ({self.best_nll:.6g}), by {self.best_nll - self.nominal_nll:.3g} "
                f"(a 95 % likelihood-ratio interval is 1.92 wide): no start reached that optimum's basin; "
                f"run more starts (--starts), also start from the nominal values (--from-nominal), "
                f"or refine the best fit (--refine)")

    def summary(self) -> list[dict[str, Any]]:
        """One row per estimated parameter: name, scale, best value (linear scale)."""
        return [{"parameter": n, "scale": s, "value": v} for (n, v), s in zip(self.parameters.items(), self.scales)]

    def _repr_html_(self) -> str:
        from biotwin.report.tables import html_table

        caption = f"best NLL {self.best_nll:.6g}; {self.converged} of {len(self.starts)} starts reached it"
        return html_table(("parameter", "scale", "value"), [list(row.values()) for row in self.summary()], caption)


def start_points(objective: Any, n: int, seed: int = 0) -> np.ndarray:
    """``n`` starts spread over the bounds on each parameter's optimisation scale (scrambled Sobol).

    A low-discrepancy sequence covers the box more evenly than independent uniform draws, so a
    basin is less likely to be missed by 20 starts; on the log scale, orders of magnitude are
    covered evenly. Unbounded parameters raise :class:`ModelError`: give them bounds.
    """
    from scipy.stats import qmc

    lower, upper = np.asarray(objective.lower, float), np.asarray(objective.upper, float)
    unbounded = [name for name, lo, hi in zip(objective.names, lower, upper) if not (math.isfinite(lo) and math.isfinite(hi))]
    if unbounded:
        raise ModelError(f"parameter '{unbounded[0]}' has no finite bounds; give it bounds to draw multi-start points")
    if n < 1:
        raise ModelError(f"a multi-start fit needs at least one start, got {n}")
    # The first n points of the next power-of-two block: Sobol's balance holds for whole blocks.
    unit = qmc.Sobol(d=len(lower), scramble=True, seed=seed).random_base2(max(0, math.ceil(math.log2(n))))[:n]
    return lower + unit * (upper - lower)


def multistart(
    objective: Any,
    *,
    starts: int | np.ndarray = 20,
    seed: int = 0,
    max_evaluations: int = 1000,
    processes: int = 1,
    rebuild: Any = None,
    progress: Any = None,
    time_limit: float | None = None,
    from_nominal: bool = False,
    abandon: bool = True,
    screen: bool = True,
) -> Calibration:
    """Minimise the objective's negative log-likelihood J(x) from many starts; the best is the fit.

    ``starts`` is a number of points drawn by :func:`start_points` or an array of them
    (starts x parameters, optimisation scale). Each start runs the bounded local optimiser of
    :mod:`biotwin.optimise` (fides' trust region with the Gauss-Newton Hessian of exact
    forward-mode residual Jacobians for 20 iterations and BFGS after, or BFGS on J's exact
    gradient), compiled once, for at most
    ``max_evaluations`` evaluations; a start where J is not finite (the solve fails there) ends
    at once with NLL +inf. With ``processes`` > 1 the starts are shared among that many worker
    processes; each builds its own objective by calling ``rebuild()`` (a picklable function,
    e.g. ``functools.partial(load_objective, path)``), as compiled JAX programs do not cross
    processes. ``progress(done, total, label)`` is called after every start (see
    :mod:`biotwin.progress`). With ``time_limit`` (seconds from the call, compilation included)
    no start but the first begins after the limit and a running one stops at it; the starts that
    never began are left out of the result. With ``from_nominal`` the objective's nominal point
    runs first, as start 0, before the others. J at the nominal point is always recorded
    (``Calibration.nominal_nll``; it is the evaluation that compiles the objective). With
    ``abandon`` (the default) a start that at its recent rate cannot reach the best NLL of the
    starts already finished (in any worker) is stopped where it stands and marked abandoned
    (:func:`cannot_catch_up`); ``abandon=False`` runs every start to convergence or its budget.
    With ``screen`` (the default) J is first evaluated at every start point and the starts run
    lowest J first (:func:`run_order`; the nominal point stays first), so that the best optimum
    tends to be found early and the abandonment cuts the others short; ``screen=False`` runs them
    in the given order. Each start's ``index`` is its place among the given points either way.
    """
    import time

    from biotwin.optimise import minimiser

    began = time.perf_counter()
    deadline = time.time() + (time_limit if time_limit is not None else math.inf)  # wall clock: shared with workers
    points = start_points(objective, int(starts), seed) if np.ndim(starts) == 0 else np.atleast_2d(np.asarray(starts, float))
    if points.shape[1] != objective.size:
        raise ModelError(f"starts have {points.shape[1]} entries but the objective estimates {objective.size} parameters")
    if from_nominal:
        points = np.vstack([np.asarray(objective.nominal, float), points])
    total = points.shape[0]
    report = progress or (lambda done, total, label: None)
    if processes > 1 and total > 1:
        if rebuild is None:
            raise ModelError("a multi-start fit in several processes needs rebuild=, a picklable function that builds the objective")
        results, compile_seconds, nominal_nll = _in_processes(rebuild, points, max_evaluations, processes, report,
                                                              began, deadline, abandon, screen, from_nominal)
    else:
        compiling = time.perf_counter()
        engine = minimiser(objective)
        nominal_nll = engine.value(np.asarray(objective.nominal, float))  # compiles J, r and J_r
        compile_seconds = time.perf_counter() - compiling
        initial = engine.screen(points, deadline) if screen else np.full(total, np.nan)
        results: list[Start] = []
        best_known = (lambda: _lowest(results)) if abandon else None
        for k in run_order(initial, from_nominal):
            if results and time.time() >= deadline:
                break
            results.append(_local(engine, points[k], max_evaluations, k, began, deadline, best_known, initial[k]))
            report(len(results), total, _so_far(results))
    return Calibration(tuple(objective.names), tuple(objective.scales), best_first(results), time.perf_counter() - began,
                       compile_seconds, nominal_nll)


def run_order(initial_nll: np.ndarray, nominal_first: bool = False) -> list[int]:
    """The order in which screened starts run: lowest J at the start point first.

    J at a start point is a weak but free hint of where its local optimisation ends (on the 20
    Sobol starts of Elowitz_Nature2000, the ones that end at -59.77 and -60.09 have the 2nd and
    4th lowest initial J of 20), and a good optimum found early lets :func:`cannot_catch_up`
    abandon the starts behind it sooner. Replayed on the recorded traces of those 20 starts
    (every evaluation's J and time), the best optimum was reached after 15 s of local
    optimisation instead of 57 s, and Crauste_CellSystems2017's after 2.9 s instead of 5.3 s.
    Points where J is not finite (the solve fails; they end at once) run last, after those left
    unscreened (NaN: when a time limit passed, or all of them when the starts were not
    screened); ties keep the given order; with ``nominal_first`` point 0, the nominal point,
    runs first whatever its J.
    """
    def rank(k: int) -> tuple[int, float, int]:
        value = float(initial_nll[k])
        if math.isnan(value):
            return (1, 0.0, k)
        return (0, value, k) if math.isfinite(value) else (2, 0.0, k)

    order = sorted(range(1 if nominal_first else 0, len(initial_nll)), key=rank)
    return [0, *order] if nominal_first else order


def best_first(starts: Any) -> tuple[Start, ...]:
    """Starts sorted as a :class:`Calibration` keeps them: by NLL, failed ones last, ties by index."""
    return tuple(sorted(starts, key=lambda s: (not math.isfinite(s.nll), s.nll, s.index)))


def _lowest(results: list[Start]) -> float:
    """The best NLL of the finished starts (+inf before one has finished)."""
    return min((s.nll for s in results), default=math.inf)


def _so_far(results: list[Start]) -> str:
    """The progress label after a start: how many ran and the best NLL so far."""
    best = _lowest(results)
    return f"{len(results)} done, best NLL {best:.6g}" if math.isfinite(best) else f"{len(results)} done"


def _local(engine: Any, x0: np.ndarray, max_evaluations: int, index: int, began: float, deadline: float,
           best_known: Callable[[], float] | None, initial_nll: float = math.nan) -> Start:
    """One local optimisation from x0; ``began`` is the multi-start's clock (perf_counter) origin,
    ``deadline`` the wall-clock (time.time) instant at which it stops, ``best_known()`` the best
    NLL of the finished starts, which the start is abandoned for when it cannot catch up with it
    (None: never abandoned); ``initial_nll`` J at x0 where it was screened."""
    import time

    abandoned = False

    def stop(history: list[float]) -> bool:
        nonlocal abandoned
        abandoned = cannot_catch_up(history, best_known(), max_evaluations)
        return abandoned

    started, before = time.perf_counter(), engine.evaluations
    x, value = engine.minimise(np.arange(x0.size), np.asarray(x0, float), max_evaluations, deadline - time.time(),
                               stop if best_known is not None else None)
    now = time.perf_counter()
    return Start(np.asarray(x0, float), np.asarray(x, float), float(value), engine.evaluations - before,
                 now - started, index, now - began, abandoned, float(initial_nll))


_WORKER: dict[str, Any] = {}


def _worker_start(rebuild: Any, best_known: Any, abandon: bool) -> None:
    """Build this worker's objective and minimiser once, and compile them, timing it.

    ``best_known`` is the best NLL of the finished starts of all workers (a shared double), which
    a start that cannot catch up with it abandons when ``abandon``.
    """
    import time

    from biotwin.optimise import minimiser

    began = time.perf_counter()
    objective = rebuild()
    engine = minimiser(objective)
    nominal_nll = engine.value(np.asarray(objective.nominal, float))
    _WORKER.update(objective=objective, engine=engine, compile_seconds=time.perf_counter() - began, nominal_nll=nominal_nll,
                   best_known=best_known, abandon=abandon)


def _worker_screen(points: np.ndarray, deadline: float) -> np.ndarray:
    """J at the points, in a worker (:meth:`biotwin.optimise.Minimiser.screen`: a start there that
    this worker runs reuses the evaluation)."""
    return _WORKER["engine"].screen(points, deadline)


def _worker_run(x0: np.ndarray, max_evaluations: int, index: int, deadline: float, first: bool,
                initial_nll: float) -> tuple[Start | None, float, float]:
    """One start in a worker, its compile time and J at the nominal point; None when the deadline
    passed before it began (the ``first`` start always runs)."""
    import time

    start, shared = None, _WORKER["best_known"]
    if first or time.time() < deadline:
        known = (lambda: shared.value) if _WORKER["abandon"] else None
        start = _local(_WORKER["engine"], x0, max_evaluations, index, math.nan, deadline, known, initial_nll)
        if start.nll < shared.value:
            with shared.get_lock():
                shared.value = min(shared.value, start.nll)
    return start, _WORKER["compile_seconds"], _WORKER["nominal_nll"]


def _in_processes(rebuild: Any, points: np.ndarray, max_evaluations: int, processes: int, report: Any,
                  began: float, deadline: float, abandon: bool, screen: bool,
                  from_nominal: bool) -> tuple[list[Start], float, float]:
    """Run the starts in ``processes`` spawned workers (JAX must not be forked once initialised),
    which share the best NLL of the finished starts when ``abandon``; with ``screen`` the workers
    first evaluate J at the points, a share each, and the starts are handed out lowest J first
    (:func:`run_order`; a start run by another worker than the one that screened it solves its
    first point again).

    Returns the starts, each with its finishing time on this process's clock, the longest
    time a worker took to build and compile its objective, and J at the nominal point.
    """
    import multiprocessing
    import time
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")
    results, compile_seconds, nominal_nll = [], 0.0, math.nan
    best_known = context.Value("d", math.inf)
    workers = min(processes, len(points))
    with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                             initializer=_worker_start, initargs=(rebuild, best_known, abandon)) as pool:
        initial = np.full(len(points), np.nan)
        if screen:
            shares = np.array_split(np.arange(len(points)), workers)
            for share, values in zip(shares, pool.map(_worker_screen, [points[share] for share in shares],
                                                      [deadline] * workers)):
                initial[share] = values
        futures = [pool.submit(_worker_run, points[k], max_evaluations, k, deadline, place == 0, initial[k])
                   for place, k in enumerate(run_order(initial, from_nominal))]
        for done, future in enumerate(as_completed(futures), start=1):
            start, seconds, nominal_nll = future.result()
            if start is not None:
                results.append(replace(start, finished=time.perf_counter() - began))
            compile_seconds = max(compile_seconds, seconds)
            report(done, len(points), _so_far(results))
    return results, compile_seconds, nominal_nll

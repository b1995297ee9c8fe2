"""Dose and schedule optimisation on a twin, by gradients through the solver, over its posterior.

A *design* says what may be chosen: the amounts (and, with ``free_times``, the times) of bolus
doses into a state at candidate times, or the rates of a piecewise-constant infusion. A *goal*
says what to minimise (or maximise) for a quantity q(t) (a state or an observable) over the
scenario's horizon [t0, T]:

* ``final``:      q(T)                                    (e.g. tumour burden at the horizon);
* ``auc``:        int_{t0}^{T} q(t) dt                      (exposure, a biomarker's area);
* ``time_above``: int_{t0}^{T} s((q(t) - c) / w) dt          (time above a threshold c; s the
  logistic function, w = :data:`SMOOTHING` c, so the time is differentiable).

Constraints: at most ``max_dose`` per dose (or ``max_rate``), at most ``max_total`` in all, and
*bounds* that keep a quantity (a toxicity marker, the neutrophil count) above ``lower`` or below
``upper`` at every output time. Over posterior draws theta_s the goal of a design d is the
mean of g(d, theta_s) (``robust="mean"``) or its ``robust``-quantile (risk-averse), and a bound
must hold in a fraction ``confidence`` of the draws (the ``confidence``-quantile of each draw's
worst value). The solve is batched over draws and differentiated by JAX (reverse mode through
diffrax), and SLSQP handles the box and inequality constraints.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from biotwin.errors import DataError, ModelError
from biotwin.experiment import (
    Dosing,
    Forecast,
    Infusion,
    ParameterDraws,
    Scenario,
    forecast,
    parse_times,
)
from biotwin.model import Model

GoalKind = Literal["final", "auc", "time_above"]
#: Width of the logistic step of ``time_above``, relative to the threshold.
SMOOTHING = 0.02


@dataclass(frozen=True)
class BolusDesign:
    """Bolus doses into ``state`` at candidate ``times``, each between 0 and ``max_dose``, at most ``max_total`` in all.

    With ``free_times`` each dose may also move within its window: halfway to its neighbours
    (the first from the start, the last up to the horizon), so doses keep their order.
    """

    state: str
    times: tuple[float, ...]
    max_dose: float
    max_total: float | None = None
    free_times: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "times", tuple(float(t) for t in self.times))
        if not self.times or any(b <= a for a, b in zip(self.times, self.times[1:])):
            raise DataError(f"dose design into '{self.state}': candidate times must be given and increase strictly")
        if not self.max_dose > 0 or (self.max_total is not None and not self.max_total > 0):
            raise DataError(f"dose design into '{self.state}': max_dose and max_total must be > 0")

    @property
    def size(self) -> int:
        return len(self.times) * (2 if self.free_times else 1)

    def windows(self, start: float, horizon: float) -> np.ndarray:
        """(K, 2): the interval each dose time may take."""
        t = np.array(self.times)
        middles = (t[1:] + t[:-1]) / 2
        low = np.concatenate([[start], middles]) if self.free_times else t
        high = np.concatenate([middles, [horizon]]) if self.free_times else t
        return np.column_stack([low, high])


@dataclass(frozen=True)
class InfusionDesign:
    """A piecewise-constant infusion into ``state``: rate r_k on [grid[k], grid[k+1]), 0 <= r_k <= ``max_rate``,
    with at most ``max_total`` infused in all (sum r_k (grid[k+1] - grid[k]))."""

    state: str
    grid: tuple[float, ...]
    max_rate: float
    max_total: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", tuple(float(t) for t in self.grid))
        if len(self.grid) < 2 or any(b <= a for a, b in zip(self.grid, self.grid[1:])):
            raise DataError(f"infusion design into '{self.state}': the grid needs at least two increasing times")
        if not self.max_rate > 0 or (self.max_total is not None and not self.max_total > 0):
            raise DataError(f"infusion design into '{self.state}': max_rate and max_total must be > 0")

    @property
    def size(self) -> int:
        return len(self.grid) - 1


Design = BolusDesign | InfusionDesign


@dataclass(frozen=True)
class Goal:
    """What to optimise for ``quantity``: ``final``, ``auc`` or ``time_above`` a ``threshold`` (see the module)."""

    quantity: str
    kind: GoalKind = "final"
    threshold: float | None = None
    maximise: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("final", "auc", "time_above"):
            raise DataError(f"unknown goal '{self.kind}'; choose final, auc or time_above")
        if self.kind == "time_above" and (self.threshold is None or not self.threshold > 0):
            raise DataError("the goal time_above needs a positive threshold")

    @property
    def text(self) -> str:
        if self.kind == "final":
            what = f"{self.quantity} at the horizon"
        elif self.kind == "auc":
            what = f"area under {self.quantity}"
        else:
            what = f"time with {self.quantity} above {self.threshold:g}"
        return f"{'maximise' if self.maximise else 'minimise'} {what}"


@dataclass(frozen=True)
class Bound:
    """Keep ``quantity`` at or above ``lower`` and at or below ``upper`` at every output time."""

    quantity: str
    lower: float | None = None
    upper: float | None = None

    def __post_init__(self) -> None:
        if self.lower is None and self.upper is None:
            raise DataError(f"the bound on '{self.quantity}' needs a lower or an upper limit")


@dataclass(frozen=True, eq=False)
class Schedule:
    """An optimised design: dose ``amounts`` at ``times`` (bolus) or ``rates`` on the grid (infusion).

    ``value`` is the goal (mean or quantile over the draws, as optimised), ``start_value`` the
    same at the starting design; ``converged`` and ``message`` are SLSQP's verdict.
    """

    design: Design
    amounts: np.ndarray
    times: np.ndarray
    value: float
    start_value: float
    converged: bool
    message: str
    iterations: int
    seconds: float

    @property
    def given(self) -> np.ndarray:
        """(K,): which doses (or infusion intervals) are given at all: above 1e-9 of the largest."""
        return self.amounts > 1e-9 * max(float(np.max(self.amounts)), 1e-300)

    @property
    def total(self) -> float:
        if isinstance(self.design, InfusionDesign):
            return float(np.sum(self.amounts * np.diff(self.design.grid)))
        return float(np.sum(self.amounts))

    def scenario(self, base: Scenario, name: str = "optimised") -> Scenario:
        """``base`` with this schedule's doses (doses below 1e-9 of the largest left out)."""
        if isinstance(self.design, InfusionDesign):
            grid = self.design.grid
            infusions = tuple(Infusion(self.design.state, float(r), grid[k], grid[k + 1])
                              for k, (r, given) in enumerate(zip(self.amounts, self.given)) if given)
            return replace(base, name=name, infusions=base.infusions + infusions)
        doses = tuple(Dosing(self.design.state, float(a), float(t))
                      for a, t, given in zip(self.amounts, self.times, self.given) if given)
        return replace(base, name=name, doses=base.doses + doses)


def _plan_builder(model: Model, scenario: Scenario, design: Design) -> Any:
    """A function of the design vector v in [0, 1]^size giving the solve's :class:`~biotwin.simulate.Plan` (JAX)."""
    import jax.numpy as jnp

    from biotwin.simulate import Plan

    n_states, n_inputs = len(model.states), len(model.inputs)
    column = model.states.index(design.state)
    save_times = jnp.asarray(scenario.output_times())
    start, horizon = scenario.start, scenario.horizon
    if isinstance(design, InfusionDesign):
        grid = np.array(design.grid)
        boundaries = np.unique(np.concatenate([[start], np.clip(grid, start, horizon), [horizon]]))
        # Segment k of the plan lies in infusion interval j(k) (or outside the grid: rate 0).
        index = np.searchsorted(grid, boundaries[:-1], side="right") - 1
        inside = (index >= 0) & (index < design.size)

        def plan(v: Any) -> Any:
            rates = design.max_rate * v
            level = jnp.where(jnp.asarray(inside), rates[np.clip(index, 0, design.size - 1)], 0.0)
            levels = jnp.zeros((boundaries.size - 1, n_inputs + n_states)).at[:, n_inputs + column].set(level)
            return Plan(save_times, jnp.asarray(boundaries), jnp.zeros((boundaries.size - 1, n_states)), levels)

        return plan
    windows = design.windows(start, horizon)
    k = len(design.times)

    def plan(v: Any) -> Any:
        amounts = design.max_dose * v[:k]
        times = windows[:, 0] + (windows[:, 1] - windows[:, 0]) * v[k:] if design.free_times else jnp.asarray(windows[:, 0])
        boundaries = jnp.concatenate([jnp.array([start]), times, jnp.array([horizon])])
        jumps = jnp.zeros((k + 1, n_states)).at[1:, column].set(amounts)
        return Plan(save_times, boundaries, jumps, jnp.zeros((k + 1, n_inputs + n_states)))

    return plan


def check_problem(model: Model, scenario: Scenario, design: Design, goal: Goal, bounds: Sequence[Bound]) -> None:
    scenario.check(model)
    if scenario.doses or scenario.infusions or scenario.inputs:
        raise DataError(f"scenario '{scenario.name}' has its own doses, infusions or inputs; a scenario to optimise gives "
                        "only the initial state, parameter changes, knock-outs and the horizon: the design supplies the doses")
    if design.state not in model.states:
        raise ModelError(f"the design doses into {Model.unknown_message('state', design.state, model.states)}")
    quantities = (*model.states, *model.observable_names)
    for name in (goal.quantity, *(b.quantity for b in bounds)):
        if name not in quantities:
            raise ModelError(Model.unknown_message("state or observable", name, quantities))
    times = design.grid if isinstance(design, InfusionDesign) else design.times
    if times[0] < scenario.start or times[-1] > scenario.horizon:
        raise DataError(f"the design's times [{times[0]:g}, {times[-1]:g}] leave the scenario's span "
                        f"[{scenario.start:g}, {scenario.horizon:g}]")


def optimise_schedule(
    model: Model,
    scenario: Scenario,
    design: Design,
    goal: Goal,
    *,
    bounds: Sequence[Bound] = (),
    draws: ParameterDraws | None = None,
    robust: Literal["mean"] | float = "mean",
    confidence: float = 0.9,
    start: np.ndarray | None = None,
    max_iterations: int = 150,
    progress: Any = None,
    rtol: float = 1e-6,
    atol: float = 1e-9,
) -> Schedule:
    """The design that optimises ``goal`` over ``draws`` under the design's limits and ``bounds`` (see the module).

    ``start`` is a design vector in [0, 1]^size (amounts over ``max_dose``, window positions);
    by default the total allowed spread evenly. ``progress(done, total, label)`` is called after
    every SLSQP iteration (see :mod:`biotwin.progress`). Raises :class:`ModelError` when the solve fails
    at the start for every draw.
    """
    import jax
    import jax.numpy as jnp

    from biotwin.simulate import OK

    began = time.perf_counter()
    check_problem(model, scenario, design, goal, bounds)
    outcomes = criterion(model, scenario, goal, bounds, robust, confidence)
    solved, theta, y0, solve_one = scenario_solver(model, scenario, draws, rtol, atol)
    solve = jax.vmap(solve_one, in_axes=(0, 0, None))
    plan_of = _plan_builder(solved, scenario, design)

    def stacked(v: Any) -> Any:
        states, observables, status, _ = solve(jnp.asarray(theta), jnp.asarray(y0), plan_of(v))
        return outcomes(states, observables, status == OK)

    n_amounts = len(design.times) if isinstance(design, BolusDesign) else design.size
    widths = (np.ones(n_amounts) if isinstance(design, BolusDesign) else np.diff(design.grid))
    scale = design.max_dose if isinstance(design, BolusDesign) else design.max_rate
    if start is None:
        budget = design.max_total if design.max_total is not None else scale * float(np.sum(widths))
        share = min(1.0, budget / (scale * float(np.sum(widths))))
        start = np.concatenate([np.full(n_amounts, share), np.full(design.size - n_amounts, 0.5)])
    start = np.clip(np.asarray(start, dtype=float), 0.0, 1.0)
    if start.shape != (design.size,):
        raise DataError(f"the start design needs {design.size} numbers in [0, 1], got {start.shape}")
    linear = None
    if design.max_total is not None:
        linear = np.concatenate([scale * widths, np.zeros(design.size - n_amounts)]) / design.max_total
    found = _minimise_in_unit_box(stacked, start, budget_row=linear, max_iterations=max_iterations, progress=progress,
                                  scales=slack_scales(bounds))
    v = found.x
    plan = plan_of(jnp.asarray(v))
    amounts = np.asarray(v[:n_amounts]) * scale
    chosen_times = np.asarray(plan.boundaries[1:-1]) if isinstance(design, BolusDesign) else np.array(design.grid[:-1])
    sign = -1.0 if goal.maximise else 1.0
    return Schedule(design, amounts, chosen_times, sign * found.value, sign * found.start_value, found.converged,
                    found.message, found.iterations, time.perf_counter() - began)


def scenario_solver(model: Model, scenario: Scenario, draws: ParameterDraws | None, rtol: float,
                    atol: float) -> tuple[Model, np.ndarray, np.ndarray, Any]:
    """The scenario's model, the draws' parameter sets and initial states, and the (unbatched) solve to run them with.

    The solver is Kvaerno5 when the system is stiff at the draws, else the explicit method for ``rtol``.
    """
    from biotwin import _jax  # noqa: F401
    from biotwin.simulate import STIFF_METHOD, explicit_method, is_stiff, simulator

    solved, theta, y0 = scenario.parameter_sets(model, draws or ParameterDraws.of_model(model))
    method = STIFF_METHOD if is_stiff(solved, theta, y0, scenario.horizon - scenario.start) else explicit_method(rtol)
    return solved, theta, y0, simulator(solved, method, rtol, atol).solve


def criterion(model: Model, scenario: Scenario, goal: Goal, bounds: Sequence[Bound],
              robust: Literal["mean"] | float, confidence: float) -> Any:
    """``outcomes(states, observables, ok)`` over draws (JAX): the goal's value (mean or ``robust``-quantile,
    to minimise) stacked on the bounds' slacks (each >= 0 when the bound holds in a ``confidence`` share)."""
    import jax
    import jax.numpy as jnp

    if robust != "mean" and not (isinstance(robust, float) and 0.0 < robust < 1.0):
        raise DataError(f"robust must be 'mean' or a quantile in (0, 1), got {robust!r}")
    weights = np.gradient(scenario.output_times())  # trapezoid-like quadrature weights on the output grid

    def quantity(states: Any, observables: Any, name: str) -> Any:
        if name in model.states:
            return states[..., model.states.index(name)]
        return observables[..., model.observable_names.index(name)]

    def outcomes(states: Any, observables: Any, ok: Any) -> Any:
        q = quantity(states, observables, goal.quantity)
        if goal.kind == "final":
            per_draw = q[:, -1]
        elif goal.kind == "auc":
            per_draw = q @ weights
        else:
            per_draw = jax.nn.sigmoid((q - goal.threshold) / (SMOOTHING * goal.threshold)) @ weights
        per_draw = -per_draw if goal.maximise else per_draw
        # A failed solve counts as the worst outcome seen, so the optimiser steers away from it.
        per_draw = jnp.where(ok, per_draw, jnp.max(jnp.where(ok, per_draw, -jnp.inf)) + 1.0)
        value = jnp.mean(per_draw) if robust == "mean" else jnp.quantile(per_draw, robust)
        slack = []
        for bound in bounds:
            b = quantity(states, observables, bound.quantity)
            if bound.upper is not None:
                slack.append(bound.upper - jnp.quantile(jnp.max(b, axis=1), confidence))
            if bound.lower is not None:
                slack.append(jnp.quantile(jnp.min(b, axis=1), 1 - confidence) - bound.lower)
        return jnp.concatenate([value[None], jnp.stack(slack) if slack else jnp.zeros(0)])

    return outcomes


#: A bound holds when it is violated by at most this share of its level (SLSQP meets an active
#: bound only to its tolerance, and a rule started at its optimum must count as feasible there).
FEASIBLE_WITHIN = 1e-3


def bounds_hold(slacks: np.ndarray, scales: np.ndarray) -> bool:
    """Whether every bound holds, given the slacks :func:`criterion` stacks and their :func:`slack_scales`."""
    return bool(np.all(np.asarray(slacks) / scales >= -FEASIBLE_WITHIN))


def slack_scales(bounds: Sequence[Bound]) -> np.ndarray:
    """The level of each bound's slack, in the order :func:`criterion` stacks them (upper, then lower, per bound)."""
    order = []
    for bound in bounds:
        if bound.upper is not None:
            order.append(abs(bound.upper) or 1.0)
        if bound.lower is not None:
            order.append(abs(bound.lower) or 1.0)
    return np.asarray(order, dtype=float)


@dataclass(frozen=True, eq=False)
class Minimum:
    """What :func:`_minimise_in_unit_box` found: the vector ``x``, the objective there and at the start."""

    x: np.ndarray
    value: float
    start_value: float
    converged: bool
    message: str
    iterations: int


def _minimise_in_unit_box(stacked: Any, start: np.ndarray, *, budget_row: np.ndarray | None, max_iterations: int,
                          progress: Any, scales: np.ndarray | None = None) -> Minimum:
    """Minimise ``stacked(x)[0]`` subject to ``stacked(x)[1:] >= 0``, ``budget_row @ x <= 1`` and x in [0, 1]^n, by SLSQP.

    ``stacked`` is a JAX function; the objective, the constraints and their Jacobian come from one
    compiled program (one reverse sweep per output), remembered for the last x: SLSQP asks for
    them separately at the same point. ``progress(done, total, label)`` is called every iteration.
    SLSQP's iterates may cross a bound on the way (and its last one does when it stops at the
    iteration limit): the best iterate that kept every bound (to ``FEASIBLE_WITHIN`` of its level in
    ``scales``) is returned when the last one did not. Raises :class:`ModelError` when the
    objective is not finite at the start.
    """
    import jax
    import jax.numpy as jnp
    from scipy.optimize import minimize

    from biotwin import _jax  # noqa: F401  (float64 before the first array)

    def with_primal(x: Any) -> tuple[Any, Any]:
        outputs = stacked(x)
        return outputs, outputs

    jacobian_and_outputs = jax.jit(jax.jacrev(with_primal, has_aux=True))
    memo: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def at(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        key = np.asarray(x, dtype=float).tobytes()
        if key not in memo:
            memo.clear()
            jacobian, outputs = jacobian_and_outputs(jnp.asarray(x, dtype=jnp.float64))
            memo[key] = (np.asarray(outputs, dtype=float), np.asarray(jacobian, dtype=float))
        return memo[key]

    start_value = float(at(start)[0][0])
    if not np.isfinite(start_value):
        raise ModelError("the model cannot be solved for any draw at the start design; check the scenario")
    norm = max(abs(start_value), 1e-12)

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        outputs, jacobian = at(x)
        return float(outputs[0]) / norm, jacobian[0] / norm

    constraints = []
    if at(start)[0].size > 1:
        constraints.append({"type": "ineq", "fun": lambda x: at(x)[0][1:], "jac": lambda x: at(x)[1][1:]})
    if budget_row is not None:
        row = np.asarray(budget_row, dtype=float)
        constraints.append({"type": "ineq", "fun": lambda x: np.array([1.0 - row @ x]), "jac": lambda x: -row[None, :]})
    levels = np.ones(at(start)[0].size - 1) if scales is None else np.asarray(scales, dtype=float)

    def judged(x: np.ndarray) -> tuple[float, bool]:
        """The goal at x and whether x keeps every bound and the budget."""
        outputs = at(x)[0]
        within_budget = budget_row is None or float(budget_row @ x) <= 1.0 + FEASIBLE_WITHIN
        return float(outputs[0]), within_budget and bounds_hold(outputs[1:], levels)

    iterations = [0]
    # The best iterate that kept every bound, (goal, x); the start counts as one.
    kept = [(start_value, start.copy())] if judged(start)[1] else []

    def report(x: np.ndarray) -> None:
        iterations[0] += 1
        x = np.clip(x, 0.0, 1.0)  # the same array (a memo hit) unless SLSQP stepped past the box by rounding
        value, feasible = judged(x)
        if feasible and (not kept or value < kept[0][0]):
            kept[:] = [(value, x.copy())]
        if progress is not None:
            progress(iterations[0], max_iterations, f"goal {value:.4g}")

    result = minimize(fun, start, jac=True, method="SLSQP", bounds=[(0.0, 1.0)] * start.size,
                      constraints=constraints, callback=report, options={"maxiter": max_iterations, "ftol": 1e-7})
    x = np.clip(result.x, 0.0, 1.0)
    value, feasible = judged(x)
    message = str(result.message)
    if kept and (not feasible or kept[0][0] < value):
        (value, x), feasible = kept[0], True
        message += "; the best iterate that kept every bound is returned"
    elif not feasible:
        message += "; no iterate kept every bound"
    return Minimum(x, value, start_value, bool(result.success) and feasible, message, int(result.nit))


def standard_schedule(design: BolusDesign, amount: float, times: Sequence[float]) -> Schedule:
    """A fixed regimen (``amount`` at each of ``times``) as a :class:`Schedule`, to compare an optimum with."""
    times = np.array(times, dtype=float)
    return Schedule(design, np.full(times.size, float(amount)), times, float("nan"), float("nan"), True,
                    "standard regimen", 0, 0.0)


def goal_values(forecast: Forecast, goal: Goal) -> np.ndarray:
    """(S,): the goal's quantity per draw of a forecast (final value, area, or time above the threshold; NaN where failed)."""
    q = forecast.trajectories(goal.quantity)
    if goal.kind == "final":
        return q[:, -1]
    if goal.kind == "auc":
        return np.trapezoid(q, forecast.times, axis=1)
    above = np.trapezoid((q > goal.threshold).astype(float), forecast.times, axis=1)
    return np.where(forecast.failed, np.nan, above)


def schedule_forecasts(model: Model, scenario: Scenario, schedules: dict[str, Schedule],
                       draws: ParameterDraws | None = None) -> dict[str, Forecast]:
    """Forecast ``scenario`` under each schedule over the same draws (for :func:`biotwin.experiment.compare`)."""
    return {name: forecast(model, s.scenario(scenario, name), draws) for name, s in schedules.items()}


@dataclass(frozen=True, eq=False)
class OptimisationPlan:
    """What a design file asks for: the base scenario, the design, the goal, bounds, robustness, and a standard regimen."""

    scenario: Scenario
    design: Design
    goal: Goal
    bounds: tuple[Bound, ...] = ()
    robust: Literal["mean"] | float = "mean"
    confidence: float = 0.9
    draws: int = 100
    standard: tuple[Dosing, ...] = ()
    feedback: Any = None  # a biotwin.feedback.FeedbackDesign, trained beside the open-loop optimum


DESIGN_KEYS = ("scenario", "bolus", "infusion", "goal", "bounds", "robust", "confidence", "draws", "standard", "feedback")


def read_design(source: Any) -> OptimisationPlan:
    """An :class:`OptimisationPlan` from a YAML file (or its parsed content)::

        scenario: {horizon: 30, initial: {C: 0, T: 1, N: 1}}
        bolus: {state: C, times: "0:27:10", max_dose: 40, max_total: 100}   # or infusion: {state, grid, max_rate, max_total}
        goal: {quantity: T, kind: final}                                    # final | auc | time_above (+ threshold)
        bounds: [{quantity: N, lower: 0.5}]
        robust: mean                                                        # or a quantile, e.g. 0.9
        confidence: 0.9                                                     # bounds hold in this share of draws
        draws: 100                                                          # posterior draws optimised over
        standard: [{state: C, amount: 25, start: 0, every: 7, count: 4}]    # the regimen to beat
        feedback: {observe: [T, N], width: 8}                               # also train a feedback rule

    ``feedback`` (bolus designs only) asks for a :class:`biotwin.feedback.FeedbackDesign` on the
    same decision times and limits, to compare with the open-loop optimum.
    """
    from biotwin.io.files import read_yaml

    if isinstance(source, dict):
        content, where = source, "the design"
    else:
        content, where = read_yaml(source, "design file"), str(source)
    if not isinstance(content, dict):
        raise DataError(f"{where}: a design file is a mapping with {', '.join(DESIGN_KEYS)}")
    unknown = sorted(set(content) - set(DESIGN_KEYS))
    if unknown:
        raise DataError(f"{where}: unknown setting '{unknown[0]}'; the settings are {', '.join(DESIGN_KEYS)}")
    if ("bolus" in content) == ("infusion" in content):
        raise DataError(f"{where}: give exactly one of 'bolus' (dose amounts at candidate times) or 'infusion' (rates on a grid)")
    for key in ("scenario", "goal"):
        if not isinstance(content.get(key), dict):
            raise DataError(f"{where}: '{key}' must be a mapping (see biotwin optimize --help)")

    def build(kind: Any, entry: Any, what: str) -> Any:
        if not isinstance(entry, dict):
            raise DataError(f"{where}: '{what}' must be a mapping")
        try:
            return kind(**entry)
        except TypeError as error:
            raise DataError(f"{where}: '{what}' {entry!r} does not fit ({error})") from None

    scenario = Scenario.from_mapping("optimised", content["scenario"])
    if "bolus" in content:
        entry = dict(content["bolus"]) if isinstance(content["bolus"], dict) else content["bolus"]
        if isinstance(entry, dict) and "times" in entry:
            entry["times"] = parse_times(entry["times"], f"{where}: bolus")
        design: Design = build(BolusDesign, entry, "bolus")
    else:
        entry = dict(content["infusion"]) if isinstance(content["infusion"], dict) else content["infusion"]
        if isinstance(entry, dict) and "grid" in entry:
            entry["grid"] = parse_times(entry["grid"], f"{where}: infusion grid")
        design = build(InfusionDesign, entry, "infusion")
    robust = content.get("robust", "mean")
    if robust != "mean":
        try:
            robust = float(robust)
        except (TypeError, ValueError):
            raise DataError(f"{where}: robust must be 'mean' or a quantile in (0, 1), got {robust!r}") from None
    draws = content.get("draws", 100)
    if not isinstance(draws, int) or draws < 1:
        raise DataError(f"{where}: draws must be a whole number >= 1, got {draws!r}")
    confidence = float(content.get("confidence", 0.9))
    if not 0.0 < confidence <= 1.0:
        raise DataError(f"{where}: confidence must lie in (0, 1], got {confidence}")
    feedback = None
    if content.get("feedback") is not None:
        from biotwin.feedback import FeedbackDesign

        if not isinstance(design, BolusDesign):
            raise DataError(f"{where}: a feedback rule decides bolus doses; give 'bolus', not 'infusion', with 'feedback'")
        entry = content["feedback"]
        if not isinstance(entry, dict) or not isinstance(entry.get("observe"), list):
            raise DataError(f"{where}: 'feedback' needs 'observe: [quantities the rule sees]' (and optionally width, depth, seed)")
        feedback = build(FeedbackDesign, {**entry, "doses": design, "observe": tuple(entry["observe"])}, "feedback")
    return OptimisationPlan(
        scenario, design, build(Goal, content["goal"], "goal"),
        tuple(build(Bound, b, "bounds") for b in content.get("bounds") or []), robust, confidence, draws,
        tuple(build(Dosing, d, "standard") for d in content.get("standard") or []), feedback,
    )

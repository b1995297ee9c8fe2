"""A neural-network feedback controller: each dose decided from what is observed when it is given.

An open-loop schedule (:mod:`biotwin.control`) fixes the doses in advance for every patient. A
feedback rule looks at the patient first: at the decision times t_1 < ... < t_K of a
:class:`~biotwin.control.BolusDesign` it gives, into the design's state,

    a_k = r_k * s(b_k + NN_w(z_k)),    r_k = min(D, B - sum_{j<k} a_j)^+,    z_k = (log(q(t_k) / q_ref), t_k / T),

with D the largest single dose, B the largest cumulative dose (so no patient ever gets more than
the open-loop schedule may give), r_k the room left under both, s the logistic function, q the
observed quantities (states or observables, e.g. tumour volume and neutrophil count), q_ref their
median at the start, NN_w a small multilayer perceptron (equinox) and b_k a baseline per decision
time. The rule is a correction around a schedule: started from an open-loop schedule a*_k, the
baseline is b_k = logit(a*_k / r*_k), with r*_k the room that schedule leaves, and the network's
output starts at zero, so the untrained rule gives the open-loop doses to every patient and
training can only move away from them where the goal improves; otherwise b_k spreads the
cumulative limit evenly. The weights w are trained through the differentiable
simulator, over the posterior draws as a population of virtual patients, on the same goal and
bounds as the open-loop optimiser (:func:`biotwin.control.criterion`): the mean (or a quantile) of
the goal, each bound held in a ``confidence`` share of the draws (an exact penalty on its
violation), by Adam with exact gradients (reverse mode through diffrax and the scan over decision
times). This is the controller proposed
for medical digital twins; compare it with the open-loop optimum on draws it was not trained on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from biotwin.control import (
    FEASIBLE_WITHIN,
    BolusDesign,
    Bound,
    Goal,
    bounds_hold,
    check_problem,
    criterion,
    scenario_solver,
    slack_scales,
)
from biotwin.errors import DataError, ModelError
from biotwin.experiment import Forecast, ParameterDraws, Scenario, forecast_of_solves
from biotwin.model import Model

#: Floor of q / q_ref under the logarithm of the features (a quantity that reaches zero).
FEATURE_FLOOR = 1e-6
#: Weight of a bound's relative violation v (penalty PENALTY (v + v^2)), against the goal normalised
#: to 1 at the start. A linear term makes the penalty exact: above the bound's Lagrange multiplier,
#: the penalised minimum lies on the bound rather than a fixed distance past it, as a quadratic
#: penalty alone would leave it (about 1 % past the neutrophil bound of the chemotherapy example).
PENALTY = 100.0
#: Adam's step on the network's weights.
LEARNING_RATE = 0.02
#: Bounds of a baseline dose's share of the room, a*_k / r*_k: a dose of 0 or of all the room has
#: no finite logit, and a logistic saturated further than this would barely learn.
BASELINE_SHARE = (1e-4, 1.0 - 1e-4)


@dataclass(frozen=True)
class FeedbackDesign:
    """What the rule may do (``doses``: a bolus design's times and limits) and what it sees (``observe``).

    ``width`` and ``depth`` shape the perceptron (tanh hidden layers); ``seed`` its initial weights.
    """

    doses: BolusDesign
    observe: tuple[str, ...]
    width: int = 8
    depth: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "observe", tuple(self.observe))
        if not self.observe:
            raise DataError("a feedback rule must observe at least one quantity (observe: [a state or an observable])")
        if self.doses.free_times:
            raise DataError("a feedback rule decides amounts at fixed decision times; drop free_times from its bolus design")
        if self.width < 1 or self.depth < 0:
            raise DataError(f"the rule's network needs width >= 1 and depth >= 0, got {self.width} and {self.depth}")


@dataclass(frozen=True, eq=False)
class FeedbackRule:
    """A trained feedback rule: the network's flat ``weights``, its ``baseline`` logits b_k, its
    reference levels and its training record.

    ``value`` is the goal over the training draws (as optimised: mean or quantile), ``start_value``
    the same for the untrained rule (the open-loop schedule it started from, or the cumulative dose
    spread evenly).
    """

    design: FeedbackDesign
    weights: np.ndarray
    baseline: np.ndarray
    reference: np.ndarray
    value: float
    start_value: float
    converged: bool
    message: str
    iterations: int
    seconds: float

    def forecast(self, model: Model, scenario: Scenario, draws: ParameterDraws | None = None, *,
                 rtol: float = 1e-6, atol: float = 1e-9) -> tuple[Forecast, np.ndarray]:
        """The scenario run under this rule for every draw: its :class:`Forecast` and the doses (S, K) each draw got."""
        import jax
        import jax.numpy as jnp

        named = replace(scenario, name="feedback")
        draws = draws if draws is not None else ParameterDraws.of_model(model)
        solved, theta, y0, solve = scenario_solver(model, named, draws, rtol, atol)
        rollout = _rollout(solved, named, self.design, self.reference, self.baseline, solve, theta, y0)
        states, observables, status, t_stop, doses = jax.jit(rollout)(jnp.asarray(self.weights))
        result = forecast_of_solves(model, named, draws, np.asarray(states), np.asarray(observables),
                                    np.asarray(status), np.asarray(t_stop))
        return result, np.asarray(doses)

    def to_record(self) -> dict[str, Any]:
        return {"observe": list(self.design.observe), "times": list(self.design.doses.times),
                "max_dose": self.design.doses.max_dose, "max_total": self.design.doses.max_total,
                "width": self.design.width, "depth": self.design.depth, "weights": self.weights.tolist(),
                "baseline": self.baseline.tolist(), "reference": self.reference.tolist(), "value": self.value, "start_value": self.start_value,
                "converged": self.converged, "message": self.message, "iterations": self.iterations,
                "seconds": self.seconds}


def _network(design: FeedbackDesign) -> tuple[np.ndarray, Any]:
    """The initial flat weights and ``net(weights, z)``; untrained, the network's output is 0."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    mlp = eqx.nn.MLP(len(design.observe) + 1, "scalar", design.width, design.depth, activation=jnp.tanh,
                     key=jax.random.PRNGKey(design.seed), dtype=jnp.float64)
    last = mlp.layers[-1]
    # The untrained network outputs exactly 0, so the rule starts at its baseline (the hidden
    # layers get gradients once the output weights have moved from 0).
    mlp = eqx.tree_at(lambda m: (m.layers[-1].weight, m.layers[-1].bias), mlp,
                      (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)))
    flat, unravel = ravel_pytree(eqx.filter(mlp, eqx.is_array))
    static = eqx.filter(mlp, eqx.is_array, inverse=True)

    def net(weights: Any, z: Any) -> Any:
        return eqx.combine(unravel(weights), static)(z)

    return np.asarray(flat), net


def _budget(design: BolusDesign) -> float:
    """The largest cumulative dose B (the largest single dose at every decision time when none is given)."""
    return design.max_total if design.max_total is not None else design.max_dose * len(design.times)


def _baseline(design: BolusDesign, schedule: Sequence[float] | None) -> np.ndarray:
    """The logits b_k that give ``schedule`` (K,) to every patient, or spread the cumulative limit evenly.

    Along an open-loop schedule the room r*_k = min(D, B - sum_{j<k} a*_j) is the same for every
    patient, so b_k = logit(a*_k / r*_k) reproduces it (shares clipped to :data:`BASELINE_SHARE`).
    """
    k = len(design.times)
    if schedule is None:
        shares = np.full(k, _budget(design) / (design.max_dose * k))
    else:
        amounts = np.asarray(schedule, dtype=float)
        if amounts.shape != (k,):
            raise DataError(f"the rule starts from {amounts.size} doses but decides at {k} times")
        shares = np.empty(k)
        given = 0.0
        for j, amount in enumerate(amounts):
            room = float(np.clip(_budget(design) - given, 0.0, design.max_dose))
            shares[j] = amount / room if room > 0 else 0.0
            given += min(amount, room)
    shares = np.clip(shares, *BASELINE_SHARE)
    return np.log(shares / (1.0 - shares))


def _rollout(model: Model, scenario: Scenario, design: FeedbackDesign, reference: np.ndarray, baseline: np.ndarray,
             solve: Any, theta: np.ndarray, y0: np.ndarray) -> Any:
    """``run(weights) -> (states (S, T, n), observables (S, T, O), status (S,), t_stop (S,), doses (S, K))``
    over the draws (JAX), each solved by ``solve`` (a :class:`~biotwin.simulate.Simulator`'s).

    Each draw is solved interval by interval between decision times; at the start of each
    interval the rule sees the observed quantities and its dose, a share of the room left under
    the limits, is added to the state.
    """
    import jax
    import jax.numpy as jnp

    from biotwin.simulate import OK, Plan

    doses = design.doses
    compiled = model.compiled
    n_states, n_inputs = len(model.states), len(model.inputs)
    column = model.states.index(doses.state)
    save_times = jnp.asarray(scenario.output_times())
    boundaries = jnp.asarray(np.concatenate([[scenario.start], doses.times, [scenario.horizon]]))
    budget = _budget(doses)
    logits = jnp.asarray(np.concatenate([[0.0], baseline]))
    _, net = _network(design)
    log_reference = jnp.log(jnp.asarray(reference))
    no_input = jnp.zeros(n_inputs)
    observe = jax.vmap(lambda t, y, th: compiled.observe(t, y, th, no_input), in_axes=(0, 0, None))

    def seen(t: Any, y: Any, th: Any) -> Any:
        observed = compiled.observe(t, y, th, no_input)
        values = jnp.stack([y[model.states.index(q)] if q in model.states else observed[model.observable_names.index(q)]
                            for q in design.observe])
        level = jnp.log(jnp.maximum(jnp.abs(values), FEATURE_FLOOR * jnp.exp(log_reference))) - log_reference
        return jnp.concatenate([level, jnp.atleast_1d((t - scenario.start) / (scenario.horizon - scenario.start))])

    def one(weights: Any, th: Any, start_state: Any) -> Any:
        def interval(carry: Any, k: Any) -> Any:
            y, given, out, status, t_stop = carry
            ta, tb = boundaries[k], boundaries[k + 1]
            room = jnp.clip(budget - given, 0.0, doses.max_dose)
            dose = jnp.where(k >= 1, room * jax.nn.sigmoid(logits[k] + net(weights, seen(ta, y, th))), 0.0)
            y = y.at[column].add(dose)
            # One solve per interval, saving at the output grid (clipped to the interval) and at its end.
            plan = Plan(jnp.concatenate([save_times, tb[None]]), jnp.stack([ta, tb]), jnp.zeros((1, n_states)),
                        jnp.zeros((1, n_inputs + n_states)))
            states, _, code, stopped = solve(th, y, plan)
            inside = (save_times >= ta) & (save_times <= tb)
            out = jnp.where(inside[:, None], states[:-1], out)
            t_stop = jnp.where((status == OK) & (code != OK), stopped, t_stop)
            status = jnp.where(status == OK, code, status)
            return (states[-1], given + dose, out, status, t_stop), dose

        initial = (start_state, jnp.asarray(0.0), jnp.zeros((save_times.shape[0], n_states)), jnp.asarray(OK),
                   boundaries[-1])
        (_, _, states, status, t_stop), given = jax.lax.scan(interval, initial, jnp.arange(boundaries.shape[0] - 1))
        return states, observe(save_times, states, th), status, t_stop, given[1:]

    def run(weights: Any) -> Any:
        return jax.vmap(one, in_axes=(None, 0, 0))(weights, jnp.asarray(theta), jnp.asarray(y0))

    return run


def train_feedback(
    model: Model,
    scenario: Scenario,
    design: FeedbackDesign,
    goal: Goal,
    *,
    bounds: Sequence[Bound] = (),
    draws: ParameterDraws | None = None,
    robust: Literal["mean"] | float = "mean",
    confidence: float = 0.9,
    max_iterations: int = 300,
    progress: Any = None,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    start_from: Sequence[float] | None = None,
) -> FeedbackRule:
    """Train the rule's weights over ``draws`` on ``goal`` under ``bounds`` (see the module).

    The scenario and quantities are checked as for :func:`biotwin.control.optimise_schedule`;
    every observed quantity must be a state or an observable of the model. With ``start_from``
    (an open-loop schedule's amounts at the design's times, e.g. the open-loop optimum's), the
    rule is a correction around that schedule and starts by giving it to every patient: as the
    best iterate is kept, it ends no worse than the schedule on these draws.
    """

    from biotwin.simulate import OK

    began = time.perf_counter()
    check_problem(model, scenario, design.doses, goal, bounds)
    quantities = (*model.states, *model.observable_names)
    for name in design.observe:
        if name not in quantities:
            raise DataError(f"the rule observes {Model.unknown_message('state or observable', name, quantities)}")
    baseline = _baseline(design.doses, start_from)
    outcomes = criterion(model, scenario, goal, bounds, robust, confidence)
    solved, theta, y0, solve = scenario_solver(model, scenario, draws, rtol, atol)
    reference = _reference_levels(solved, design.observe, theta, y0, scenario.start)
    rollout = _rollout(solved, scenario, design, reference, baseline, solve, theta, y0)

    def stacked(weights: Any) -> Any:
        states, observables, status, *_ = rollout(weights)
        return outcomes(states, observables, status == OK)

    start, _ = _network(design)
    weights, value, start_value, feasible, iterations = _adam(stacked, start, slack_scales(bounds), max_iterations,
                                                              progress)
    sign = -1.0 if goal.maximise else 1.0
    message = (f"bounds hold (to {FEASIBLE_WITHIN:.1%} of their levels)" if feasible
               else "no iterate kept every bound; the least violating one is returned")
    return FeedbackRule(design, weights, baseline, reference, sign * value, sign * start_value, feasible, message,
                        iterations, time.perf_counter() - began)


def _adam(stacked: Any, start: np.ndarray, slack_scales: np.ndarray, iterations: int,
          progress: Any) -> tuple[np.ndarray, float, float, bool, int]:
    """Minimise the goal plus a quadratic penalty on violated bounds by Adam; the best feasible iterate wins.

    A network's logistic output saturates where a quasi-Newton step would throw it, and its
    gradient then vanishes: small, normalised Adam steps keep it trainable. Returns the weights,
    their goal, the goal at the start, whether every bound held there, and the steps taken.
    """
    import jax
    import jax.numpy as jnp
    import optax

    from biotwin.descent import compiled_descent

    def loss(weights: Any, norm: Any) -> tuple[Any, Any]:
        outputs = stacked(weights)
        violation = jax.nn.relu(-outputs[1:] / slack_scales)
        return outputs[0] / norm + PENALTY * jnp.sum(violation + violation**2), outputs

    # Large steps first, then a cosine decay to a twentieth of them, so that the last iterates settle.
    optimiser = optax.adam(optax.cosine_decay_schedule(LEARNING_RATE, iterations, alpha=0.05))
    value_and_gradient = jax.jit(jax.value_and_grad(loss, has_aux=True))
    descend = compiled_descent(value_and_gradient, optimiser)
    weights = jnp.asarray(start)
    state = optimiser.init(weights)
    # The untrained rule's goal: the loss alone, through the trace the descent shares (no step taken).
    (_, outputs), _ = value_and_gradient(weights, 1.0)
    start_value = float(outputs[0])
    if not np.isfinite(start_value):
        raise ModelError("the model cannot be solved for any draw under the untrained rule; check the scenario")
    norm = max(abs(start_value), 1e-12)
    best: tuple[float, float, np.ndarray, bool] | None = None  # (rank, goal, weights, feasible)
    for step in range(1, iterations + 1):
        # One step at a time: every iterate is a candidate for the best feasible one.
        following, state, (penalised, outputs) = descend(weights, state, 1, norm)
        outputs = np.asarray(outputs)
        feasible = bounds_hold(outputs[1:], slack_scales)
        # Feasible iterates rank by their goal, the others after them by their penalised loss.
        rank = (0.0 if feasible else 1.0, float(outputs[0]) if feasible else float(penalised))
        if np.isfinite(rank[1]) and (best is None or rank < best[0]):
            best = (rank, float(outputs[0]), np.asarray(weights), feasible)
        if progress is not None:
            progress(step, iterations, f"goal {float(outputs[0]):.4g}" + ("" if feasible else " (bound violated)"))
        weights = following
    assert best is not None
    return best[2], best[1], start_value, best[3], iterations


def _reference_levels(model: Model, observe: Sequence[str], theta: np.ndarray, y0: np.ndarray, t0: float) -> np.ndarray:
    """The median over draws of each observed quantity's magnitude at the start (1 where that is zero)."""
    import jax

    compiled = model.compiled
    no_input = np.zeros(len(model.inputs))
    observed = np.asarray(jax.vmap(lambda y, th: compiled.observe(t0, y, th, no_input))(y0, theta))
    columns = [y0[:, model.states.index(q)] if q in model.states else observed[:, model.observable_names.index(q)]
               for q in observe]
    levels = np.array([np.median(np.abs(c)) for c in columns])
    return np.where(levels > 0, levels, 1.0)

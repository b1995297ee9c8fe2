"""The ODE engine: solve a model over time, with doses and inputs, batched and differentiable.

An experiment's time line is cut into *segments* at every bolus dose and every switch of an
input. Within a segment the inputs are constant, so the right-hand side is smooth and an
adaptive solver keeps its order; at the start of segment k the state jumps by the doses given
then, x(t_k+) = x(t_k-) + d_k. A :class:`Plan` holds this time line as arrays of fixed shape,
so one compiled solve serves every parameter set, initial state and experiment of that shape,
and ``jax.vmap`` batches over any of them.

The solver is chosen automatically (``method="auto"``): an explicit Runge-Kutta method
(Tsit5) unless the Jacobian at the start says the system is stiff, and a fallback to an
L-stable implicit method (Kvaerno5) when the explicit solve runs out of steps. The Rosenbrock
methods ``rodas5`` and ``rodas4`` (:mod:`biotwin.rosenbrock`) are the other stiff choice: one
Jacobian and one factorisation per step instead of a Newton iteration per stage. A state that
grows past a bound or becomes non-finite stops the solve and raises :class:`SolverError` with
the time it happened; a solve whose steps keep being rejected stops as failed (see
:func:`step_controller`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from biotwin.data import Bolus, Dataset, Experiment, Input
from biotwin.errors import DataError, ModelError, SolverError
from biotwin.rosenbrock import TABLEAUX as ROSENBROCK_METHODS
from biotwin.rosenbrock import rosenbrock_solver

if TYPE_CHECKING:
    import jax

    from biotwin.model import Model

Method = Literal["auto", "tsit5", "dopri5", "dopri8", "kvaerno5", "kencarp4", "rodas5", "rodas4"]
Adjoint = Literal["reverse", "forward"]

EXPLICIT_METHOD = "tsit5"
#: Below this relative tolerance the 8th-order method takes far fewer steps than the 5th-order one.
TIGHT_RTOL = 1e-7
TIGHT_EXPLICIT_METHOD = "dopri8"
STIFF_METHOD = "kvaerno5"
#: The stiff method of calibration objectives, whose every evaluation carries forward
#: sensitivities: Rodas5 forms M^-1 once per step and makes each stage's solve, primal and
#: tangent, one small product, where Kvaerno5 runs a Newton iteration per stage and an implicit
#: derivative of each. With sensitivities on the four shared PEtab problems (nominal point, best
#: of 5) Rodas5 takes 7 ms against 23 ms on Crauste_CellSystems2017, 5 against 12 on
#: Boehm_JProteomeRes2014, 2.2 against 8.1 on Perelson_Science1996 and 35 against 67-71 on
#: Elowitz_Nature2000, compiles within 2 s of Kvaerno5, and its NLLs are closer to AMICI's
#: tight-tolerance ones (Crauste 1.5e-6 against 8.9e-5). Plain simulation keeps
#: :data:`STIFF_METHOD` until discovery and the benchmark suites, which solve through it, have
#: been measured with Rodas5.
SENSITIVITY_STIFF_METHOD = "rodas5"
#: The methods for stiff systems: they step onto every output time (see :meth:`Simulator.solve`).
STIFF_METHODS = ("kvaerno5", "kencarp4", *ROSENBROCK_METHODS)
#: An explicit solver needs about |lambda_max| * span / 3 steps to stay stable; beyond this many
#: the implicit solver is cheaper.
STIFFNESS_STEPS = 2e4
EXPLICIT_MAX_STEPS = 16_384
STIFF_MAX_STEPS = 65_536
#: A solve fails when this many steps in a row are rejected after its first accepted step (see
#: :func:`step_controller`): more than crossing a discontinuity of the right-hand side takes at
#: tight tolerances (between 11 and 20 in a PEtab export test whose model has a Heaviside term;
#: each rejection shrinks the step at least 5-fold).
MAX_REJECTED_IN_ROW = 30
#: A solve fails when this many accepted steps in a row advance time by less than
#: :data:`STALLED_STEP` relative to t (see :func:`step_controller`); one such step is normal
#: where a step is clipped onto an output time that the previous step fell short of by round-off.
MAX_STALLED_IN_ROW = 10
STALLED_STEP = 1e-12
#: Once a solve has used this share of its step budget, it fails when its recent pace (the mean of
#: accepted step sizes, weighted by PACE_WEIGHT per step back) needs more than PACE_MARGIN times the
#: steps it has left to reach its end (see :func:`step_controller`).
PACE_CHECK_AFTER = 0.25
PACE_MARGIN = 2.0
PACE_WEIGHT = 0.9
#: Newton's stop in an implicit step, relative to the step's tolerances (see :func:`implicit_solver`).
NEWTON_TOLERANCE_FACTOR = 10.0
#: A state this many times larger than what the experiment supplies (initial state, doses,
#: infusions; at least 1) counts as a blow-up.
BLOWUP_FACTOR = 1e12

# Status codes returned by the compiled solve.
OK, STEPS_EXHAUSTED, BLOWUP = 0, 1, 2


class Plan(NamedTuple):
    """An experiment's time line as arrays (a JAX pytree; stack plans to batch experiments).

    ``save_times`` (T,): when to report the state. ``boundaries`` (S+1,): segment limits,
    non-decreasing (zero-length segments at the end pad plans to a common shape). ``jumps``
    (S, n_states): dose added at the start of each segment. ``levels`` (S, n_inputs + n_states):
    within each segment, the model inputs followed by the infusion rate into each state.
    """

    save_times: Any
    boundaries: Any
    jumps: Any
    levels: Any


def make_plan(
    model: Model,
    times: Sequence[float] | np.ndarray,
    *,
    start: float | None = None,
    doses: Sequence[Bolus] = (),
    inputs: Sequence[Input] = (),
    n_segments: int | None = None,
) -> Plan:
    """The :class:`Plan` for solving ``model`` at ``times``, starting at ``start`` (default: first time).

    Doses must go into states; inputs must name a model input or a state (an infusion).
    ``n_segments`` pads the plan with zero-length segments so that plans of different
    experiments stack into one batch.
    """
    times = np.asarray(times, dtype=float)
    if times.ndim != 1 or times.size == 0:
        raise DataError("output times must be a non-empty 1-D sequence")
    if not np.all(np.isfinite(times)) or np.any(np.diff(times) < 0):
        raise DataError("output times must be finite and non-decreasing")
    start = float(times[0]) if start is None else float(start)
    if start > times[0]:
        raise DataError(f"the solve starts at t={start}, after the first output time {times[0]}")
    end = float(times[-1])
    states = model.states
    signal_names = (*model.inputs, *states)
    for dose in doses:
        if dose.state not in states:
            raise ModelError(f"dose at t={dose.time} goes into '{dose.state}', which is not a state of the model "
                             f"(states: {', '.join(states)})")
        if not start <= dose.time <= end:
            raise DataError(f"dose into '{dose.state}' at t={dose.time} lies outside the simulated span [{start}, {end}]")
    for signal in inputs:
        if signal.name not in signal_names:
            raise ModelError(
                f"input '{signal.name}' is neither a model input nor a state "
                f"(inputs: {', '.join(model.inputs) or 'none'}; states: {', '.join(states)})"
            )

    cuts = {start, end}
    cuts.update(d.time for d in doses)
    cuts.update(t for s in inputs for t in s.times if start < t < end)
    boundaries = sorted(cuts)
    if len(boundaries) == 1 or any(d.time == end for d in doses):
        # A zero-length last segment: a single output time, or a dose at the last output time
        # that the last output must see.
        boundaries.append(end)
    n = len(boundaries) - 1
    if n_segments is not None:
        if n_segments < n:
            raise DataError(f"the plan needs {n} segments but only {n_segments} were allowed")
        boundaries += [boundaries[-1]] * (n_segments - n)
        n = n_segments
    jumps = np.zeros((n, len(states)))
    for dose in doses:
        jumps[boundaries.index(dose.time), states.index(dose.state)] += dose.amount
    by_name = {s.name: s for s in inputs}
    levels = np.array(
        [[by_name[name](boundaries[k]) if name in by_name else 0.0 for name in signal_names] for k in range(n)]
    ).reshape(n, len(signal_names))
    return Plan(times, np.array(boundaries), jumps, levels)


def plan_for_experiment(
    model: Model, experiment: Experiment, times: np.ndarray | None = None, n_segments: int | None = None
) -> Plan:
    """The plan that reproduces what was done in ``experiment``, at ``times`` (default: its measurement times)."""
    return make_plan(
        model, experiment.times if times is None else times, start=experiment.start, doses=experiment.doses,
        inputs=experiment.inputs, n_segments=n_segments,
    )


@dataclass(frozen=True, eq=False)
class Solution:
    """Simulated trajectories: ``states[..., i, k]`` is state k at ``times[i]``.

    Leading axes are the batch (parameter sets or initial states) when the solve was batched.
    """

    times: np.ndarray
    states: np.ndarray
    observables: np.ndarray
    state_names: tuple[str, ...]
    observable_names: tuple[str, ...]

    def state(self, name: str) -> np.ndarray:
        return self.states[..., self.state_names.index(name)]

    def observable(self, name: str) -> np.ndarray:
        return self.observables[..., self.observable_names.index(name)]

    def to_frame(self):
        """A wide table: time, then every state, then every observable not identical to a state."""
        import pandas as pd

        if self.states.ndim != 2:
            raise ValueError("to_frame needs an unbatched solution; index the batch first")
        columns: dict[str, Any] = {"time": self.times}
        for k, name in enumerate(self.state_names):
            columns[name] = self.states[:, k]
        for k, name in enumerate(self.observable_names):
            if name not in columns:
                columns[name] = self.observables[:, k]
        return pd.DataFrame(columns)


class Simulator:
    """Compiled solves of one model with one solver configuration.

    ``solve(theta, y0, plan)`` is a pure JAX function (jit, grad, vmap all apply) returning
    ``(states (T, n), observables (T, O), status, t_stop)``; ``status`` is 0 on success, 1 when
    the step budget ran out and 2 on a blow-up, and ``t_stop`` is where the solver stopped.

    ``dynamics`` replaces the model's compiled right-hand side and observables by any object with
    the same ``rhs(t, y, theta, u)``, ``observe(t, y, theta, u)`` and ``n_inputs`` (a hybrid
    model's, whose ``theta`` is a pytree of parameters and network weights).
    """

    def __init__(
        self, model: Model, method: str = EXPLICIT_METHOD, *, rtol: float = 1e-6, atol: float = 1e-9,
        max_steps: int | None = None, adjoint: Adjoint = "reverse", dynamics: Any = None,
    ) -> None:
        import diffrax

        from biotwin import _jax  # noqa: F401

        solvers = {
            "tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5, "dopri8": diffrax.Dopri8,
            "kvaerno5": lambda: implicit_solver(rtol, atol, diffrax.Kvaerno5),
            "kencarp4": lambda: implicit_solver(rtol, atol, diffrax.Kvaerno4),
            **{name: partial(rosenbrock_solver, name) for name in ROSENBROCK_METHODS},
        }
        if method not in solvers:
            raise SolverError(f"unknown method '{method}'; choose one of auto, {', '.join(solvers)}")
        self.model = model
        self.method = method
        self.stiff = method in STIFF_METHODS
        self.rtol, self.atol = rtol, atol
        self.max_steps = max_steps or (STIFF_MAX_STEPS if self.stiff else EXPLICIT_MAX_STEPS)
        self._solver = solvers[method]()
        self._adjoint = diffrax.ForwardMode() if adjoint == "forward" else diffrax.RecursiveCheckpointAdjoint()
        self._compiled = model.compiled if dynamics is None else dynamics
        self._rhs = finite_tangents(self._compiled.rhs)
        self._batched: dict[tuple[Any, ...], Any] = {}

    def solve(self, theta: jax.Array, y0: jax.Array, plan: Plan) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        import diffrax
        import jax
        import jax.numpy as jnp

        compiled, rhs = self._compiled, self._rhs
        n_inputs = compiled.n_inputs
        plan = Plan(*(jnp.asarray(part, dtype=jnp.float64) for part in plan))
        save_times = plan.save_times
        boundaries = plan.boundaries
        y0 = jnp.asarray(y0, dtype=jnp.float64)
        theta = jax.tree_util.tree_map(lambda part: jnp.asarray(part, dtype=jnp.float64), theta)
        # The largest state the experiment itself can put in: the initial state, all doses, and
        # the largest infusion over the whole span.
        span = boundaries[-1] - boundaries[0]
        supplied = jnp.max(jnp.abs(y0)) + jnp.sum(jnp.abs(plan.jumps)) + jnp.max(jnp.abs(plan.levels), initial=0.0) * span
        limit = BLOWUP_FACTOR * jnp.maximum(1.0, supplied)

        def vector_field(t: Any, y: Any, args: Any) -> Any:
            level = args
            return rhs(t, y, theta, level[:n_inputs]) + level[n_inputs:]

        def blown_up(t: Any, y: Any, args: Any, **kwargs: Any) -> Any:
            return jnp.any(~jnp.isfinite(y)) | (jnp.max(jnp.abs(y)) > limit)

        term = diffrax.ODETerm(vector_field)
        event = diffrax.Event(blown_up)

        def segment(carry: Any, k: Any) -> Any:
            y, out, status, t_stop = carry
            ta, tb = boundaries[k], boundaries[k + 1]
            y = y + plan.jumps[k]
            outputs = jnp.clip(save_times, ta, tb)
            # An L-stable implicit method takes long steps across a stiff system's slow manifold,
            # where its dense interpolant is poor: make it step onto every output time instead.
            controller = step_controller(self.rtol, self.atol, step_ts=outputs if self.stiff else None,
                                         end=tb, budget=self.max_steps)
            solution = diffrax.diffeqsolve(
                term, self._solver, ta, tb, None, y, plan.levels[k],
                saveat=diffrax.SaveAt(ts=outputs, t1=True),
                stepsize_controller=controller, max_steps=self.max_steps, adjoint=self._adjoint,
                event=event, throw=False,
            )
            # Outputs at a boundary come from the later segment: they see the dose given then.
            inside = (save_times >= ta) & (save_times <= tb)
            out = jnp.where(inside[:, None], solution.ys[:-1], out)
            result = solution.result
            code = jnp.where(
                result == diffrax.RESULTS.successful, OK,
                jnp.where(result == diffrax.RESULTS.event_occurred, BLOWUP, STEPS_EXHAUSTED),
            )
            reached = jnp.max(jnp.where(jnp.isfinite(solution.ts), solution.ts, -jnp.inf))
            t_stop = jnp.where((status == OK) & (code != OK), reached, t_stop)
            status = jnp.where(status == OK, code, status)
            return (solution.ys[-1], out, status, t_stop), None

        n_segments = plan.jumps.shape[0]
        initial = (y0, jnp.zeros((save_times.shape[0], y0.shape[0])), jnp.asarray(OK), boundaries[-1])
        (_, states, status, t_stop), _ = jax.lax.scan(segment, initial, jnp.arange(n_segments))
        segment_of = jnp.clip(jnp.searchsorted(boundaries, save_times, side="right") - 1, 0, n_segments - 1)
        levels = plan.levels[segment_of]
        observe = jax.vmap(lambda t, y, u: compiled.observe(t, y, theta, u[:n_inputs]))
        return states, observe(save_times, states, levels), status, t_stop

    def batched(self, theta_axis: int | None, y0_axis: int | None, plan_axis: int | None):
        """The jitted solve, vmapped over the leading axis of the arguments whose axis is 0."""
        import jax

        key = (theta_axis, y0_axis, plan_axis)
        if key not in self._batched:
            function = self.solve
            if any(axis is not None for axis in key):
                function = jax.vmap(function, in_axes=key)
            self._batched[key] = jax.jit(function)
        return self._batched[key]

    def __call__(self, theta: Any, y0: Any, plan: Plan) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Solve, batching over any argument with an extra leading axis; results as NumPy arrays."""
        # NumPy arrays go to the jitted function as they are: one transfer per call, not one per array.
        theta = np.asarray(theta, dtype=np.float64)
        y0 = np.asarray(y0, dtype=np.float64)
        plan = Plan(*(np.asarray(a, dtype=np.float64) for a in plan))
        axes = (0 if theta.ndim == 2 else None, 0 if y0.ndim == 2 else None, 0 if plan.save_times.ndim == 2 else None)
        outputs = self.batched(*axes)(theta, y0, plan)
        return tuple(np.asarray(o) for o in outputs)  # type: ignore[return-value]


def step_controller(rtol: float, atol: float, step_ts: Any = None, end: Any = None, budget: int | None = None) -> Any:
    """The adaptive step-size controller of every solve: PID on the local error estimate, stepping
    onto ``step_ts`` when given, and failing after :data:`MAX_REJECTED_IN_ROW` rejected steps in a row,
    after :data:`MAX_STALLED_IN_ROW` steps in a row at round-off size, and, given the solve's
    ``end`` and step ``budget``, when its pace cannot reach the end within the budget.

    A step is rejected when its error estimate exceeds the tolerances or an implicit method's
    Newton iteration diverges, and the next try is at most 0.9 of its size. A solve whose steps
    keep failing (a parameter set that drives the system to a blow-up, or into a region where
    Newton cannot converge) otherwise shrinks its step towards round-off and spends the whole
    step budget there: on Crauste_CellSystems2017 such solves cost 0.57 s each, where AMICI's
    CVODES, which gives up a step after 7 failed error tests or 10 failed Newton iterations,
    reports the failure in a few milliseconds; with the limit four of its six failing start points
    fail in 0.02-0.03 s and two in 0.3-0.4 s (their steps reach round-off, where a step that
    changes nothing is accepted). The limit is higher than CVODES's because a step across a
    discontinuity (a Heaviside term) at tight tolerances is rejected more than 10 times before it
    is small enough. Rejections before the first accepted step do not count either: they only
    shrink a first step guessed too large (counted, they stalled 4 of Boehm_JProteomeRes2014's 10
    converging starts near the optimum).

    A solve also fails after :data:`MAX_STALLED_IN_ROW` accepted steps in a row that advance time by
    less than :data:`STALLED_STEP` |t|: a step that small is at round-off, where t + h = t and an
    error estimate of 0 accepts a step that changes nothing; without the stop such a solve spent
    its whole step budget there (45 of 47 failing trial points of two Crauste_CellSystems2017
    starts, 0.29-0.62 s each without sensitivities; at that size 10,000 steps cannot advance t by
    1e-8 of itself, so no solve that can succeed is cut short).

    Given ``end`` and ``budget``, a solve that has taken :data:`PACE_CHECK_AFTER` of its budget
    (accepted and rejected steps) fails as soon as reaching ``end`` at its recent pace, the mean
    accepted step h (weights decaying by :data:`PACE_WEIGHT` per step), would take more than
    :data:`PACE_MARGIN` times the steps left: (end - t) / h > margin (budget - steps). Such a solve
    would spend its whole budget and fail anyway. On Elowitz_Nature2000 the trial points where
    the solve fails are oscillations sharpened by a steep Hill function: half the steps rejected,
    accepted ones of 1e-4 min with hundreds of minutes left, 10,000 steps spent in 0.5 s without
    sensitivities and 1.2-2.4 s with them (now 2,500 steps, 0.15 s and 0.3 s), where successful
    solves of the four shared PEtab problems (nominal and 40 Sobol points each) take at most 664
    steps in all their experiments. A pace is only a forecast: a solve can crawl through a slow
    phase and speed up after it. Checked after a tenth of the budget, the rule failed 18 trial
    points of one Crauste_CellSystems2017 start that succeed in 1,437 steps (NLL 262.09); after a
    quarter, no trial point of Crauste's starts 5 and 9 or Elowitz's starts 0, 1 and 7 fails that
    succeeds without it.
    """
    import diffrax

    controller = diffrax.PIDController(rtol=rtol, atol=atol)
    if step_ts is not None:
        controller = diffrax.ClipStepSizeController(controller, step_ts=step_ts)
    return _giving_up()(controller, MAX_REJECTED_IN_ROW, MAX_STALLED_IN_ROW, end, budget)


@lru_cache(maxsize=1)
def _giving_up() -> type:
    """The controller wrapper that declares a solve failed (see :func:`step_controller`), defined on
    first use: importing this module does not import diffrax."""
    import diffrax
    import jax.numpy as jnp

    class GivingUp(diffrax.AbstractAdaptiveStepSizeController):
        """Wraps an adaptive controller; the solve fails (``dt_min_reached``) after ``limit`` rejections in a
        row once a step has been accepted, after ``stall_limit`` accepted steps in a row shorter than
        STALLED_STEP |t|, or, with ``end`` and ``budget``, when its pace cannot reach ``end`` within the
        budget. Its state adds the two counts, whether a step was accepted, the steps taken and the pace."""

        controller: Any
        limit: int
        stall_limit: int
        end: Any = None
        budget: int | None = None

        @property
        def rtol(self) -> Any:
            return self.controller.rtol

        @property
        def atol(self) -> Any:
            return self.controller.atol

        @property
        def norm(self) -> Any:
            return self.controller.norm

        def wrap(self, direction: Any) -> Any:
            return GivingUp(self.controller.wrap(direction), self.limit, self.stall_limit, self.end, self.budget)

        def init(self, terms: Any, t0: Any, t1: Any, y0: Any, dt0: Any, args: Any, func: Any,
                 error_order: Any) -> Any:
            t1, state = self.controller.init(terms, t0, t1, y0, dt0, args, func, error_order)
            return t1, (state, jnp.asarray(0), jnp.asarray(False), jnp.asarray(0), jnp.asarray(0), jnp.asarray(0.0))

        def adapt_step_size(self, t0: Any, t1: Any, y0: Any, y1_candidate: Any, args: Any, y_error: Any,
                            error_order: Any, controller_state: Any) -> Any:
            state, rejected, stepped_before, stalled, steps, pace = controller_state
            keep, next_t0, next_t1, jumped, state, result = self.controller.adapt_step_size(
                t0, t1, y0, y1_candidate, args, y_error, error_order, state)
            rejected = jnp.where(keep, 0, rejected + 1)
            stepped = stepped_before | keep
            h = jnp.abs(t1 - t0)
            stalled = jnp.where(keep, jnp.where(h <= STALLED_STEP * jnp.abs(t0), stalled + 1, 0), stalled)
            failed = (stepped & (rejected >= self.limit)) | (stalled >= self.stall_limit)
            if self.end is not None and self.budget is not None:  # the pace is kept only where it is checked
                steps = steps + 1
                recent = jnp.where(stepped_before, PACE_WEIGHT * pace + (1.0 - PACE_WEIGHT) * h, h)
                pace = jnp.where(keep, recent, pace)
                needed = jnp.abs(self.end - next_t0) / jnp.maximum(pace, jnp.finfo(pace.dtype).tiny)
                failed = failed | ((steps >= PACE_CHECK_AFTER * self.budget) & (needed > PACE_MARGIN * (self.budget - steps)))
            result = diffrax.RESULTS.where(failed, diffrax.RESULTS.dt_min_reached, result)
            return keep, next_t0, next_t1, jumped, (state, rejected, stepped, stalled, steps, pace), result

    return GivingUp


def finite_tangents(rhs: Any) -> Any:
    """``rhs(t, y, theta, u)`` with the same values, whose derivatives are 0 where f or the state is not finite.

    Sensitivities through an implicit step differentiate each stage's Newton root by the implicit
    function theorem: a linear solve with the stage Jacobian I - h gamma df/dy at the root, for
    every stage of every step, also of a step that is rejected. Where Newton diverged in such a
    step (a trial step too long, a state pushed out of the model's domain) the root is not
    finite, so are f and its derivatives there, and the linear solve raises although the step is
    thrown away and the solve succeeds: on Elowitz_Nature2000, 86 of the 722 trial points of a
    20-start calibration had a finite NLL and no derivatives (NLLs of 130-570 among them), 9 of
    the 20 starts ended at their first point, and the optimiser shrank its trust region at the
    others. With derivatives of 0 at such a state the discarded step does no harm: at five such
    points the gradient now agrees with central differences of the NLL to 1e-10 relative.
    Wherever f and the state are finite nothing changes. The mask depends on the primal values
    only, so the derivative stays linear in the tangents and reverse mode still transposes it
    (a mask on the tangents would not), but there the transposed map multiplies the masked
    entries' non-finite coefficients by 0, which is NaN: only forward mode, which the
    calibration and the samplers use, is cleaned.
    """
    import jax
    import jax.numpy as jnp

    @jax.custom_jvp
    def finite(t: Any, y: Any, theta: Any, u: Any) -> Any:
        return rhs(t, y, theta, u)

    @finite.defjvp
    def finite_jvp(primals: tuple, tangents: tuple) -> tuple[Any, Any]:
        value, derivative = jax.jvp(rhs, primals, tangents)
        defined = jnp.all(jnp.isfinite(primals[1]), axis=-1, keepdims=True) & jnp.isfinite(value)
        return value, jnp.where(defined, derivative, 0.0)

    return finite


@lru_cache(maxsize=64)
def implicit_solver(rtol: float, atol: float, kind: Any = None) -> Any:
    """An L-stable implicit Runge-Kutta solver (Kvaerno5 unless ``kind`` says otherwise) for stiff systems.

    Its stage equations are solved by full Newton: diffrax's default chord iteration rejected
    about half the steps on stiff PEtab problems (Elowitz: 4374 steps, 2228 rejected, against 502
    with Newton; solves 6-7x faster on Boehm). Newton stops as stiff integrators do (Hairer &
    Wanner IV.8): when its contraction rate theta = |dy_k| / |dy_(k-1)| predicts an error
    theta/(1 - theta) |dy_k| left below kappa = 1/10 of the step's tolerances (optimistix's
    kappa 1e-2 of :data:`NEWTON_TOLERANCE_FACTOR` times them), and it is declared diverged when
    theta > 2. A stop on the residual itself below the step's absolute tolerance (optimistix's
    default) asks for digits that round-off hides when states are large, and each such
    non-convergence is a rejected step: on Crauste_CellSystems2017 (effector cells reaching
    1e8, a late-effector rate of -2e6) half the steps were rejected, a third of the points
    where a multi-start failed are solved now (within the same 10,000 steps), and a typical
    solve takes 7.6 ms against 22 ms, its NLL unchanged.
    """
    import diffrax
    import optimistix

    root_finder = optimistix.Newton(rtol=NEWTON_TOLERANCE_FACTOR * rtol, atol=NEWTON_TOLERANCE_FACTOR * atol,
                                    cauchy_termination=False)
    return (kind or diffrax.Kvaerno5)(root_finder=root_finder)


@lru_cache(maxsize=64)
def simulator(model: Model, method: str = EXPLICIT_METHOD, rtol: float = 1e-6, atol: float = 1e-9,
              adjoint: Adjoint = "reverse") -> Simulator:
    """A cached :class:`Simulator`: one compilation per model, solver and tolerance."""
    return Simulator(model, method, rtol=rtol, atol=atol, adjoint=adjoint)


def is_stiff(model: Model, theta: np.ndarray, y0: np.ndarray, span: float) -> bool:
    """Whether an explicit solver would need more than ``STIFFNESS_STEPS`` steps for stability.

    Uses the Jacobian df/dx at the initial state (of the first batch member): an explicit
    Runge-Kutta step is stable for h * |lambda| below about 3, so about |lambda_max| * span / 3
    steps are needed, where -lambda_max is the most negative real part of an eigenvalue. Systems
    that only become stiff later are caught by the fallback in :func:`simulate`.
    """
    import jax.numpy as jnp

    compiled = model.compiled
    theta_0 = jnp.asarray(np.atleast_2d(theta)[0])
    y0_0 = jnp.asarray(np.atleast_2d(y0)[0])
    jacobian = np.asarray(compiled.jacobian(0.0, y0_0, theta_0, jnp.zeros(compiled.n_inputs)))
    if not np.all(np.isfinite(jacobian)):
        return False
    fastest = -min(float(np.min(np.linalg.eigvals(jacobian).real)), 0.0)
    return fastest * span / 3.0 > STIFFNESS_STEPS


def explicit_method(rtol: float) -> str:
    """The explicit solver ``method="auto"`` starts with: Tsit5, or Dopri8 for tight tolerances.

    A method of order p needs about rtol^(-1/p) steps, so at rtol below 1e-7 the 8th-order
    Dormand-Prince method takes a third of Tsit5's steps on smooth problems.
    """
    return TIGHT_EXPLICIT_METHOD if rtol < TIGHT_RTOL else EXPLICIT_METHOD


def solve_batch(
    model: Model, theta: np.ndarray, y0: np.ndarray, plan: Plan, method: str = "auto", rtol: float = 1e-6,
    atol: float = 1e-9,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Solve with the chosen (or automatic) method, batched over any argument with a leading axis.

    Returns ``(states, observables, status, t_stop)`` as :meth:`Simulator.__call__` does, without
    raising for failed members. With ``method="auto"`` the explicit method is tried first (unless
    the Jacobian at the first member's start says the system is stiff) and the members that run
    out of steps are solved again with the implicit method.
    """
    if method != "auto":
        return simulator(model, method, rtol, atol)(theta, y0, plan)
    span = float(np.max(np.asarray(plan.boundaries)[..., -1] - np.asarray(plan.boundaries)[..., 0]))
    if is_stiff(model, theta, y0, span):
        return simulator(model, STIFF_METHOD, rtol, atol)(theta, y0, plan)
    states, observables, status, t_stop = simulator(model, explicit_method(rtol), rtol, atol)(theta, y0, plan)
    exhausted = np.atleast_1d(status) == STEPS_EXHAUSTED
    if not exhausted.any():
        return states, observables, status, t_stop
    if np.ndim(status) == 0:
        return simulator(model, STIFF_METHOD, rtol, atol)(theta, y0, plan)
    # Only the members that ran out of steps are solved again, in one smaller batch.
    rows = np.flatnonzero(exhausted)

    theta_axis, y0_axis = np.ndim(theta) == 2, np.ndim(y0) == 2
    plan_batched = np.ndim(plan.save_times) == 2
    again = simulator(model, STIFF_METHOD, rtol, atol)(
        theta[rows] if theta_axis else theta, y0[rows] if y0_axis else y0,
        Plan(*(np.asarray(a)[rows] for a in plan)) if plan_batched else plan,
    )
    if not (theta_axis or y0_axis or plan_batched):
        return again
    results = [np.array(a, copy=True) for a in (states, observables, status, t_stop)]
    for whole, part in zip(results, again):
        whole[rows] = part
    return tuple(results)  # type: ignore[return-value]


def _solve_checked(
    model: Model, theta: np.ndarray, y0: np.ndarray, plan: Plan, method: str, rtol: float, atol: float,
    labels: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Solve with the chosen (or automatic) method; raise :class:`SolverError` if it fails."""
    states, observables, status, t_stop = solve_batch(model, theta, y0, plan, method, rtol, atol)
    failed = np.flatnonzero(np.atleast_1d(status) != OK)
    if failed.size:
        i = int(failed[0])
        code, when = int(np.atleast_1d(status)[i]), float(np.atleast_1d(t_stop)[i])
        where = "" if np.ndim(status) == 0 else f" in {labels[i] if labels else f'batch member {i}'}"
        if code == BLOWUP:
            raise SolverError(
                f"the solution blew up (a state became non-finite or exceeded {BLOWUP_FACTOR:.0e} times its start) "
                f"at t={when:.6g}{where}; check the parameters and initial state"
            )
        raise SolverError(
            f"the solver ({method}) could not advance past t={when:.6g}{where}: the state may leave the model's "
            "domain there (a root or log of a negative number is NaN), or the system is too stiff or the "
            "tolerances too tight (try --method kvaerno5 or a looser --rtol)"
        )
    return states, observables


def simulate(
    model: Model,
    params: Mapping[str, float] | np.ndarray | None = None,
    y0: Mapping[str, float] | np.ndarray | None = None,
    times: Sequence[float] | np.ndarray = (),
    inputs: Sequence[Input] = (),
    *,
    doses: Sequence[Bolus] = (),
    start: float | None = None,
    method: Method = "auto",
    rtol: float = 1e-6,
    atol: float = 1e-9,
) -> Solution:
    """Solve ``model`` from ``y0`` and report states and observables at ``times``.

    ``params`` maps names to values (missing ones take the model's defaults) or is an array in
    model order, (P,) or (B, P) for a batch of parameter sets; ``y0`` likewise maps states to
    values (default: the model's initial expressions) or is (n,) or (B, n). Doses jump a state;
    inputs are piecewise-constant signals or infusions (see :class:`biotwin.data.Input`).
    """
    theta = _parameter_array(model, params)
    initial = _initial_array(model, y0, theta)
    plan = make_plan(model, times, start=start, doses=doses, inputs=inputs)
    states, observables = _solve_checked(model, theta, initial, plan, method, rtol, atol)
    return Solution(plan.save_times, states, observables, model.states, model.observable_names)


def simulate_dataset(
    model: Model,
    params: Mapping[str, float] | np.ndarray | None = None,
    dataset: Dataset | None = None,
    y0: Mapping[str, float] | None = None,
    *,
    grid: int | None = None,
    method: Method = "auto",
    rtol: float = 1e-6,
    atol: float = 1e-9,
) -> dict[str, Solution]:
    """Simulate every experiment of ``dataset`` at its measurement times, in one batched solve.

    Each experiment uses its doses, inputs and overrides (of parameters, or of states' initial
    values) on top of ``params`` and ``y0``. With ``grid``, each experiment is reported at that
    many evenly spaced times from its start to its last measurement instead (for smooth plots).
    """
    if dataset is None:
        raise DataError("simulate_dataset needs a dataset")
    base = _parameter_array(model, params)
    names = model.parameter_names
    thetas, initials = [], []
    for experiment in dataset:
        unknown = [k for k in experiment.overrides if k not in names and k not in model.states]
        if unknown:
            raise ModelError(
                f"experiment '{experiment.name}' overrides '{unknown[0]}', which is neither a parameter nor a state "
                f"of the model (parameters: {', '.join(names)}; states: {', '.join(model.states)})"
            )
        theta = base.copy()
        for key, value in experiment.overrides.items():
            if key in names:
                theta[names.index(key)] = value
        start = dict(y0 or {})
        start.update({k: v for k, v in experiment.overrides.items() if k in model.states})
        thetas.append(theta)
        initials.append(model.state_vector(start, dict(zip(names, theta))))
    output_times = [e.times if grid is None else np.linspace(e.start, e.times[-1], grid) for e in dataset]
    n_segments = max(plan_for_experiment(model, e, t).jumps.shape[0] for e, t in zip(dataset, output_times))
    n_times = max(t.size for t in output_times)
    plans = []
    for experiment, times in zip(dataset, output_times):
        # Pad every plan to one shape (repeated last time, zero-length segments) to batch them.
        plan = plan_for_experiment(model, experiment, times, n_segments)
        padded = np.concatenate([plan.save_times, np.full(n_times - times.size, times[-1])])
        plans.append(plan._replace(save_times=padded))
    stacked = Plan(*(np.stack(parts) for parts in zip(*plans)))
    states, observables = _solve_checked(
        model, np.stack(thetas), np.stack(initials), stacked, method, rtol, atol,
        labels=[f"experiment '{e.name}'" for e in dataset],
    )
    return {
        e.name: Solution(t, states[i, : t.size], observables[i, : t.size], model.states, model.observable_names)
        for i, (e, t) in enumerate(zip(dataset, output_times))
    }


def _parameter_array(model: Model, params: Mapping[str, float] | np.ndarray | None) -> np.ndarray:
    if params is None or isinstance(params, Mapping):
        return model.parameter_vector(params)
    theta = np.asarray(params, dtype=float)
    if theta.shape[-1:] != (len(model.parameters),) or theta.ndim > 2:
        raise ModelError(
            f"parameter array has shape {theta.shape}; expected ({len(model.parameters)},) or (batch, "
            f"{len(model.parameters)}) in the order {', '.join(model.parameter_names)}"
        )
    return theta


def _initial_array(model: Model, y0: Mapping[str, float] | np.ndarray | None, theta: np.ndarray) -> np.ndarray:
    if y0 is None or isinstance(y0, Mapping):
        reference = theta if theta.ndim == 1 else theta[0]
        return model.state_vector(y0, dict(zip(model.parameter_names, reference)))
    initial = np.asarray(y0, dtype=float)
    if initial.shape[-1:] != (len(model.states),) or initial.ndim > 2:
        raise ModelError(
            f"initial state array has shape {initial.shape}; expected ({len(model.states)},) or (batch, "
            f"{len(model.states)}) in the order {', '.join(model.states)}"
        )
    return initial

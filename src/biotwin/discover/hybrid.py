"""Hybrid twins (universal differential equations): a mechanistic skeleton plus named neural terms.

A skeleton is a model whose right-hand sides may call neural terms, written ``NN<name>(inputs)``::

    dx/dt = a*x + NN1(x, y)        # prey growth is known, the interaction is not
    dy/dt = -c*y + NN2(x, y)

Each neural term is a small multilayer perceptron (equinox) of its inputs, each input divided by
the typical size of its state, and its output multiplied by the size of the term's best constant
value (a first least-squares fit with the terms as constants), so that networks work on the
scale of the problem. The networks' weights and the skeleton's parameters (kept inside their
bounds) are trained together on the whole trajectories of all experiments, with their doses and
inputs, through the same solver as every model (:class:`biotwin.simulate.Simulator`, exact
gradients, clipped Adam), by least squares on each observable in units of its spread (on the log
scale for data spanning decades, as :class:`biotwin.fit.LogScale` says), with prices on
non-negative states going below zero and on the terms' size. A curriculum over the time span
(the first third, then two thirds, then all of it) keeps the fit out of the poor minima that
oscillatory data make, and the networks start twice (near zero and at the best constant).

**Hidden states.** A state no measured observable depends on starts at the skeleton's initial
value (``I(0) = 0``; ``T(0) = T0`` with ``T0`` a bounded parameter, which is then trained), and
is known only through the skeleton's equations, which is why the skeleton must carry them.

**Distillation** turns the trained networks back into equations: each network is evaluated along
the trained trajectories (hidden states included), a term library of its inputs
(:func:`biotwin.discover.library.build_library`) is regressed on those values along a sparse
regularisation path, every combination of the sparse forms replaces the networks in the
skeleton, and each is refitted on the trajectories from several starts; the best information
criterion wins, so the coefficients answer to the data, not to the network.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import sympy

from biotwin.data import Dataset
from biotwin.errors import DataError, ModelError
from biotwin.model import Model

_NEURAL_CALL = re.compile(r"\b(NN[A-Za-z0-9_]*)\s*\(([^()]*)\)")
#: The curriculum: the shares of the time span trained on, in turn.
CURRICULUM = (1 / 3, 2 / 3, 1.0)
#: Training steps run in one compiled loop between two updates of the progress bar.
PROGRESS_EVERY = 25
#: Weight of the neural terms' squared size (in units of the data's rates) against the scaled residuals.
TERM_PENALTY = 1e-4


@dataclass(frozen=True)
class NeuralTerm:
    """A named neural term of a skeleton and the states it reads."""

    name: str
    inputs: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class Skeleton:
    """A model whose neural terms stand as symbols of their names (see the module)."""

    model: Model
    terms: tuple[NeuralTerm, ...]
    text: str = ""

    @classmethod
    def from_text(cls, text: str) -> Skeleton:
        """Parse a skeleton: model-language text in which ``NN<name>(state, ...)`` calls are neural terms."""
        terms: dict[str, tuple[str, ...]] = {}

        def placeholder(match: re.Match) -> str:
            name, inputs = match.group(1), tuple(s.strip() for s in match.group(2).split(",") if s.strip())
            if not inputs:
                raise ModelError(f"neural term {name}() reads no state; write e.g. {name}(x, y)")
            if terms.setdefault(name, inputs) != inputs:
                raise ModelError(f"neural term {name} is called with ({', '.join(inputs)}) and with "
                                 f"({', '.join(terms[name])}); one term reads one set of states")
            return name

        model = Model.from_text(_NEURAL_CALL.sub(placeholder, text))
        if not terms:
            raise ModelError("the skeleton has no neural term; write e.g. 'dx/dt = a*x + NN1(x, y)'")
        for name, inputs in terms.items():
            for state in inputs:
                if state not in model.states:
                    raise ModelError(f"neural term {name} reads {Model.unknown_message('state', state, model.states)}")
        return cls(model, tuple(NeuralTerm(n, i) for n, i in terms.items()), text)

    @classmethod
    def from_file(cls, path: str) -> Skeleton:
        """Read a skeleton file (the text of :meth:`from_text`)."""
        from pathlib import Path

        from biotwin.io.files import parse_file

        skeleton = parse_file(path, "skeleton file", cls.from_text)
        return cls(replace(skeleton.model, name=Path(path).stem), skeleton.terms, skeleton.text)

    @property
    def known_parameters(self) -> tuple[str, ...]:
        names = {t.name for t in self.terms}
        return tuple(p for p in self.model.parameter_names if p not in names)


@dataclass(frozen=True, eq=False)
class HybridDynamics:
    """The right-hand side and observables of a skeleton whose neural terms are networks.

    Its ``theta`` is a pytree ``{"theta": parameter vector (P,), "nets": network weights}``: at
    each state y the neural terms are evaluated and written into the parameter vector, and the
    skeleton's compiled equations do the rest, so a :class:`biotwin.simulate.Simulator` solves a
    hybrid model with doses, inputs and segments as it solves any model.

    A term is ``scale * MLP(y_in / magnitude_in)``: inputs divided by the typical size of their
    states, output in units of the term's typical size (``scale``, the size of its best constant
    value; see :func:`train_hybrid`), starting near zero.
    """

    skeleton: Skeleton
    static: Any  # the networks' non-array parts (equinox)
    columns: dict[str, np.ndarray]
    magnitude: np.ndarray
    scale: dict[str, float]

    @property
    def n_inputs(self) -> int:
        return len(self.skeleton.model.inputs)

    def term(self, nets: Any, name: str, y: Any) -> Any:
        """The neural term ``name`` at state y (n,)."""
        import equinox as eqx

        network = eqx.combine(nets, self.static)[name]
        inputs = y[..., self.columns[name]] / self.magnitude[self.columns[name]]
        return self.scale[name] * network(inputs)

    def along(self, nets: Any, name: str, X: Any) -> Any:
        """The neural term at each row of states X (N, n)."""
        import jax

        return jax.vmap(lambda y: self.term(nets, name, y))(X)

    def rhs(self, t: Any, y: Any, args: Any, u: Any) -> Any:
        return self.skeleton.model.compiled.rhs(t, y, self._with_terms(args, y), u)

    def observe(self, t: Any, y: Any, args: Any, u: Any) -> Any:
        return self.skeleton.model.compiled.observe(t, y, self._with_terms(args, y), u)

    def _with_terms(self, args: Any, y: Any) -> Any:
        model = self.skeleton.model
        theta = args["theta"]
        for term in self.skeleton.terms:
            theta = theta.at[model.parameter_names.index(term.name)].set(self.term(args["nets"], term.name, y))
        return theta


@dataclass(frozen=True, eq=False)
class HybridFit:
    """A trained hybrid model: the skeleton's parameter values, the networks and how well they fit.

    ``parameters`` holds every parameter of the skeleton that is not a neural term (trained or
    fixed); ``initial`` each experiment's initial state (hidden states from the skeleton's
    initial values at the trained parameters); ``states`` each experiment's trained trajectory
    of all states, hidden ones included, at its measurement times.
    """

    skeleton: Skeleton
    dynamics: HybridDynamics
    parameters: dict[str, float]
    nets: Any
    initial: dict[str, dict[str, float]]
    states: dict[str, np.ndarray]
    loss: float
    seconds: float

    def term_values(self, name: str, X: np.ndarray) -> np.ndarray:
        """The neural term ``name`` at states ``X`` (rows of all the model's states)."""
        import jax.numpy as jnp

        return np.asarray(self.dynamics.along(self.nets, name, jnp.asarray(X, dtype=float)))

    def simulate(self, dataset: Dataset) -> dict[str, np.ndarray]:
        """The trained hybrid model's observables (T, O) at the measurement times of each experiment of ``dataset``.

        Each experiment's doses, inputs and parameter overrides apply; states start where the
        experiment gives them (overrides, then first measurements), else at the skeleton's
        initial values. All experiments are solved in one batch.
        """
        import jax
        import jax.numpy as jnp

        from biotwin.likelihood import initial_function, stacked_plans
        from biotwin.simulate import OK, Simulator

        model = self.skeleton.model
        names = model.parameter_names
        thetas = np.array([[{**self.parameters, **experiment.overrides}.get(p, 0.0) for p in names]
                           for experiment in dataset], dtype=float)
        given, given_values = _given_initial_states(model, dataset)
        y0 = np.where(given, given_values, np.asarray(jax.vmap(initial_function(model))(jnp.asarray(thetas))))
        solve = Simulator(model, "tsit5", rtol=1e-6, atol=1e-8, dynamics=self.dynamics).solve
        batch = jax.jit(jax.vmap(solve, in_axes=({"theta": 0, "nets": None}, 0, 0)))
        _, observed, status, t_stop = batch({"theta": thetas, "nets": self.nets}, y0, stacked_plans(model, dataset))
        out = {}
        for k, experiment in enumerate(dataset):
            if int(status[k]) != OK:
                raise ModelError(f"the hybrid model fails in experiment '{experiment.name}' at t={float(t_stop[k]):g}")
            out[experiment.name] = np.asarray(observed[k, : experiment.times.size])
        return out


def _given_initial_states(model: Model, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Which initial states (E, n) the experiments give (overrides, first measurements) and their values."""
    from biotwin.likelihood import given_initial_values

    given = np.zeros((len(dataset), len(model.states)), dtype=bool)
    values = np.zeros(given.shape)
    for e, experiment in enumerate(dataset):
        for state, value in given_initial_values(model, experiment).items():
            given[e, model.states.index(state)], values[e, model.states.index(state)] = True, value
    return given, values


def _constant_terms(skeleton: Skeleton, dataset: Dataset) -> tuple[dict[str, float], Any]:
    """The best constant value of each neural term (known parameters at their starts) and the problem fitted.

    A constant is the crudest closed form; it sets the size each network works in, and one of
    the two places the networks start from.
    """
    from biotwin.fit import TrajectoryProblem
    from biotwin.model import Parameter

    model = skeleton.model
    names = [t.name for t in skeleton.terms]
    starts = tuple(Parameter(p.name, 0.0) if p.name in names else p for p in model.parameters)
    problem = TrajectoryProblem(replace(model, parameters=starts), dataset, max_free=len(names), weights="log")
    fitted = problem.fit(names, estimate_initial=False, max_evaluations=50)
    constants = {n: float(fitted.parameters[n]) if fitted.success and np.isfinite(fitted.rss) else 0.0 for n in names}
    return constants, problem


def measured_nowhere(model: Model, dataset: Dataset) -> tuple[str, ...]:
    """The states that no measured observable depends on: hidden states, known only through the model."""
    seen = set().union(*(o.expr.free_symbols for o in model.observables if o.name in dataset.observables))
    return tuple(s for s in model.states if sympy.Symbol(s) not in seen)


def train_hybrid(
    skeleton: Skeleton,
    dataset: Dataset,
    *,
    width: int = 16,
    depth: int = 2,
    steps: int = 600,
    learning_rate: float = 0.01,
    seed: int = 0,
    progress: Any = None,
) -> HybridFit:
    """Train the skeleton's parameters and neural terms on the trajectories (see the module).

    The loss is the mean squared residual of every measured observable in units of its spread,
    on the log scale for an observable whose positive measurements span more than two decades
    (a virus titre), plus a price on states that should stay non-negative going below zero and
    on the neural terms' size. ``steps`` Adam steps per stage of the curriculum, for each of the
    two starts of the networks (the lower final loss is kept). States that are
    never measured (hidden) start at the skeleton's initial values (``I(0) = 0`` or ``T(0) = T0``
    with ``T0`` a parameter, which is then trained), measured ones at their first measurement.
    """
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax
    from jax.flatten_util import ravel_pytree

    from biotwin import _jax  # noqa: F401
    from biotwin.descent import compiled_descent
    from biotwin.likelihood import initial_function
    from biotwin.objective import to_scale
    from biotwin.simulate import Simulator

    began = time.perf_counter()
    model = skeleton.model
    names = [t.name for t in skeleton.terms]
    for experiment in dataset:
        if experiment.times.size < 3:
            raise DataError(f"experiment '{experiment.name}' has {experiment.times.size} time points; "
                            "a hybrid twin needs at least 3")
    trained = [p for p in skeleton.known_parameters if not model.parameter(p).fixed]
    unbounded = [p for p in trained if not (np.isfinite(model.parameter(p).lower) and np.isfinite(model.parameter(p).upper))]
    if unbounded:
        raise ModelError(f"parameter '{unbounded[0]}' of the skeleton needs bounds (e.g. '{unbounded[0]} in [0, 10]')")
    if progress is not None:
        progress(0, 1, "the best constant terms")
    constants, problem = _constant_terms(skeleton, dataset)
    data = problem.padded()
    observable_index = np.array([model.observable_names.index(o) for o in problem.observables])
    given, given_values = _given_initial_states(model, dataset)

    # Where the constant-term model goes sets the typical size of every state, hidden ones included.
    base = np.array([constants.get(p.name, p.value) for p in model.parameters])
    thetas = np.where(data.override_mask, data.override_value, base)
    initial_states = initial_function(model)
    y0_start = np.where(given, given_values, np.asarray(jax.vmap(initial_states)(jnp.asarray(thetas))))
    states0, _, status0, _ = Simulator(model, "tsit5", rtol=1e-6, atol=1e-8)(thetas, y0_start, data.plans)
    states0 = np.where(status0[:, None, None] == 0, states0, np.nan)
    visited = np.concatenate([np.abs(states0).reshape(-1, len(model.states)), np.abs(y0_start)])
    magnitude = np.nanmax(np.where(np.isfinite(visited), visited, np.nan), axis=0)
    magnitude = np.where(np.isfinite(magnitude) & (magnitude > 0), magnitude, 1.0)
    span = float(np.max(data.plans.boundaries[:, -1] - data.plans.boundaries[:, 0]))
    users = {n: [k for k, e in enumerate(model.rhs) if sympy.Symbol(n) in e.free_symbols] for n in names}
    # A term's size: its best constant, or else the typical rate of the states whose equations use it.
    scale = {n: abs(constants[n]) if constants[n] != 0 else (float(np.max(magnitude[users[n]])) / span if users[n] else 1.0)
             for n in names}
    dynamics_columns = {t.name: np.array([model.states.index(s) for s in t.inputs]) for t in skeleton.terms}

    keys = jax.random.split(jax.random.PRNGKey(seed), len(names))
    nets = {}
    for key, term in zip(keys, skeleton.terms):
        mlp = eqx.nn.MLP(len(term.inputs), "scalar", width, depth, activation=jax.nn.softplus, key=key,
                         dtype=jnp.float64)
        nets[term.name] = eqx.tree_at(lambda m: m.layers[-1].weight, mlp, 0.1 * mlp.layers[-1].weight)
    static = eqx.filter(nets, eqx.is_array, inverse=True)
    dynamics = HybridDynamics(skeleton, static, dynamics_columns, magnitude, scale)

    # Trained parameters stay inside their bounds: p = lower + (upper - lower) s(z), on the log
    # scale (of p, lower and upper) for parameters searched on a log scale.
    logarithmic = np.array([model.parameter(p).scale == "log10" for p in trained], dtype=bool)

    def searched(field: str) -> np.ndarray:
        return np.array([to_scale(getattr(model.parameter(p), field), "log" if log else "lin")
                         for p, log in zip(trained, logarithmic)], dtype=float)

    lower, upper = searched("lower"), searched("upper")
    share = np.clip((searched("value") - lower) / (upper - lower),
                    1e-3, 1 - 1e-3)
    start = {"known": jnp.asarray(np.log(share / (1 - share))), "nets": eqx.filter(nets, eqx.is_array)}
    flat, unravel = ravel_pytree(start)
    trained_index = jnp.asarray([model.parameter_names.index(p) for p in trained], dtype=int)

    def known_values(params: Any) -> Any:
        value = jnp.asarray(lower) + jnp.asarray(upper - lower) * jax.nn.sigmoid(params["known"])
        return jnp.where(jnp.asarray(logarithmic), jnp.exp(value), value)

    nonnegative = jnp.asarray(np.all(given_values >= 0, axis=0) & np.all(np.nan_to_num(states0, nan=0.0) >= 0, axis=(0, 1)))

    simulator = Simulator(model, "tsit5", rtol=1e-6, atol=1e-8, max_steps=8192, dynamics=dynamics)
    solve_all = jax.vmap(simulator.solve, in_axes=({"theta": 0, "nets": None}, 0, 0))
    plans = type(data.plans)(*(jnp.asarray(a) for a in data.plans))
    override_mask, override_value = jnp.asarray(data.override_mask), jnp.asarray(data.override_value)
    given_j, given_values_j = jnp.asarray(given), jnp.asarray(given_values)
    target, seen_j, weights_j = jnp.asarray(data.values), jnp.asarray(data.seen), jnp.asarray(data.weights)
    save_times = plans.save_times
    base_j = jnp.asarray(base)

    def solved(params: Any) -> tuple[Any, Any, Any]:
        theta = base_j.at[trained_index].set(known_values(params))
        thetas = jnp.where(override_mask, override_value, theta)
        y0 = jnp.where(given_j, given_values_j, jax.vmap(initial_states)(thetas))
        states, observed, _, _ = solve_all({"theta": thetas, "nets": params["nets"]}, y0, plans)
        return states, observed[..., observable_index], y0

    def loss(weights: Any, horizon: Any) -> Any:
        params = unravel(weights)
        states, predicted, _ = solved(params)
        # A failed solve leaves non-finite states: they are replaced before any arithmetic (a
        # where() after the arithmetic would still pass NaN gradients) and priced below.
        failed = ~jnp.isfinite(predicted)
        states = jnp.where(jnp.isfinite(states), states, 0.0)
        predicted = jnp.where(failed, 0.0, predicted)
        predicted = data.log_scale.transform(predicted, jnp)
        use = seen_j & (save_times[..., None] <= horizon)
        residual = jnp.where(use, jnp.where(failed, 1e3, (predicted - target) * weights_j), 0.0)
        count = jnp.maximum(jnp.sum(use), 1.0)
        total = jnp.sum(residual**2)
        inside = (save_times <= horizon)[..., None]
        below = jnp.where(inside & nonnegative, jnp.minimum(states, 0.0) / jnp.asarray(magnitude), 0.0)
        total = total + 100.0 * jnp.sum(below**2)
        # The skeleton first: a small price on the neural terms' size along the trajectory, so
        # that what the known terms can explain is not left to the networks.
        rows = states.reshape(-1, states.shape[-1])
        for name in names:
            size = dynamics.along(params["nets"], name, rows) / scale[name]
            total = total + TERM_PENALTY * jnp.sum(jnp.where(inside.ravel(), size, 0.0) ** 2)
        return total / count

    # Two starts of the networks: near zero, and at the best constant (the last layer's bias).
    # Neither always wins: a constant that balances a growth term is a fixed point an oscillator's
    # training does not leave (lynx-hare), while from zero a network can settle on a look-alike
    # of its term (x^2 for x*y on a short Lotka-Volterra record). The lower final loss decides.
    at_constant = {**start, "nets": {
        name: eqx.tree_at(lambda m: m.layers[-1].bias, network, network.layers[-1].bias + constants[name] / scale[name])
        for name, network in start["nets"].items()}}
    value_and_gradient = jax.jit(jax.value_and_grad(loss))
    # Clipped: near a blow-up one gradient can be astronomically large, and Adam would then take
    # thousands of steps to forget it (its second moment) and stand still meanwhile.
    optimiser = optax.chain(optax.clip_by_global_norm(1.0),
                            optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=0.1)))
    descend = compiled_descent(value_and_gradient, optimiser)
    t0 = float(np.min(data.plans.boundaries[:, 0]))
    total_steps = steps * len(CURRICULUM) * 2
    done = 0
    best: tuple[float, Any] | None = None
    for first in (flat, ravel_pytree(at_constant)[0]):
        weights = jnp.asarray(first)
        for share in CURRICULUM:
            horizon = jnp.asarray(t0 + share * span)
            state = optimiser.init(weights)
            for begin in range(0, steps, PROGRESS_EVERY):
                count = min(PROGRESS_EVERY, steps - begin)
                weights, state, value = descend(weights, state, count, horizon)
                done += count
                if progress is not None:
                    progress(done, total_steps, f"loss {float(value):.4g} on {share:.0%} of the span")
        value = float(value_and_gradient(weights, jnp.asarray(t0 + span))[0])
        if np.isfinite(value) and (best is None or value < best[0]):
            best = (value, weights)
    if best is None:
        raise ModelError("the hybrid model could not be trained: its solve fails on the data; "
                         "check the skeleton's signs and starting values")
    final, weights = best
    params = unravel(weights)
    states, _, y0 = jax.jit(solved)(params)
    values_known = {p: float(model.parameter(p).value) for p in skeleton.known_parameters}
    values_known.update({p: float(v) for p, v in zip(trained, np.asarray(known_values(params)))})
    return HybridFit(
        skeleton, dynamics, values_known, params["nets"],
        initial={e.name: dict(zip(model.states, map(float, y0[k]))) for k, e in enumerate(dataset)},
        states={e.name: np.asarray(states[k, : e.times.size]) for k, e in enumerate(dataset)},
        loss=final, seconds=time.perf_counter() - began,
    )


@dataclass(frozen=True, eq=False)
class Distilled:
    """Closed forms of the neural terms (with their refitted coefficients) and the skeleton with them, refitted on the trajectories."""

    expressions: dict[str, sympy.Expr]
    model: Model
    fit: Any  # biotwin.fit.Fit of the refit

    def text(self, name: str, digits: int = 4) -> str:
        """The closed form of the neural term ``name`` with its coefficients to ``digits`` significant digits."""
        return str(self.expressions[name].evalf(digits))


#: Refit starts per distilled candidate: the hybrid's values and random points around them.
REFIT_STARTS = 6


def _refit_starts(model: Model, values: Mapping[str, float], count: int,
                  rng: np.random.Generator) -> list[dict[str, float]]:
    """``count`` starting points for a refit of the parameters in ``values``: those values, then random ones.

    A bounded parameter is drawn uniformly within its bounds (on the log scale where it is
    searched on one), an unbounded coefficient c log-uniformly in [c/3, 3c]: a network's
    estimate can be off by a factor, and a model with two similar rates (a clearance and a
    death rate) has a second minimum with the two swapped.
    """
    starts = [dict(values)]
    for _ in range(count - 1):
        start = {}
        for name, value in values.items():
            p = model.parameter(name)
            if np.isfinite(p.lower) and np.isfinite(p.upper):
                start[name] = (float(np.exp(rng.uniform(np.log(p.lower), np.log(p.upper)))) if p.scale == "log10"
                               else float(rng.uniform(p.lower, p.upper)))
            else:
                start[name] = value * float(np.exp(rng.uniform(-np.log(3), np.log(3))))
        starts.append(start)
    return starts


def distill(hybrid: HybridFit, dataset: Dataset, *, families: Sequence[str] = ("constant", "linear", "mass_action"),
            max_terms: int = 3, criterion: str = "bic", starts: int = REFIT_STARTS, seed: int = 0) -> Distilled:
    """Replace each neural term by a sparse closed form of its inputs, chosen on the trajectories.

    Each term is sampled along the trained model's trajectories of every experiment (hidden
    states included) and a regularisation path of sparse fits of a term library is built on those
    values. Every combination of supports with at most ``max_terms`` terms per neural term is
    put into the skeleton, refitted on the trajectories of all experiments from ``starts``
    starting points (:func:`_refit_starts`; the best fit counts), and the one with the best
    ``criterion`` (BIC or AICc of the trajectory fit) wins: the networks propose, the data
    decide. Coefficients become parameters ``<term>_<k>``.
    """
    import itertools

    from biotwin.discover.library import build_library
    from biotwin.discover.sparse import path
    from biotwin.fit import TrajectoryProblem
    from biotwin.model import Parameter

    rng = np.random.default_rng(seed)
    skeleton = hybrid.skeleton
    model = skeleton.model
    X = np.concatenate(list(hybrid.states.values()))
    X = X[np.all(np.isfinite(X), axis=1)]
    options: list[list[tuple[tuple[sympy.Expr, float], ...]]] = []
    for term in skeleton.terms:
        columns = [model.states.index(s) for s in term.inputs]
        library = build_library(term.inputs, X[:, columns], list(families))
        supports = [s for s in path(library.evaluate(X[:, columns]), hybrid.term_values(term.name, X))
                    if 0 < s.n_terms <= max_terms]
        if not supports:
            raise ModelError(f"no sparse closed form of at most {max_terms} terms for {term.name}; raise max_terms")
        options.append([tuple((library.terms[i].expr, float(s.coefficients[i])) for i in s.indices) for s in supports])
    kept = [replace(p, value=hybrid.parameters[p.name]) for p in model.parameters if p.name in skeleton.known_parameters]
    # One library model holds every closed form any candidate uses, each with its own coefficient
    # (0 unless the candidate uses it): it is compiled once, and each candidate is a choice of
    # which coefficients its refit frees. Compiling each candidate's model apart took most of the time.
    coefficient: dict[tuple[int, int], str] = {}
    substitutions: dict[sympy.Symbol, sympy.Expr] = {}
    forms: list[list[sympy.Expr]] = []
    for t, (term, supports) in enumerate(zip(skeleton.terms, options)):
        used = list(dict.fromkeys(expr for support in supports for expr, _ in support))
        forms.append(used)
        coefficient.update({(t, i): f"{term.name}_{i}" for i in range(len(used))})
        substitutions[sympy.Symbol(term.name)] = sympy.Add(*(sympy.Symbol(coefficient[(t, i)]) * expr
                                                             for i, expr in enumerate(used)))
        options[t] = [tuple((used.index(expr), value) for expr, value in support) for support in supports]
    library_model = replace(
        model, rhs=tuple(sympy.sympify(e).subs(substitutions) for e in model.rhs),
        parameters=(*kept, *(Parameter(name, 0.0) for name in coefficient.values())),
    )
    problem = TrajectoryProblem(library_model, dataset, max_free=len(library_model.free_parameter_names), weights="log")
    trained = [p.name for p in kept if not p.fixed]
    best: tuple[float, Distilled] | None = None
    for choice in itertools.product(*options):
        values = {p: hybrid.parameters[p] for p in trained}
        values.update({coefficient[(t, i)]: value for t, pieces in enumerate(choice) for i, value in pieces})
        fits = [problem.fit(list(start), start=start) for start in _refit_starts(library_model, values, starts, rng)]
        refit = min(fits, key=lambda f: f.rss if f.success and np.isfinite(f.rss) else np.inf)
        score = refit.bic if criterion == "bic" else refit.aicc
        if refit.success and np.isfinite(score) and (best is None or score < best[0]):
            best = (score, _distilled(skeleton, kept, forms, choice, coefficient, refit))
    if best is None:
        raise ModelError("no distilled model could be refitted on the trajectories; train the hybrid model longer")
    return best[1]


def _distilled(skeleton: Skeleton, kept: Sequence[Any], forms: Sequence[Sequence[sympy.Expr]],
               choice: Sequence[tuple[tuple[int, float], ...]], coefficient: Mapping[tuple[int, int], str],
               refit: Any) -> Distilled:
    """The skeleton with the closed forms ``choice`` picks, at the coefficients of ``refit`` (a fit of the library model).

    ``forms[t]`` are the closed forms of neural term t the library model holds, and ``choice[t]``
    the (form index, starting value) pairs of this candidate; the coefficients become parameters
    ``<term>_<k>``, k counting the candidate's forms of that term.
    """
    from biotwin.model import Parameter

    model = skeleton.model
    parameters = [replace(p, value=refit.parameters[p.name]) for p in kept]
    renamed = {p.name: p.name for p in kept}
    substitutions, expressions = {}, {}
    for t, (term, pieces) in enumerate(zip(skeleton.terms, choice)):
        symbols = [sympy.Symbol(f"{term.name}_{k}") for k in range(len(pieces))]
        for symbol, (i, _) in zip(symbols, pieces):
            renamed[coefficient[(t, i)]] = str(symbol)
            parameters.append(Parameter(str(symbol), refit.parameters[coefficient[(t, i)]]))
        substitutions[sympy.Symbol(term.name)] = sympy.Add(*(s * forms[t][i] for s, (i, _) in zip(symbols, pieces)))
        expressions[term.name] = sympy.Add(*(refit.parameters[coefficient[(t, i)]] * forms[t][i] for i, _ in pieces))
    distilled = replace(model, rhs=tuple(sympy.sympify(e).subs(substitutions) for e in model.rhs),
                        parameters=tuple(parameters), name=f"{model.name or 'hybrid'} (distilled)")
    fit = replace(refit, model=distilled, free=tuple(renamed[n] for n in refit.free),
                  parameters={renamed[n]: v for n, v in refit.parameters.items() if n in renamed})
    return Distilled(expressions, distilled, fit)


def hybrid_record(hybrid: HybridFit, distilled: Distilled, dataset: Dataset) -> dict[str, Any]:
    """The hybrid twin's story as plain data: the skeleton, each neural term's inputs and closed
    form, the training figures, and each term as learned and as distilled along every
    experiment's trained trajectory (``curves``: per term, per experiment, times and both values)."""
    model = hybrid.skeleton.model
    curves: dict[str, dict[str, dict[str, list[float]]]] = {}
    for term in hybrid.skeleton.terms:
        closed = sympy.lambdify([sympy.Symbol(s) for s in model.states], distilled.expressions[term.name], "numpy")
        curves[term.name] = {}
        for experiment in dataset:
            X = hybrid.states[experiment.name]
            distilled_values = np.broadcast_to(np.asarray(closed(*X.T), dtype=float), X.shape[:1])
            curves[term.name][experiment.name] = {
                "time": [float(t) for t in experiment.times],
                "learned": [float(v) for v in hybrid.term_values(term.name, X)],
                "distilled": [float(v) for v in distilled_values],
            }
    return {
        "skeleton": hybrid.skeleton.text.strip(),
        "terms": {t.name: {"inputs": list(t.inputs), "distilled": distilled.text(t.name)}
                  for t in hybrid.skeleton.terms},
        "hidden": list(measured_nowhere(model, dataset)),
        "trained": dict(hybrid.parameters),
        "loss": hybrid.loss,
        "seconds": hybrid.seconds,
        "refit": {"rss": distilled.fit.rss, "bic": distilled.fit.bic, "aicc": distilled.fit.aicc},
        "curves": curves,
    }

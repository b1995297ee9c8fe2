"""Hybrid twins (universal differential equations): a mechanistic skeleton plus named neural terms.

A skeleton is a model whose right-hand sides may call neural terms, written ``NN<name>(inputs)``::

    dx/dt = a*x + NN1(x, y)        # prey growth is known, the interaction is not
    dy/dt = -c*y + NN2(x, y)

Each neural term is a small multilayer perceptron (equinox) of its inputs, each input divided by
its largest measured magnitude, and its output multiplied by the typical rate of change of the
data, so that the untrained network starts near zero on the scale of the problem. The networks'
weights and the skeleton's parameters are trained together on the whole trajectories of all
experiments (diffrax, exact gradients through the solver, Adam) by least squares on each
observable scaled by its spread; a curriculum over the time span (the first third, then two
thirds, then all of it) keeps the fit out of the poor minima that oscillatory data make.

**Distillation** turns the trained networks back into equations: each network is evaluated on
the states the data visit, a term library of its inputs (:func:`biotwin.discover.library.build_library`)
is regressed on those values by sparse regression with the number of terms chosen by BIC
(:func:`biotwin.discover.sparse.select`), and the closed forms replace the networks in the
skeleton. The resulting model is refitted on the trajectories (:func:`biotwin.fit.fit_trajectories`),
so its coefficients answer to the data, not to the network.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
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
        return cls(model, tuple(NeuralTerm(n, i) for n, i in terms.items()))

    @property
    def known_parameters(self) -> tuple[str, ...]:
        names = {t.name for t in self.terms}
        return tuple(p for p in self.model.parameter_names if p not in names)


@dataclass(frozen=True, eq=False)
class HybridFit:
    """A trained hybrid model: the skeleton's parameter values, the networks and how well they fit."""

    skeleton: Skeleton
    parameters: dict[str, float]
    weights: np.ndarray
    networks: Any  # (evaluate(weights, name, X) -> values): the trained terms as a function of states
    loss: float
    seconds: float

    def term_values(self, name: str, X: np.ndarray) -> np.ndarray:
        """The neural term ``name`` at states ``X`` (rows of all the model's states)."""
        import jax.numpy as jnp

        return np.asarray(self.networks(jnp.asarray(self.weights), name, jnp.asarray(X, dtype=float)))


def _experiment_arrays(skeleton: Skeleton, dataset: Dataset) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per experiment: times (T,), measurements (T, n) of the states (NaN where missing), initial state (n,)."""
    model = skeleton.model
    unobserved = [s for s in model.states if s not in dataset.observables]
    if unobserved:
        raise DataError(f"state '{unobserved[0]}' is never measured; a hybrid twin needs every state measured "
                        "under its own name (hidden states are not supported yet)")
    arrays = []
    for experiment in dataset:
        times = np.asarray(experiment.times, dtype=float)
        values = np.column_stack([
            experiment.values[:, experiment.observables.index(s)] if s in experiment.observables
            else np.full(times.size, np.nan) for s in model.states
        ])
        if times.size < 3:
            raise DataError(f"experiment '{experiment.name}' has {times.size} time points; a hybrid twin needs at least 3")
        first = values[0]
        if np.any(~np.isfinite(first)):
            missing = model.states[int(np.flatnonzero(~np.isfinite(first))[0])]
            raise DataError(f"experiment '{experiment.name}' does not measure '{missing}' at its first time")
        arrays.append((times, values, first))
    return arrays


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

    ``steps`` Adam steps per stage of the curriculum. Every state must be measured under its own
    name, with a value at each experiment's first time (the initial state).
    """
    import diffrax
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax
    from jax.flatten_util import ravel_pytree

    from biotwin import _jax  # noqa: F401

    began = time.perf_counter()
    model = skeleton.model
    arrays = _experiment_arrays(skeleton, dataset)
    values = np.concatenate([v for _, v, _ in arrays])
    spread = np.nanstd(values, axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    magnitude = np.nanmax(np.abs(values), axis=0)
    magnitude = np.where(magnitude > 0, magnitude, 1.0)
    span = max(float(t[-1] - t[0]) for t, _, _ in arrays)
    rate = spread / span  # the typical rate of change of each state
    names = [t.name for t in skeleton.terms]
    columns = {t.name: np.array([model.states.index(s) for s in t.inputs]) for t in skeleton.terms}
    # The rate scale of a term: the largest of those of the states whose equations use it.
    users = {n: [k for k, e in enumerate(model.rhs) if sympy.Symbol(n) in e.free_symbols] for n in names}
    out_scale = {n: float(np.max(rate[users[n]])) if users[n] else 1.0 for n in names}

    keys = jax.random.split(jax.random.PRNGKey(seed), len(names))
    nets = {}
    for key, term in zip(keys, skeleton.terms):
        mlp = eqx.nn.MLP(len(term.inputs), "scalar", width, depth, activation=jax.nn.softplus, key=key,
                         dtype=jnp.float64)
        nets[term.name] = eqx.tree_at(lambda m: m.layers[-1].weight, mlp, 0.1 * mlp.layers[-1].weight)
    known = skeleton.known_parameters
    lower = np.array([model.parameter(p).lower for p in known], dtype=float)
    upper = np.array([model.parameter(p).upper for p in known], dtype=float)
    unbounded = [p for p, lo, hi in zip(known, lower, upper) if not (np.isfinite(lo) and np.isfinite(hi))]
    if unbounded:
        raise ModelError(f"parameter '{unbounded[0]}' of the skeleton needs bounds (e.g. '{unbounded[0]} in [0, 10]')")
    # Known parameters stay inside their bounds: p = lower + (upper - lower) s(z).
    share = np.clip((np.array([model.parameter(p).value for p in known]) - lower) / (upper - lower), 1e-3, 1 - 1e-3)
    start = {"known": jnp.asarray(np.log(share / (1 - share)), dtype=jnp.float64),
             "nets": eqx.filter(nets, eqx.is_array)}
    static = eqx.filter(nets, eqx.is_array, inverse=True)
    flat, unravel = ravel_pytree(start)
    position = {p: model.parameter_names.index(p) for p in model.parameter_names}
    compiled = model.compiled
    no_input = jnp.zeros(len(model.inputs))
    scale_in = jnp.asarray(magnitude)

    def term(params: Any, name: str, y: Any) -> Any:
        net = eqx.combine(params["nets"], static)[name]
        return out_scale[name] * net(y[..., columns[name]] / scale_in[columns[name]])

    def along(params: Any, name: str, X: Any) -> Any:
        """The term at each row of states X."""
        return jax.vmap(lambda y: term(params, name, y))(X)

    def networks(weights: Any, name: str, X: Any) -> Any:
        return along(unravel(weights), name, X)

    def known_values(params: Any) -> Any:
        return jnp.asarray(lower) + jnp.asarray(upper - lower) * jax.nn.sigmoid(params["known"])

    def theta_at(params: Any, y: Any) -> Any:
        theta = jnp.zeros(len(model.parameter_names))
        values = known_values(params)
        for k, p in enumerate(known):
            theta = theta.at[position[p]].set(values[k])
        for name in names:
            theta = theta.at[position[name]].set(term(params, name, y))
        return theta

    def field(t: Any, y: Any, params: Any) -> Any:
        return compiled.rhs(t, y, theta_at(params, y), no_input)

    solver = diffrax.Tsit5()
    controller = diffrax.PIDController(rtol=1e-6, atol=1e-8)

    def trajectory(params: Any, times: Any, y0: Any) -> Any:
        solution = diffrax.diffeqsolve(diffrax.ODETerm(field), solver, times[0], times[-1], None, y0, params,
                                       saveat=diffrax.SaveAt(ts=times), stepsize_controller=controller,
                                       max_steps=8192, throw=False)
        return solution.ys

    data = [(jnp.asarray(t), jnp.asarray(np.nan_to_num(v)), jnp.asarray(np.isfinite(v)), jnp.asarray(y0))
            for t, v, y0 in arrays]
    weights_of_state = jnp.asarray(1.0 / spread)

    def loss(weights: Any, horizon: Any) -> Any:
        params = unravel(weights)
        total, count = 0.0, 0.0
        for times, measured, seen, y0 in data:
            predicted = trajectory(params, times, y0)
            use = seen & (times[:, None] <= horizon)
            residual = jnp.where(use, (predicted - measured) * weights_of_state, 0.0)
            # A failed solve gives non-finite states: a large, finite loss steers away from it.
            residual = jnp.where(jnp.isfinite(residual), residual, 1e3)
            total = total + jnp.sum(residual**2)
            count = count + jnp.sum(use)
            # The skeleton first: a small price on the neural terms' size along the trajectory, so
            # that what the known terms can explain is not left to the networks.
            for name in names:
                size = along(params, name, predicted) / out_scale[name]
                total = total + TERM_PENALTY * jnp.sum(jnp.where(use.any(axis=1) & jnp.isfinite(size), size, 0.0) ** 2)
        return total / jnp.maximum(count, 1.0)

    step_of = jax.jit(jax.value_and_grad(loss))
    weights = jnp.asarray(flat)
    t0 = min(float(t[0]) for t, _, _ in arrays)
    total_steps = steps * len(CURRICULUM)
    done = 0
    value = float("nan")
    for share in CURRICULUM:
        horizon = jnp.asarray(t0 + share * span)
        optimiser = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=0.1))
        state = optimiser.init(weights)
        for _ in range(steps):
            value, gradient = step_of(weights, horizon)
            updates, state = optimiser.update(gradient, state)
            weights = optax.apply_updates(weights, updates)
            done += 1
            if progress is not None and done % 10 == 0:
                progress(done, total_steps, f"loss {float(value):.4g} on {share:.0%} of the span")
    final = float(loss(weights, jnp.asarray(t0 + span)))
    if not np.isfinite(final):
        raise ModelError("the hybrid model could not be trained: its solve fails on the data; "
                         "check the skeleton's signs and starting values")
    params = unravel(weights)
    values_known = {p: float(v) for p, v in zip(known, np.asarray(known_values(params)))}
    return HybridFit(skeleton, values_known, np.asarray(weights), networks, final, time.perf_counter() - began)


@dataclass(frozen=True, eq=False)
class Distilled:
    """Closed forms of the neural terms and the skeleton with them, refitted on the trajectories."""

    expressions: dict[str, sympy.Expr]
    model: Model
    fit: Any  # biotwin.fit.Fit of the refit


def distill(hybrid: HybridFit, dataset: Dataset, *, families: Sequence[str] = ("constant", "linear", "mass_action"),
            max_terms: int = 3, criterion: str = "bic") -> Distilled:
    """Replace each neural term by a sparse closed form of its inputs, chosen on the trajectories.

    Each term is sampled on the measured states of every experiment (rows with a missing state
    are left out) and a regularisation path of sparse fits of a term library is built on those
    values. Every combination of supports with at most ``max_terms`` terms per neural term is
    put into the skeleton, refitted on the trajectories of all experiments
    (:func:`biotwin.fit.fit_trajectories`), and the one with the best ``criterion`` (BIC or AICc
    of the trajectory fit) wins: the networks propose, the data decide. Coefficients become
    parameters ``<term>_<k>``.
    """
    import itertools

    from biotwin.discover.library import build_library
    from biotwin.discover.sparse import path
    from biotwin.fit import fit_trajectories
    from biotwin.model import Parameter

    skeleton = hybrid.skeleton
    model = skeleton.model
    arrays = _experiment_arrays(skeleton, dataset)
    X = np.concatenate([v for _, v, _ in arrays])
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
    best: tuple[float, Distilled] | None = None
    for choice in itertools.product(*options):
        substitutions, parameters, expressions = {}, list(kept), {}
        for term, pieces in zip(skeleton.terms, choice):
            symbols = [sympy.Symbol(f"{term.name}_{k}") for k in range(len(pieces))]
            parameters += [Parameter(str(sym), value) for sym, (_, value) in zip(symbols, pieces)]
            substitutions[sympy.Symbol(term.name)] = sympy.Add(*(sym * expr for sym, (expr, _) in zip(symbols, pieces)))
            expressions[term.name] = sympy.Add(*(value * expr for expr, value in pieces))
        rhs = tuple(sympy.sympify(e).subs(substitutions) for e in model.rhs)
        candidate = Model(model.states, rhs, tuple(parameters), name=f"{model.name or 'hybrid'} (distilled)")
        refit = fit_trajectories(candidate, dataset)
        score = refit.bic if criterion == "bic" else refit.aicc
        if refit.success and np.isfinite(score) and (best is None or score < best[0]):
            # The refit keeps every parameter within its bounds.
            fitted = tuple(replace(p, value=refit.parameters[p.name]) for p in candidate.parameters)
            best = (score, Distilled(expressions, replace(candidate, parameters=fitted), refit))
    if best is None:
        raise ModelError("no distilled model could be refitted on the trajectories; train the hybrid model longer")
    return best[1]

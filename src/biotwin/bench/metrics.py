"""Scores of a discovered model against a benchmark system's truth.

* **Trajectory R^2** (ODEBench): simulate the discovered model and the truth from the same
  initial state and compare the clean trajectories, state by state, and average:
  R^2 = mean_k [1 - sum_i (x_ik - xhat_ik)^2 / sum_i (x_ik - mean_i x_ik)^2], as scikit-learn's
  ``r2_score`` does for several outputs (ODEFormer's evaluation). *Reconstruction* uses the
  training initial state, *generalisation* a new one; R^2 > 0.9 counts as solved. A model whose
  simulation fails scores -inf.
* **Structure**: the set of additive terms of each right-hand side after expansion, with every
  constant replaced by a placeholder (``0.3*x*y`` and ``b*x*y`` are the same term ``x*y``; a
  Michaelis-Menten term ``Vmax*S/(Km + S)`` is ``S/(C + S)``). Precision = shared / discovered,
  recall = shared / true, exact match = equal sets for every state.
* **Parameter error**: mean relative error |c_hat - c| / |c| of the numeric coefficients of the
  terms both models share.
* **Forecast NRMSE** on held-out experiments: RMSE divided by the range of the true observable,
  averaged over observables.
* **Coverage**: share of true held-out values inside a method's 90% prediction band.
* **Complexity**: number of nodes of the expression trees (SymPy's preorder traversal).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sympy

from biotwin.bench.systems import Design, System
from biotwin.compare import r_squared
from biotwin.errors import BiotwinError
from biotwin.model import Model

SOLVED = 0.9
_CONSTANT = sympy.Symbol("C")


def trajectory_r2(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean over states of the R^2 of ``predicted`` (T, n) against ``truth`` (T, n); -inf if not finite."""
    truth, predicted = np.asarray(truth, float), np.asarray(predicted, float)
    if truth.shape != predicted.shape:
        raise ValueError(f"trajectories differ in shape: {truth.shape} vs {predicted.shape}")
    if not np.all(np.isfinite(predicted)):
        return float("-inf")
    return float(np.mean([r_squared(truth[:, k], predicted[:, k]) for k in range(truth.shape[1])]))


def simulate_design(system: System, model: Model, design: Design) -> np.ndarray:
    """The observed quantities of ``system`` as ``model`` predicts them in ``design`` (T, O).

    A discovered model's states are named after observables (or true states). Each starts from
    the design's initial state where the design names it, else from the true observable's value
    at the design's start, which the evaluator knows (as ODEBench gives methods the initial
    condition). Doses into states the model has, inputs it declares and parameter overrides of
    parameters it has (by name) apply; the rest of the intervention is invisible to it. Raises
    :class:`BiotwinError` when the model cannot run the design.
    """
    from biotwin.simulate import simulate

    truth = system.experiment(design)
    observed_start = (dict(zip(truth.observables, truth.values[0].tolist())) if truth.times[0] == design.start
                      else _observables_at_start(system, design))
    y0 = {
        state: design.y0[state] if state in design.y0 else float(observed_start[state])
        for state in model.states
        if state in design.y0 or state in observed_start
    }
    if len(y0) != len(model.states):
        missing = [s for s in model.states if s not in y0]
        raise BiotwinError(f"no initial value for the model's state {missing[0]!r}")
    overrides = {k: v for k, v in design.overrides.items() if k in model.parameter_names}
    inputs = [u for u in design.inputs if u.name in model.states or u.name in model.inputs]
    solution = simulate(
        model, overrides, y0, design.times, inputs, doses=[d for d in design.doses if d.state in model.states],
        start=design.start,
    )
    columns = []
    for name in system.observed:
        if name in solution.observable_names:
            columns.append(solution.observable(name))
        elif name in solution.state_names:
            columns.append(solution.state(name))
        else:
            raise BiotwinError(f"the model has no observable {name!r}")
    return np.stack(columns, axis=-1)


def _observables_at_start(system: System, design: Design) -> dict[str, float]:
    """The true observables at the design's start, from its initial state (before any dose then),
    or {} when the design does not give every true state."""
    model = system.model
    if not all(state in design.y0 for state in model.states):
        return {}
    theta = model.parameter_vector({k: v for k, v in design.overrides.items() if k in model.parameter_names})
    levels = {u.name: u(design.start) for u in design.inputs}
    u = np.array([levels.get(name, 0.0) for name in model.inputs])
    values = np.asarray(model.compiled.observe(design.start, model.state_vector(design.y0), theta, u))
    return {name: float(v) for name, v in zip(model.observable_names, values) if name in system.observed}


def design_r2(system: System, model: Model, design: Design) -> float:
    """Trajectory R^2 of ``model`` against the truth in one design (-inf if the model fails there)."""
    truth = system.experiment(design).values
    try:
        predicted = simulate_design(system, model, design)
    except BiotwinError:
        return float("-inf")
    return trajectory_r2(truth, predicted)


def forecast_nrmse(truth: np.ndarray, predicted: np.ndarray) -> float:
    """RMSE over the range of the truth, averaged over observables (inf when the forecast is not finite)."""
    truth, predicted = np.asarray(truth, float), np.asarray(predicted, float)
    if not np.all(np.isfinite(predicted)):
        return float("inf")
    scores = []
    for k in range(truth.shape[1]):
        keep = ~np.isnan(truth[:, k])
        spread = np.ptp(truth[keep, k]) or max(abs(float(np.mean(truth[keep, k]))), 1e-12)
        scores.append(np.sqrt(np.mean((truth[keep, k] - predicted[keep, k]) ** 2)) / spread)
    return float(np.mean(scores))


def band_coverage(truth: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of true values (NaN skipped) inside [lower, upper]."""
    truth = np.asarray(truth, float)
    keep = ~np.isnan(truth)
    inside = (truth >= np.asarray(lower)) & (truth <= np.asarray(upper))
    return float(np.mean(inside[keep]))


def term_skeleton(term: sympy.Expr, parameters: Sequence[str]) -> sympy.Expr:
    """A term with its constants (numbers, parameters) replaced by ``C`` and its leading factor dropped.

    Integer powers stay (x**2 is not x**3); a non-integer number anywhere inside becomes ``C``.
    """
    constants = {sympy.Symbol(p): _CONSTANT for p in parameters}
    term = term.subs(constants)
    coefficient, rest = term.as_coeff_Mul()
    if rest.is_Number:
        return sympy.Integer(1)
    replaced = rest.replace(lambda e: e.is_Float or (e.is_Rational and not e.is_Integer), lambda e: _CONSTANT)
    # C*x and x, C**2*x and x: a product of constants is one constant, which the leading factor absorbs.
    factors = [f for f in sympy.Mul.make_args(replaced) if not f.free_symbols <= {_CONSTANT}]
    return sympy.Mul(*factors) if factors else sympy.Integer(1)


def term_sets(model: Model) -> list[set[str]]:
    """The skeletons of the additive terms of each right-hand side, as strings."""
    sets = []
    for rhs in model.rhs:
        expanded = sympy.expand(rhs)
        sets.append({sympy.sstr(term_skeleton(t, model.parameter_names)) for t in sympy.Add.make_args(expanded) if t != 0})
    return sets


@dataclass(frozen=True)
class StructureScore:
    precision: float
    recall: float
    exact: bool


def structure_score(truth: Model, discovered: Model) -> StructureScore:
    """Precision, recall and exact match of the discovered term sets, matched by state name."""
    true_sets = dict(zip(truth.states, term_sets(truth)))
    found_sets = dict(zip(discovered.states, term_sets(discovered)))
    shared = found = expected = 0
    exact = set(true_sets) == set(found_sets)
    for state, terms in true_sets.items():
        mine = found_sets.get(state, set())
        shared += len(terms & mine)
        expected += len(terms)
        exact = exact and terms == mine
    for state, mine in found_sets.items():
        found += len(mine)
    return StructureScore(shared / found if found else 0.0, shared / expected if expected else 1.0, exact)


def parameter_error(truth: Model, discovered: Model, true_values: dict[str, float] | None = None,
                    found_values: dict[str, float] | None = None) -> float:
    """Mean relative error of the coefficients of shared terms (NaN when no term is shared)."""
    errors = []
    for state in truth.states:
        if state not in discovered.states:
            continue
        true_terms = _coefficients(truth, truth.rhs[truth.states.index(state)], true_values)
        found_terms = _coefficients(discovered, discovered.rhs[discovered.states.index(state)], found_values)
        for skeleton, value in true_terms.items():
            if skeleton in found_terms and value != 0:
                errors.append(abs(found_terms[skeleton] - value) / abs(value))
    return float(np.mean(errors)) if errors else float("nan")


def _coefficients(model: Model, rhs: sympy.Expr, values: dict[str, float] | None) -> dict[str, float]:
    """Skeleton -> numeric leading coefficient, after substituting the parameter values."""
    numbers = {p.name: p.value for p in model.parameters} | (values or {})
    numeric = sympy.expand(rhs.subs({sympy.Symbol(k): v for k, v in numbers.items()}))
    out: dict[str, float] = {}
    for term in sympy.Add.make_args(numeric):
        coefficient, rest = term.as_coeff_Mul()
        key = sympy.sstr(term_skeleton(rest, ()))
        if coefficient.is_Number:
            out[key] = out.get(key, 0.0) + float(coefficient)
    return out


def complexity(model: Model) -> int:
    """Number of nodes in the expression trees of all right-hand sides."""
    return int(sum(sum(1 for _ in sympy.preorder_traversal(rhs)) for rhs in model.rhs))

"""Trajectory refit and selection of candidate structures.

A candidate gives each state a set of library terms, dx_k/dt = sum_j c_kj theta_j(x). Every
candidate is refitted on the *trajectories* of all experiments jointly (coefficients and initial
states, by least squares through the ODE solver), never on estimated derivatives, and scored by
the information criteria of that fit:

    AICc = n log(RSS/n) + 2p + 2p(p+1)/(n-p-1),        BIC = n log(RSS/n) + p log n,

with p the number of coefficients plus estimated initial states plus the numbers fitted inside
terms (a symbolic-regression constant, a searched Michaelis constant): a term that brings its own
fitted constant pays for it, so cos(0.33 x) does not pass for as simple as x. The candidates that no other
beats in both complexity and trajectory error form the Pareto front; the one with the lowest
criterion is chosen.

All candidates share one *library model* whose right-hand sides hold every term any candidate
uses, each with its own coefficient; a candidate frees its coefficients and pins the others at
zero, so the whole set compiles once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import sympy

from biotwin.data import Dataset
from biotwin.fit import Fit, TrajectoryProblem, information_criterion
from biotwin.model import Model, Parameter

#: Solver steps a candidate may take per experiment. The systems discovery meets need a few hundred
#: at most over their data; a wrong structure that oscillates fast or nearly blows up would take
#: thousands on every evaluation, and most of the refit time with it.
CANDIDATE_MAX_STEPS = 1024

#: Swaps refitted per state and round of :func:`eliminate`: the ones whose projected field stays closest.
SWAPS_PER_STATE = 2

#: A structure: for each state, the library-model terms it uses (indices into a term list).
Structure = tuple[tuple[int, ...], ...]


def structure_key(structure: Structure) -> tuple[frozenset[int], ...]:
    """A structure's identity: each state's set of terms, in any order."""
    return tuple(frozenset(t) for t in structure)


@dataclass(frozen=True, eq=False)
class Candidate:
    """One refitted structure: the model (fitted coefficients as parameter values) and its scores."""

    model: Model
    fit: Fit
    structure: Structure
    origin: str
    complexity: int
    inner_constants: int = 0

    @property
    def n_terms(self) -> int:
        return sum(len(terms) for terms in self.structure)

    @property
    def n_parameters(self) -> int:
        """Estimated quantities: coefficients, initial states and the numbers fitted inside terms."""
        return self.fit.n_free + self.inner_constants

    @property
    def aicc(self) -> float:
        return self.score("aicc")

    @property
    def bic(self) -> float:
        return self.score("bic")

    def score(self, criterion: str = "aicc") -> float:
        """The information criterion the choice minimises, ``"bic"`` or ``"aicc"``, over :attr:`n_parameters`."""
        return information_criterion(self.fit.rss, self.fit.n_data, self.n_parameters, criterion)

    @property
    def error(self) -> float:
        """Trajectory RMSE in units of each observable's scale."""
        return self.fit.rmse

    def equations(self) -> dict[str, str]:
        """Each state's right-hand side with the fitted numbers written out (SymPy-parsable)."""
        values = {sympy.Symbol(k): v for k, v in self.fit.parameters.items()}
        return {s: sympy.sstr(sympy.N(e.subs(values), 6)) for s, e in zip(self.model.states, self.model.rhs)}


@dataclass(frozen=True, eq=False)
class Candidates:
    """Discovered models: every refitted candidate, the Pareto front, the chosen one, term inclusion.

    ``inclusion`` maps each state to {term label: probability the term was selected across
    bootstrap resamples of the data}.
    """

    candidates: tuple[Candidate, ...]
    chosen_index: int
    criterion: str = "aicc"
    inclusion: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    @property
    def chosen(self) -> Candidate:
        return self.candidates[self.chosen_index]

    @property
    def model(self) -> Model:
        """The chosen model, its parameters at their fitted values."""
        return self.chosen.model

    @property
    def pareto(self) -> tuple[Candidate, ...]:
        """Candidates not beaten in both complexity and trajectory error, by increasing complexity."""
        return pareto_front(self.candidates)



def pareto_front(candidates: Sequence[Candidate]) -> tuple[Candidate, ...]:
    ordered = sorted(candidates, key=lambda c: (c.complexity, c.error))
    front, best = [], math.inf
    for candidate in ordered:
        if candidate.error < best - 1e-12:
            front.append(candidate)
            best = candidate.error
    return tuple(front)


class Refitter:
    """Refits structures over a fixed term list on the trajectories of a dataset, compiled once.

    ``terms`` are expressions in the state symbols and the experiments' ``inputs`` (known signals
    u(t), such as an inducer or a dilution rate, which the refitted models declare); ``observables`` maps observable names to
    expressions of the states (default: each state observed under its own name). ``signs``
    constrains coefficient (state, term) to be >= 0 (+1) or <= 0 (-1). ``skeleton`` gives known
    right-hand-side parts from prior knowledge, added to those states; their parameters
    (``skeleton_parameters``, with starting values and bounds) are fitted in every candidate.
    ``max_terms`` is the most terms any structure refitted later will have; ``used`` (default:
    all) the indices of the terms the structures refitted later draw from. ``samples`` (rows of
    state values then input values, e.g. the smoothed measurements) let :meth:`projected` start a smaller structure
    from the vector field of a larger one. ``given`` names states whose whole equation the skeleton
    gives (a hidden dosing compartment) with their initial value, which the models declare.

    With ``fit_inner``, the numbers inside the terms (a Michaelis constant from the grid, a symbolic
    term's constants) become parameters ``k<term>_<i>`` fitted with the coefficients, each within
    :data:`INNER_RANGE` of its value; ``max_terms`` must then count them too. The criterion counts
    them either way, so a candidate whose numbers are fitted is scored on the same parameter count
    as the one that held them fixed.
    """

    def __init__(
        self,
        dataset: Dataset,
        states: tuple[str, ...],
        terms: Sequence[sympy.Expr],
        max_terms: int,
        *,
        observables: Mapping[str, sympy.Expr] | None = None,
        max_evaluations: int = 100,
        signs: Mapping[tuple[int, int], int] | None = None,
        skeleton: Mapping[str, sympy.Expr] | None = None,
        skeleton_parameters: Sequence[Parameter] = (),
        weights: str = "absolute",
        dependent: Mapping[str, Mapping[str, float]] | None = None,
        nonnegative: Sequence[str] = (),
        used: Sequence[int] | None = None,
        samples: np.ndarray | None = None,
        inputs: Sequence[str] = (),
        given: Mapping[str, float] | None = None,
        fit_inner: bool = False,
    ) -> None:
        from biotwin.model import Observable

        self.states, self.terms, self.inputs = states, list(terms), tuple(inputs)
        self.given = dict(given or {})
        # Only the terms some structure uses enter the compiled model: every solver step evaluates
        # (and differentiates) all of them, so a smaller library model is a faster one.
        used = sorted(set(range(len(self.terms)) if used is None else used))
        #: Numbers inside each term (a symbolic term's constants, a Michaelis constant).
        self.inner = [len(t.atoms(sympy.Float)) for t in self.terms]
        #: With ``fit_inner``, the parameters that stand for the numbers inside each used term, and
        #: the terms written with them; otherwise the terms as they are, their numbers fixed.
        numbers = {j: _inner_parameters(j, self.terms[j]) for j in used} if fit_inner else {}
        self.inner_parameters = {j: tuple(p for _, p in pairs) for j, pairs in numbers.items()}
        self.shapes = {j: self.terms[j].xreplace({f: sympy.Symbol(p.name) for f, p in numbers.get(j, ())}) for j in used}
        self.signs = dict(signs or {})
        self.skeleton = dict(skeleton or {})
        self.skeleton_parameters = tuple(skeleton_parameters)
        self.max_evaluations = max_evaluations
        self.dependent = {k: dict(v) for k, v in (dependent or {}).items()}
        # A state fixed by a conservation law, or whose whole equation is given, has no coefficients of its own.
        own = [k for k, state in enumerate(states) if state not in self.dependent and state not in self.given]
        self.names = {(k, j): f"c{k}_{j}" for k in own for j in used}
        coefficients = [Parameter(self.names[key], 0.0, *_sign_bounds(self.signs.get(key, 0))) for key in self.names]
        rhs = []
        for k, state in enumerate(states):
            expression = sum((sympy.Symbol(self.names[(k, j)]) * self.shapes[j] for j in used if (k, j) in self.names),
                             sympy.Integer(0))
            rhs.append(expression + self.skeleton.get(state, sympy.Integer(0)))
        rhs = _with_dependent(states, rhs, self.dependent)
        self.observed = tuple(Observable(n, e) for n, e in (observables or {}).items())
        inner = tuple(p for j in used for p in self.inner_parameters.get(j, ()))
        library_model = Model(states, tuple(rhs), parameters=tuple(coefficients) + inner + self.skeleton_parameters,
                              observables=self.observed, inputs=self.inputs, initial=self.given)
        self.problem = TrajectoryProblem(library_model, dataset, max_free=max_terms + len(self.skeleton_parameters),
                                         weights=weights, nonnegative=nonnegative, max_steps=CANDIDATE_MAX_STEPS)
        #: Every term at every sample (terms no structure uses, and non-finite values, stay 0).
        self.term_values = None if samples is None else _term_values((*states, *self.inputs), self.terms, used,
                                                                       samples)

    def projected(self, candidate: Candidate, structure: Structure) -> dict[tuple[int, int], float]:
        """Starting coefficients for ``structure`` (a sub-structure of ``candidate``'s): per state,
        the least-squares projection of the candidate's fitted right-hand side onto the kept terms
        over the sampled states, min_xi sum_i (f_k(x_i) - Theta_S(x_i) xi)^2.

        Simply dropping a term leaves the others' coefficients tuned to it: removing the constant
        21 from 21 - 0.89 x - 0.025 x^2 (a logistic x' = 1.8 x - 0.11 x^2 fitted with a spare
        constant) leaves a field that only decays, and the refit from there stops in a minimum far
        from the logistic. The projection keeps the field the data pinned down. Without samples,
        or where the projection is not finite, the dropped term is simply left out.
        """
        start = {(k, j): float(candidate.fit.parameters[self.names[(k, j)]])
                 for k, terms_k in enumerate(candidate.structure) for j in terms_k}
        if self.term_values is None:
            return start
        for k, terms_k in enumerate(structure):
            if list(terms_k) == list(candidate.structure[k]) or not terms_k:
                continue
            xi = np.linalg.lstsq(self.term_values[:, list(terms_k)], self._field(candidate, k), rcond=None)[0]
            if np.all(np.isfinite(xi)):
                start.update({(k, j): float(v) for j, v in zip(terms_k, xi)})
        return start

    def _field(self, candidate: Candidate, k: int) -> np.ndarray:
        """The library part of state k's fitted right-hand side at the samples."""
        terms_k = list(candidate.structure[k])
        return self.term_values[:, terms_k] @ np.array([candidate.fit.parameters[self.names[(k, j)]] for j in terms_k])

    def library_parameters(self, candidate: Candidate) -> np.ndarray:
        """The library model's parameter vector that makes it ``candidate``'s model (its other terms at 0)."""
        model = self.problem.model
        return model.parameter_vector({k: v for k, v in candidate.fit.parameters.items() if k in model.parameter_names})

    def swaps(self, candidate: Candidate, keep: frozenset[tuple[int, int]] = frozenset(),
              per_state: int = SWAPS_PER_STATE) -> list[Structure]:
        """Per state, the ``per_state`` simplifying swaps that keep the field closest.

        A simplifying swap replaces a term with fitted inner constants (a symbolic-regression
        term, a searched Michaelis constant) by a compiled term with fewer; the closest keep the
        least relative residual of the projection |f_k - Theta_S' xi|^2 / |f_k|^2 over the
        sampled states. Only simplifying swaps: swapping plain terms for plain terms multiplies
        the refits and, on a single trajectory, mostly finds other look-alikes of equal score.
        None without samples.
        """
        if self.term_values is None:
            return []
        values = self.term_values
        result: list[Structure] = []
        for k, terms_k in enumerate(candidate.structure):
            available = [j for (kk, j) in self.names if kk == k and j not in terms_k and np.any(values[:, j])]
            if not terms_k or not available:
                continue
            field = self._field(candidate, k)
            size = float(field @ field) or 1.0
            ranked = []
            for out in terms_k:
                if (k, out) in keep or not self.inner[out]:
                    continue
                rest = [j for j in terms_k if j != out]
                for new in (j for j in available if self.inner[j] < self.inner[out]):
                    columns = values[:, [*rest, new]]
                    xi = np.linalg.lstsq(columns, field, rcond=None)[0]
                    ranked.append((float(np.sum((field - columns @ xi) ** 2)) / size, out, new))
            for _, out, new in sorted(ranked)[:per_state]:
                swapped = tuple(tuple(sorted([*(t for t in ts if t != out), new])) if kk == k else ts
                                for kk, ts in enumerate(candidate.structure))
                result.append(swapped)
        return result

    def fit(self, structure: Structure, start: Mapping[tuple[int, int], float], origin: str, *,
            max_evaluations: int | None = None) -> Candidate:
        """Refit one structure; every coefficient outside it stays at zero."""
        members = [(k, j) for k, terms_k in enumerate(structure) for j in terms_k]
        begin = {self.names[key]: _clip(start[key], self.signs.get(key, 0)) for key in members if key in start}
        return self._fit(structure, begin, origin, max_evaluations or self.max_evaluations)

    def resume(self, candidate: Candidate, max_evaluations: int | None = None, origin: str | None = None) -> Candidate:
        """Go on refitting a candidate from where an earlier (shorter) fit of it stopped.

        A refitter that fits the numbers inside terms resumes a fit that held them fixed from
        those same numbers (``origin`` then says so).
        """
        begin = {name: float(candidate.fit.parameters[name]) for name in candidate.fit.free}
        initial = np.array([[candidate.fit.initial[e.name][s] for s in self.states] for e in self.problem.dataset])
        return self._fit(candidate.structure, begin, origin or candidate.origin, max_evaluations or self.max_evaluations,
                         initial)

    def _fit(self, structure: Structure, begin: Mapping[str, float], origin: str, max_evaluations: int,
             initial: np.ndarray | None = None) -> Candidate:
        members = [(k, j) for k, terms_k in enumerate(structure) for j in terms_k]
        used = sorted({j for terms_k in structure for j in terms_k})
        inner = [p.name for j in used for p in self.inner_parameters.get(j, ())]
        free = [self.names[key] for key in members] + inner + [p.name for p in self.skeleton_parameters]
        result = self.problem.fit(free, start=begin, initial=initial, max_evaluations=max_evaluations)
        model = self._candidate_model(result, structure)
        # Numbers fitted here are free parameters of the fit already; fixed ones are counted apart.
        fixed = sum(self.inner[j] for j in used if j not in self.inner_parameters)
        return Candidate(model, result, structure, origin, _complexity(model), fixed)

    def _candidate_model(self, result: Fit, structure: Structure) -> Model:
        """The candidate alone: its terms with their coefficients as parameters at the fitted values,
        with the library model's skeleton, observables, inputs and given initial states."""
        rhs, parameters = [], []
        for k, state in enumerate(self.states):
            expression = self.skeleton.get(state, sympy.Integer(0))
            for j in structure[k]:
                name = self.names[(k, j)]
                parameters.append(Parameter(name, float(result.parameters[name])))
                expression = expression + sympy.Symbol(name) * self.shapes[j]
            rhs.append(expression)
        for j in sorted({j for terms_k in structure for j in terms_k}):
            parameters += [replace(p, value=float(np.clip(result.parameters[p.name], p.lower, p.upper)))
                           for p in self.inner_parameters.get(j, ())]
        rhs = _with_dependent(self.states, rhs, self.dependent)
        fitted_skeleton = tuple(
            Parameter(p.name, float(np.clip(result.parameters[p.name], p.lower, p.upper)), p.lower, p.upper, p.scale)
            for p in self.skeleton_parameters
        )
        return Model(self.states, tuple(rhs), parameters=tuple(parameters) + fitted_skeleton, observables=self.observed,
                     inputs=self.inputs, initial=self.given)


def refit(
    dataset: Dataset,
    states: tuple[str, ...],
    terms: Sequence[sympy.Expr],
    structures: Sequence[tuple[Structure, Mapping[tuple[int, int], float], str]],
    *,
    criterion: str = "aicc",
    **options: object,
) -> tuple[Candidates, Refitter]:
    """Refit every structure on the trajectories and choose by ``criterion`` (see :class:`Refitter`).

    ``structures`` holds (structure, starting coefficients {(state, term): value}, origin).
    Returns the candidates and the refitter, for further structures on the same compiled problem.
    """
    if not structures:
        raise ValueError("no candidate structures to refit")
    largest = max(sum(len(t) for t in structure) for structure, _, _ in structures)
    refitter = Refitter(dataset, states, terms, largest, **options)  # type: ignore[arg-type]
    candidates = [refitter.fit(structure, start, origin) for structure, start, origin in structures]
    return choose(candidates, criterion), refitter


#: Criterion differences below this do not tell two candidates apart ("not worth more than a bare
#: mention", Kass & Raftery 1995); among such near-ties the least complex is chosen.
INDISTINGUISHABLE = 2.0


def choose(candidates: Sequence[Candidate], criterion: str = "aicc", excluded: frozenset[int] = frozenset()) -> Candidates:
    """The candidates with one chosen: the least complex of those within :data:`INDISTINGUISHABLE` of the lowest ``criterion``.

    Candidates whose indices are in ``excluded`` stay in the set but are never chosen.
    """
    scores = np.array([math.inf if i in excluded else c.score(criterion) for i, c in enumerate(candidates)])
    near = np.flatnonzero(scores <= scores.min() + INDISTINGUISHABLE)
    chosen = min(near, key=lambda i: (candidates[i].complexity, scores[i]))
    return Candidates(tuple(candidates), int(chosen), criterion)


def eliminate(
    refitter: Refitter, candidate: Candidate, criterion: str = "aicc", max_rounds: int = 8,
    keep: frozenset[tuple[int, int]] = frozenset(), seen: set[tuple[frozenset[int], ...]] | None = None,
) -> list[Candidate]:
    """Backward elimination with swaps on the trajectories: take the change that lowers the criterion most.

    The changes of a round are every one-term removal and, per state, the :data:`SWAPS_PER_STATE`
    simplifying swaps whose least-squares projection of the current field over the sampled
    states stays closest (:meth:`Refitter.swaps`): a symbolic term with fitted inner constants
    for the plain monomial it imitates. Repeats while a change improves the criterion; a state keeps
    at least one term and the terms in ``keep`` (state, term) are never dropped. ``seen`` holds the
    :func:`structure_key` of structures already refitted (shared by pruning runs from several
    leaders, whose paths often meet); it gains every structure refitted here. Returns every
    candidate refitted.
    """

    tried: list[Candidate] = []
    current = candidate
    seen = set() if seen is None else seen
    seen.add(structure_key(candidate.structure))
    for _ in range(max_rounds):
        changes = []
        for k, terms_k in enumerate(current.structure):
            if len(terms_k) <= 1:
                continue
            for j in terms_k:
                if (k, j) not in keep:
                    changes.append(tuple(tuple(t for t in ts if not (kk == k and t == j)) for kk, ts in enumerate(current.structure)))
        changes += refitter.swaps(current, keep)
        options = []
        for structure in changes:
            key = structure_key(structure)
            if key not in seen:
                seen.add(key)
                options.append(refitter.fit(structure, refitter.projected(current, structure), f"{candidate.origin}, pruned"))
        tried += options
        best = min(options, key=lambda c: c.score(criterion), default=None)
        if best is None or best.score(criterion) >= current.score(criterion):
            break
        current = best
    return tried


def _term_values(variables: tuple[str, ...], terms: Sequence[sympy.Expr], used: Sequence[int], samples: np.ndarray) -> np.ndarray:
    from biotwin.discover.library import Library, Term

    values = np.zeros((len(samples), len(terms)))
    values[:, list(used)] = Library(variables, tuple(Term(terms[j], "refit") for j in used)).evaluate(samples)
    return np.where(np.isfinite(values), values, 0.0)


#: How far a fitted inner number may move from the library's or symbolic regression's value: a
#: factor of ten either way, its sign kept. Fitting refines a Michaelis constant found on a coarse
#: grid or a constant symbolic regression fitted to noisy derivatives; it does not search anew.
INNER_RANGE = 10.0


def _inner_parameters(j: int, term: sympy.Expr) -> tuple[tuple[sympy.Float, Parameter], ...]:
    """The numbers inside term ``j`` as parameters ``k<j>_<i>`` at their values, each within
    :data:`INNER_RANGE` of it."""
    numbers = sorted(term.atoms(sympy.Float), key=float)
    pairs = []
    for i, number in enumerate(numbers):
        value = float(number)
        low, high = sorted((value / INNER_RANGE, value * INNER_RANGE))
        pairs.append((number, Parameter(f"k{j}_{i}", value, low, high)))
    return tuple(pairs)


def _sign_bounds(sign: int) -> tuple[float, float, str]:
    if sign > 0:
        return (0.0, math.inf, "lin")
    if sign < 0:
        return (-math.inf, 0.0, "lin")
    return (-math.inf, math.inf, "lin")


def _clip(value: float, sign: int) -> float:
    return max(value, 0.0) if sign > 0 else min(value, 0.0) if sign < 0 else value


def _with_dependent(states: tuple[str, ...], rhs: list[sympy.Expr], dependent: Mapping[str, Mapping[str, float]]) -> list[sympy.Expr]:
    """Right-hand sides with each conserved law's last state a combination of the others' rates."""
    rhs = list(rhs)
    for state, combination in dependent.items():
        rhs[states.index(state)] = sum(
            (sympy.Float(a) * rhs[states.index(other)] for other, a in combination.items()), sympy.Integer(0)
        )
    return rhs


def _complexity(model: Model) -> int:
    """Expression-tree nodes of the right-hand sides with coefficients as single leaves."""
    return int(sum(sum(1 for _ in sympy.preorder_traversal(e)) for e in model.rhs))

"""Discovery, end to end: from measurements to a Pareto set of refitted candidate models.

1. **Smooth** every observable of every experiment (a smoothing spline with its smoothing chosen
   by generalised cross-validation) and resample on uniform grids: states X and derivative
   estimates dX/dt. Known input signals u(t) the experiments apply (an inducer, a dilution
   rate) join X as variables the rates may depend on; an infusion into a state is taken off its
   dX/dt; a dose into a compartment no observable measures makes it a hidden depot emptying at
   first order (:mod:`biotwin.discover.depots`), whose amount joins X too.
2. **A ladder of libraries**: mass action (polynomials of degree 2), polynomials of degree 3,
   rational kinetics (Michaelis-Menten and Hill terms over a grid of K and n), physics
   (trigonometric terms and their products, exponential terms), and the additive terms of Operon's symbolic-regression
   expressions; user terms join every rung. One large library would be collinear enough that,
   under noise, the derivative regression never proposes the simple structure; each rung
   proposes its own, and the trajectory refit judges them all on the same scale.
3. **Sparse regression** per state and rung, dX_k/dt ~ Theta(X) xi_k: the whole STLSQ
   regularisation path, the threshold chosen by cross-validation over held-out time windows; the
   supports near the chosen one on the path are kept as alternatives, and bagging gives every
   term an inclusion probability. Beside the path, the best one- and two-term subsets of each
   library rung (exhaustive least squares, :func:`~biotwin.discover.sparse.best_subsets`), with
   the numbers inside their terms fitted on the rates (:mod:`~biotwin.discover.refine`): a
   saturating law whose K falls between grid points is found there, never on the path. The same
   search runs on the rates' weak form (:mod:`~biotwin.discover.weak_rows`: the measurements
   integrated against test functions, no derivative taken), which keeps a wobble the smoother
   takes for noise.
4. **Trajectory refit and selection**: each candidate structure (the chosen supports, each
   state's alternatives in turn, every state's best small subset of the rates, or of their weak
   form, at once) is refitted on the
   trajectories of all experiments jointly and the final choice minimises AICc (or BIC) of that
   fit, never the derivative error. The numbers inside the best candidates' terms are then
   fitted on the trajectories too, when the choice has such numbers.

Derivative estimates only propose structures; every number in the result comes from the
trajectory fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import sympy

from biotwin.data import Dataset
from biotwin.discover.depots import chosen_rate, depot_levels, hidden_depots
from biotwin.discover.fragility import robust_choice
from biotwin.discover.iv_doses import candidates_in_amounts, in_concentrations, intravenous_doses
from biotwin.discover.library import user_terms as parse_terms
from biotwin.discover.prior import Prior
from biotwin.discover.select import (INDISTINGUISHABLE, Candidates, Refitter, Structure, choose, eliminate,
                                     structure_key)
from biotwin.discover.weak_rows import weak_rows
from biotwin.errors import DataError

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DiscoveryOptions:
    """Settings of :func:`discover`; the defaults suit 2-4 observed states and 20-200 time points.

    ``families`` is ``"auto"`` (the ladder of :data:`LADDER`) or one preset or family list used
    alone; ``symbolic`` adds a rung of Operon's terms; ``alternatives`` is how
    many supports per state besides the chosen one are refitted; ``n_bags`` the bootstrap
    resamples for inclusion probabilities; ``criterion`` ``"aicc"`` or ``"bic"``. When there are
    more than ``finalists`` structures, each is first refitted for ``screen_evaluations``
    evaluations and only the ``finalists`` best by the criterion are refitted to the end
    (``max_evaluations``).
    """

    families: str | tuple[str, ...] = "auto"
    derivative: str = "spline"
    symbolic: bool = True
    symbolic_seconds: int = 8
    alternatives: int = 2
    n_bags: int = 20
    criterion: str = "bic"
    grid_points: int = 100
    max_evaluations: int = 60
    finalists: int = 8
    screen_evaluations: int = 12
    seed: int = 0


#: The rungs of the library ladder: (name, families, polynomial degree).
LADDER: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("mass action", ("constant", "polynomial"), 2),
    ("polynomial", ("constant", "polynomial"), 3),
    ("rational", ("constant", "polynomial", "michaelis_menten", "hill_activation", "hill_repression",
                  "substrate_inhibition"), 1),
    ("physics", ("constant", "polynomial", "trigonometric", "trigonometric_products", "exponential"), 2),
)


def discover(
    dataset: Dataset,
    *,
    prior: Prior | None = None,
    options: DiscoveryOptions | None = None,
    user_terms: Sequence[str] = (),
    progress: Progress | None = None,
    **overrides: Any,
) -> Candidates:
    """Discover ODE models dx/dt = f(x) for the observables of ``dataset`` (each observable a state).

    ``prior`` gives hints (required, forbidden and signed terms, known equations, conservation
    laws, non-negative states; see :mod:`biotwin.discover.prior`). Returns the refitted
    :class:`~biotwin.discover.select.Candidates` with the chosen model, the Pareto front and term
    inclusion probabilities. Keyword overrides replace fields of ``options``
    (``discover(data, seed=3, symbolic=False)``).
    """
    from threadpoolctl import threadpool_limits

    # SciPy's own BLAS must be loaded before its threads are limited: one first loaded inside the
    # limit keeps its default threads, and on two busy cores the 200-term rational library's
    # path of 100 x 200 least squares then took 66 s instead of 0.3 s.
    import biotwin.discover.sparse  # noqa: F401

    options = replace(options or DiscoveryOptions(), **overrides)
    say = progress or (lambda message: None)
    states = _states(dataset)
    as_given = dataset
    intravenous = intravenous_doses(dataset, states, hidden_depots(dataset, states))
    dataset = in_concentrations(dataset, intravenous)
    depots = hidden_depots(dataset, states)
    signals = exogenous_inputs(dataset, (*states, *depots))
    variables = (*states, *depots, *signals)
    prior = prior or Prior()
    prior.check(states, (*depots, *signals))
    hints = _Hints.of(prior, states)
    user_terms = (*user_terms, *hints.offered, *input_terms(states, signals))
    # Many small dense solves: BLAS threads only contend for the cores.
    with threadpool_limits(limits=1):
        say("smoothing the measurements")
        grids, smooths, weights = _smoothed_grids(dataset, options)
        # An infusion into a state is part of its rate that the data's design already explains.
        dX = np.concatenate([g.derivatives - _levels(e, states, g.times) for e, g in grids])
        rates = {d: chosen_rate([e for e, _ in grids], [g.times for _, g in grids], d,
                                np.concatenate([g.values for _, g in grids]), dX) for d in depots}

        def variables_at(experiment: Any, values: np.ndarray, times: np.ndarray) -> np.ndarray:
            """The library's variables: the smoothed states, the hidden depots' amounts and the known
            input signals, at the same times."""
            return np.column_stack([values, *(depot_levels(experiment, d, rates[d], times) for d in depots),
                                    _levels(experiment, signals, times)])

        X = np.concatenate([variables_at(e, g.values, g.times) for e, g in grids])
        weak = weak_rows([e for e, _ in grids], smooths, states, variables_at,
                         lambda e, t: _levels(e, states, t))
        groups = _time_windows([g for _, g in grids])
        rungs = _rungs(variables, X, dX, options, user_terms)
        terms: list[sympy.Expr] = []
        structures: list = []
        # Numbers the user wrote into a term are theirs; only the library's grid numbers are refined.
        # Operon's terms are not recombined into subsets: each carries constants fitted jointly with
        # the rest of its expression, and alone such a fragment is a look-alike (on ODEBench 9, a
        # line, c cos(k x) with k tuned on the trajectories beat the true line by 6 BIC).
        frozen = frozenset(t.expr for t in parse_terms(variables, user_terms))
        for name, library in rungs:
            say(f"sparse regression over the {name} library ({len(library)} terms)")
            theta = library.evaluate(X)
            subsets = name != "symbolic"
            projected = weak.project(library.evaluate) if weak is not None and subsets else None
            per_state = [
                _state_supports(theta, dX[:, k], groups, options, hints.constraints(k, library), library, X, frozen,
                                subsets=subsets,
                                weak=None if projected is None else (projected, weak.lhs[:, k], weak.independent_rows))
                if k in hints.searched else None
                for k in range(len(states))
            ] + [None] * len(depots)
            structures += _structures(per_state, terms, name)
        structures = _unique(structures, frozenset(k for k in hints.searched if states[k] not in prior.known))
        if not structures:
            raise DataError("sparse regression found no term for some state; the data may be too noisy or too short")
        say(f"refitting {len(structures)} candidate structures on the trajectories")
        hidden = _Depots.of(dataset, rates)

        def refitter_for(group: list, fit_inner: bool = False, largest: int = 0) -> Refitter:
            largest = largest or max(sum(len(t) for t in structure) for structure, _, _ in group)
            used = {j for structure, _, _ in group for terms_k in structure for j in terms_k}
            return Refitter(
                hidden.dataset, (*states, *depots), terms, largest, max_evaluations=options.max_evaluations,
                weights=weights, signs=hints.refit_signs(terms), skeleton={**prior.known, **hidden.equations},
                skeleton_parameters=(*hints.skeleton_parameters, *hidden.parameters), dependent=prior.dependent,
                nonnegative=tuple(prior.nonnegative), used=used, samples=X, inputs=signals,
                observables={s: sympy.Symbol(s) for s in states}, given=hidden.initial, fit_inner=fit_inner,
            )

        rung_names = list(dict.fromkeys(_rung_of(s[2]) for s in structures))
        if len({j for structure, _, _ in structures for terms_k in structure for j in terms_k}) <= MERGED_TERMS:
            # Few terms in all: one compiled library model serves every rung (compiling it and its
            # Jacobian costs more than solving with a few unused terms).
            shared = refitter_for(structures)
            refitters = dict.fromkeys(rung_names, shared)
        else:
            # One compiled library model per rung, holding only the terms that rung's structures use.
            refitters = {rung: refitter_for([s for s in structures if _rung_of(s[2]) == rung]) for rung in rung_names}
        fitted = _screened(refitters, structures, options)
        say("pruning the best candidates on the trajectories")
        pruned: set = set()
        for best in _leaders(fitted, options.criterion):
            fitted += eliminate(refitters[_rung(best)], best, options.criterion, keep=hints.kept(terms), seen=pruned)
        say("checking the best candidates from perturbed starts")
        tuner: Refitter | None = None
        verdicts: dict = {}

        def robust(fitted: list) -> Candidates:
            return robust_choice(choose(_distinct(fitted, options.criterion), options.criterion),
                                 lambda c: tuner if _tuned(c) else refitters[_rung(c)], options.seed, verdicts)

        candidates = robust(fitted)
        leaders = _worth_tuning(candidates)
        if leaders:
            say(f"fitting the numbers inside the terms of {len(leaders)} candidates")
            # A tuned fit frees each term's coefficient and the numbers inside it.
            tuner = refitter_for([(c.structure, None, c.origin) for c in leaders], fit_inner=True,
                                 largest=max(c.n_terms + c.inner_constants for c in leaders))
            tuned = [tuner.resume(c, origin=f"{c.origin}, {TUNED_ORIGIN}") for c in leaders]
            best = min(tuned, key=lambda c: c.score(options.criterion))
            # Unless a tuned fit comes near the choice, it stands (and checking it again is wasted).
            if best.score(options.criterion) < candidates.chosen.score(options.criterion) + INDISTINGUISHABLE:
                # Pruned before its numbers fitted, a term may have stood in for a misplaced K.
                tuned += eliminate(tuner, best, options.criterion, keep=hints.kept(terms))
                candidates = robust(fitted + tuned)
        say("bootstrap inclusion probabilities")
        library = dict(rungs)[_rung(candidates.chosen)]
        inclusion = _inclusion(library, X, dX, groups, states, options)
    return candidates_in_amounts(replace(candidates, inclusion=inclusion), intravenous, as_given)


#: At most this many distinct terms over all candidate structures and they share one compiled
#: library model; more, and each rung compiles its own (every solver step evaluates them all).
MERGED_TERMS = 40

#: A support with more terms than this for one state is the regression failing to find sparsity
#: (the whole rational library at a near-zero threshold), not a structure: refitting one of 150
#: terms costs more than all sparse candidates together, and it can never win on the criterion.
MAX_STATE_TERMS = 12

#: Backward elimination refits every one-term-smaller structure per round: from a candidate with
#: n terms that is about n^2/2 trajectory fits, minutes for the 30-term dense quadratic of three
#: states. Candidates larger than this are not pruned (the sparse regression proposes sparser ones).
MAX_PRUNED_TERMS = 15


@dataclass(frozen=True)
class _Depots:
    """The hidden depots as the refit needs them: each one's equation da/dt = -k_a a with k_a a
    parameter starting at its grid rate, empty at the start of every experiment (the data's
    initial state, not an estimate), and the dataset with that start written in."""

    equations: Mapping[str, sympy.Expr]
    parameters: tuple[Any, ...]
    initial: Mapping[str, float]
    dataset: Dataset

    @classmethod
    def of(cls, dataset: Dataset, rates: Mapping[str, float]) -> _Depots:
        from biotwin.model import Parameter

        equations = {d: -sympy.Symbol(f"k_{d}") * sympy.Symbol(d) for d in rates}
        parameters = tuple(Parameter(f"k_{d}", rate, 0.0, math.inf) for d, rate in rates.items())
        empty = dict.fromkeys(rates, 0.0)
        if rates:
            dataset = replace(dataset, experiments=tuple(e.replace(overrides={**empty, **e.overrides}) for e in dataset))
        return cls(equations, parameters, empty, dataset)


def _leaders(fitted: list, criterion: str, rungs: int = 2) -> list:
    """The best candidate of each of the ``rungs`` best rungs: pruning starts from each.

    Pruning only the overall best misses a simpler truth hidden in another rung's denser fit
    (a constant and a linear term inside a quadratic), when the best is a look-alike.
    """
    leaders: dict[str, Any] = {}
    for candidate in sorted((c for c in fitted if c.n_terms <= MAX_PRUNED_TERMS), key=lambda c: c.score(criterion)):
        leaders.setdefault(_rung(candidate), candidate)
    return list(leaders.values())[:rungs]


#: The origin's mark of a candidate whose inner numbers were fitted (by the tuning refitter).
TUNED_ORIGIN = "tuned"


def _tuned(candidate) -> bool:
    """Whether the candidate was refitted with its inner numbers free ("rational, pruned, tuned")."""
    return TUNED_ORIGIN in candidate.origin.split(", ")


#: Candidates whose inner numbers are fitted: at most this many ...
TUNED = 3
#: ... of those within this much of the chosen candidate's criterion. A gap of 10 is "very strong"
#: evidence (Kass & Raftery 1995); fitting a K or two seldom closes more, and every discovery that
#: tunes pays one more compilation (about 10 s).
TUNING_MARGIN = 10.0


def _worth_tuning(candidates) -> list:
    """When the chosen candidate has numbers inside its terms (a Michaelis constant from the grid,
    a symbolic term's constants): the :data:`TUNED` best candidates with such numbers that score
    within :data:`TUNING_MARGIN` of it and are small enough to prune. Otherwise none.

    The grid puts K within a factor of 1.6 of any true value, and a term with K off by that much
    imitates its mechanism only roughly; symbolic regression fits its constants to noisy
    derivatives. Fitting them on the trajectories (:class:`Refitter` with ``fit_inner``) can
    reorder the candidates that have them. A chosen model without such numbers (mass action,
    polynomials) is left as it is: on ODEBench's one-state systems, tuning its rational rivals
    cost one more compilation almost every time (7 s on system 06) and moved no system across
    R^2 0.9.
    """
    criterion = candidates.criterion
    if not candidates.chosen.inner_constants:
        return []
    bar = candidates.chosen.score(criterion) + TUNING_MARGIN
    eligible = [c for c in candidates.candidates
                if c.inner_constants and c.n_terms <= MAX_PRUNED_TERMS and c.score(criterion) <= bar]
    return sorted(eligible, key=lambda c: c.score(criterion))[:TUNED]


def _screened(refitters: Mapping[str, Refitter], structures: list, options: DiscoveryOptions) -> list:
    """Every structure refitted; with many, a short refit of all, then the best ones refitted fully.

    A wrong structure rarely overtakes the right one after a dozen trust-region steps, and a
    full refit costs five times as many: on 3-state systems with 30-40 structures this saves
    most of the discovery time. ``refitters`` maps each rung to its compiled refitter.
    """
    if len(structures) <= options.finalists:
        return [refitters[_rung_of(origin)].fit(structure, start, origin) for structure, start, origin in structures]
    short = [refitters[_rung_of(origin)].fit(structure, start, origin, max_evaluations=options.screen_evaluations)
             for structure, start, origin in structures]
    ranked = sorted(short, key=lambda c: c.score(options.criterion))
    return [refitters[_rung(c)].resume(c) for c in ranked[: options.finalists]]


#: The mark in a candidate's origin ("rational, subsets") of a structure built from the best small
#: subsets (:func:`~biotwin.discover.sparse.best_subsets`), not from the regularisation path.
SUBSETS = "subsets"
#: The mark of a structure built from the best small subsets of the rates' weak form.
WEAK = "weak form"


def _rung(candidate) -> str:
    """The library rung a candidate came from ("mass action" for "mass action, pruned")."""
    return _rung_of(candidate.origin)


def _rung_of(origin: str) -> str:
    return origin.split(",")[0]


def _distinct(fitted: list, criterion: str) -> list:
    """One candidate per structure, the best-scoring: a structure screened short can be reached
    again by pruning, and its twin would hide the chosen one from the Pareto front."""
    best: dict = {}
    for candidate in fitted:
        key = structure_key(candidate.structure)
        if key not in best or candidate.score(criterion) < best[key].score(criterion):
            best[key] = candidate
    return list(best.values())


def _time_windows(grids: list, windows: int = 10) -> np.ndarray:
    """A label per grid row: its experiment and which of ``windows`` contiguous time windows it is in.

    Cross-validation holds out whole windows, so a support is judged on stretches of dynamics
    it was not fitted to, not on neighbours of its own rows.
    """
    return np.concatenate([
        experiment * windows + np.arange(len(g.times)) * windows // len(g.times) for experiment, g in enumerate(grids)
    ])


def _states(dataset: Dataset) -> tuple[str, ...]:
    """The observables as states, after checking each can be modelled."""
    states = []
    for j, name in enumerate(dataset.observables):
        if not name.isidentifier():
            raise DataError(f"observable '{name}' is not a valid state name; rename it to letters, digits and '_'")
        columns = [e.values[:, j] for e in dataset]
        if all(np.all(np.isnan(c)) for c in columns):
            raise DataError(f"observable '{name}' has no measurement in any experiment; drop it or measure it")
        measured = np.concatenate([c[~np.isnan(c)] for c in columns])
        if np.ptp(measured) == 0:
            raise DataError(
                f"observable '{name}' is constant ({measured[0]:g}) in every experiment: there are no dynamics to discover"
            )
        states.append(name)
    return tuple(states)


def _smoothed_grids(dataset: Dataset, options: DiscoveryOptions) -> tuple[list, dict, str]:
    """(experiment, uniform grid of smoothed states and derivatives) for each experiment that
    measured every observable, the smooths, and the noise model the residuals suggest."""
    from biotwin.discover.derivatives import resample, smooth_dataset

    smooths = smooth_dataset(dataset, method=options.derivative)
    grids = resample(dataset, smooths, n_points=options.grid_points)
    usable = [(e, g) for e, g in zip(dataset, grids) if not np.any(np.isnan(g.values))]
    if not usable:
        raise DataError("no experiment measured every observable; discovery needs each state observed in some experiment")
    return usable, smooths, noise_model(smooths.values())


def exogenous_inputs(dataset: Dataset, states: tuple[str, ...]) -> tuple[str, ...]:
    """The input signals the experiments apply that are not states (an inducer, a dilution rate,
    a stimulus): known functions of time that may enter any right-hand side, as the states do.

    An input named after a state is an infusion into it, not a variable of the rates.
    """
    return tuple(dict.fromkeys(u.name for e in dataset for u in e.inputs if u.name not in states))


def input_terms(states: Sequence[str], signals: Sequence[str]) -> tuple[sympy.Expr, ...]:
    """Terms every rung offers for input signals u: u itself (a production switched or dosed by
    the input) and u x for each state x (a dilution rate washing x out, a stimulus acting on x).

    Inputs mostly act linearly on the rates they touch; without these, the rational rung (whose
    polynomial part is of degree 1) could never write a chemostat's dilution D (S_in - S).
    """
    symbols = [sympy.Symbol(u) for u in signals]
    return tuple(dict.fromkeys([*symbols, *(u * sympy.Symbol(x) for u in symbols for x in states)]))


def _levels(experiment: Any, names: Sequence[str], times: np.ndarray) -> np.ndarray:
    """The level of each named input of ``experiment`` at ``times`` (T, len(names)); 0 where it applies none."""
    applied = {u.name: u for u in experiment.inputs}
    columns = [np.array([applied[n](t) for t in times]) if n in applied else np.zeros(len(times)) for n in names]
    return np.column_stack(columns) if columns else np.zeros((len(times), 0))


def noise_model(smooths) -> str:
    """``"relative"`` when the smoothing residuals grow with the signal, else ``"absolute"``.

    Fits |residual| ~ a + b |fitted| (a, b >= 0) over all observables (each in units of its
    scale) and calls the noise relative when the proportional part b * mean|fitted| is larger.
    """
    from scipy.optimize import nnls

    size, spread = [], []
    for smooth in smooths:
        scale = float(np.std(smooth.data)) or 1.0
        size.append(np.abs(smooth.fitted) / scale)
        spread.append(np.abs(smooth.data - smooth.fitted) / scale)
    size_all, spread_all = np.concatenate(size), np.concatenate(spread)
    (a, b), _ = nnls(np.column_stack([np.ones_like(size_all), size_all]), spread_all)
    return "relative" if b * float(np.mean(size_all)) > a else "absolute"


def _rungs(variables: tuple[str, ...], X: np.ndarray, dX: np.ndarray, options: DiscoveryOptions, user: Sequence[str]):
    """The libraries over ``variables`` (the states, then any input signals; columns of ``X``) to
    regress the states' rates ``dX`` on: the ladder (or the families asked for), then Operon's terms."""
    from biotwin.discover.library import Library, LibraryOptions, build_library, user_terms

    if options.families == "auto":
        rungs = [(name, build_library(variables, X, families, user=user, options=LibraryOptions(degree=degree)))
                 for name, families, degree in LADDER]
    else:
        rungs = [("chosen", build_library(variables, X, options.families, user=user))]
    if options.symbolic:
        from biotwin.discover.symbolic import additive_terms, operon_expressions

        found = operon_expressions(X, dX, variables, seed=options.seed, seconds_per_state=options.symbolic_seconds)
        extra = [t for t in user_terms(variables, [t for e in found for t in additive_terms(e, variables)])
                 if np.all(np.isfinite(Library(variables, (t,)).evaluate(X)))]
        if extra:
            base = build_library(variables, X, ("constant", "linear"), user=user)
            rungs.append(("symbolic", base.union(Library(variables, tuple(extra)))))
    return rungs


@dataclass(frozen=True)
class _Hints:
    """A prior translated into what each step needs: which states are searched, and the
    required, forbidden and signed terms of each."""

    prior: Prior
    states: tuple[str, ...]
    searched: frozenset[int]
    skeleton_parameters: tuple[Any, ...]

    @classmethod
    def of(cls, prior: Prior, states: tuple[str, ...]) -> _Hints:
        from biotwin.model import Parameter

        searched = frozenset(k for k, s in enumerate(states) if s not in prior.complete and s not in prior.dependent)
        declared = {p.name: p for p in prior.parameters}
        symbols = sorted({s.name for e in prior.known.values() for s in e.free_symbols if s.name not in states})
        parameters = tuple(declared.get(name, Parameter(name, 1.0)) for name in symbols)
        return cls(prior, states, searched, parameters)

    @property
    def offered(self) -> tuple[sympy.Expr, ...]:
        """Terms every library must contain: the prior's extra, required, forbidden and signed terms."""
        named = [*self.prior.terms, *(t for ts in self.prior.required.values() for t in ts),
                 *(t for ts in self.prior.forbidden.values() for t in ts), *(t for _, t in self.prior.signs)]
        return tuple(dict.fromkeys(named))

    def _shapes(self, state: str) -> list[sympy.Expr]:
        """The term shapes of a known part (its parameters dropped), which the skeleton already holds."""
        known = self.prior.known.get(state)
        if known is None:
            return []
        parameters = {sympy.Symbol(p.name): 1 for p in self.skeleton_parameters}
        shapes = []
        for term in sympy.Add.make_args(sympy.expand(known)):
            shape = term.subs(parameters).as_coeff_Mul()[1]
            if shape.free_symbols:
                shapes.append(shape)
        return shapes

    def constraints(self, k: int, library: Any) -> dict[str, Any]:
        """Indices into ``library`` for state k: required (with a known part's shapes), forbidden, signs."""
        state = self.states[k]
        expressions = list(library.expressions)

        def index(term: sympy.Expr) -> int | None:
            return expressions.index(term) if term in expressions else None

        required = [index(t) for t in (*self.prior.required.get(state, ()), *self._shapes(state))]
        forbidden = [index(t) for t in self.prior.forbidden.get(state, ())]
        signs = {index(t): sign for (s, t), sign in self.prior.signs.items() if s == state and index(t) is not None}
        return {
            "required": [i for i in required if i is not None],
            "forbidden": [i for i in forbidden if i is not None],
            "signs": signs or None,
            "skeleton": [i for i in (index(t) for t in self._shapes(state)) if i is not None],
        }

    def refit_signs(self, terms: list[sympy.Expr]) -> dict[tuple[int, int], int]:
        return {(self.states.index(s), terms.index(t)): sign for (s, t), sign in self.prior.signs.items() if t in terms}

    def kept(self, terms: list[sympy.Expr]) -> frozenset[tuple[int, int]]:
        return frozenset(
            (self.states.index(s), terms.index(t)) for s, ts in self.prior.required.items() for t in ts if t in terms
        )


@dataclass(frozen=True)
class _Proposal:
    """A support as terms and their coefficients on the rates (the refit's starting values)."""

    terms: tuple[sympy.Expr, ...]
    coefficients: tuple[float, ...]

    @classmethod
    def of(cls, support: Any, library: Any) -> _Proposal:
        return cls(tuple(library.expressions[j] for j in support.indices),
                   tuple(float(support.coefficients[j]) for j in support.indices))


@dataclass(frozen=True)
class _StateSupports:
    """One state's proposals from one library: the CV-chosen support, its neighbours on the path,
    the best one- and two-term subsets with their numbers fitted on the rates (one term first),
    the one of those BIC on the rates prefers, the ones BIC prefers among the best subsets of one
    or two and of up to three terms of the weak form (none without weak-form rows), and the
    densest support of the path."""

    chosen: _Proposal
    alternatives: tuple[_Proposal, ...]
    smallest: tuple[_Proposal, ...]
    sparse: _Proposal
    integral: tuple[_Proposal, ...]
    densest: _Proposal


def _state_supports(theta: np.ndarray, y: np.ndarray, groups: np.ndarray, options: DiscoveryOptions,
                    constraints: Mapping[str, Any], library: Any, X: np.ndarray,
                    frozen: frozenset[sympy.Expr], subsets: bool,
                    weak: tuple[np.ndarray, np.ndarray, float] | None = None) -> _StateSupports:
    """The CV-chosen support, up to ``alternatives`` neighbours on the path by CV error, with
    ``subsets`` the best one- and two-term subsets of the rates and of their ``weak`` form (G, b)
    (:mod:`~biotwin.discover.weak_rows`, when given), and the path's densest support, as proposals.

    The best subsets' inner numbers (a grid K) are fitted on the rates (:mod:`~biotwin.discover.refine`),
    except in ``frozen`` terms (those the user or the prior wrote). Terms a known part of the
    equation already holds are regressed (they explain part of the derivative) but left out of
    the proposals: the skeleton carries them.
    """
    from biotwin.discover.refine import refine
    from biotwin.discover.sparse import best_subsets, cv_errors, path
    from biotwin.discover.sparse import choose as choose_support

    signs = constraints["signs"]
    kept = {"required": constraints["required"], "forbidden": constraints["forbidden"], "signs": signs}
    supports = path(theta, y, **kept)
    errors = cv_errors(supports, theta, y, groups, signs=signs).mean(axis=1)
    chosen = choose_support(supports, theta, y, groups, signs=signs)
    if chosen.n_terms == 0:
        # "No dynamics" is never a discovery; take the best support that has terms.
        chosen = min((s for s in supports if s.n_terms), key=lambda s: errors[supports.index(s)], default=chosen)
    near = [s for s in supports if s.indices != chosen.indices and s.n_terms and abs(s.n_terms - chosen.n_terms) <= 3]
    near.sort(key=lambda s: errors[supports.index(s)])
    skeleton = set(constraints["skeleton"])

    def proposal(support: Any) -> _Proposal:
        return _Proposal.of(_without(support, skeleton), library)

    if not subsets:
        return _StateSupports(proposal(chosen), tuple(proposal(s) for s in near[: options.alternatives]),
                              (proposal(chosen),), proposal(chosen), (), proposal(supports[0]))

    def refined(support: Any) -> _Proposal:
        """The support as a proposal, with the grid numbers inside its terms fitted on the rates."""
        expressions = [library.expressions[j] for j in support.indices]
        fitted = refine(expressions, library.states, X, y, fixed={*frozen, *(library.expressions[j] for j in skeleton)})
        if fitted is None:
            return proposal(support)
        pairs = [(t, float(c)) for j, t, c in zip(support.indices, *fitted) if j not in skeleton]
        return _Proposal(tuple(t for t, _ in pairs), tuple(c for _, c in pairs))

    def bic(found: list, rows: float) -> np.ndarray:
        """BIC of each support on the ``rows`` rows it was fitted to: a second term must pay for itself."""
        return np.array([rows * math.log(max(s.rss, 1e-300) / rows) + s.n_terms * math.log(rows) for s in found])

    found = best_subsets(theta, y, **kept) or [chosen]
    smallest = [refined(support) for support in found]
    sparse = smallest[int(np.argmin(bic(found, len(y))))]
    integral: tuple[_Proposal, ...] = ()
    if weak is not None:
        G, b, independent = weak
        usable = np.isfinite(b) & np.all(np.isfinite(G), axis=1)
        found = best_subsets(G[usable], b[usable], sizes=(1, 2, 3), **kept)
        if found:
            scores = bic(found, max(independent * usable.sum() / len(b), 3.0))
            required = set(constraints["required"])
            few = [k for k, support in enumerate(found) if len(set(support.indices) - required) <= 2]
            # The best of one or two terms, and of up to three: a forced pendulum's c - sin x - k v is
            # the best triple of its weak form, while on ODEBench 51 a triple of look-alikes edges out
            # the true pair by 0.6 BIC.
            picks = dict.fromkeys([*([min(few, key=lambda k: scores[k])] if few else []), int(np.argmin(scores))])
            integral = tuple(dict.fromkeys(refined(found[k]) for k in picks))
    return _StateSupports(proposal(chosen), tuple(proposal(s) for s in near[: options.alternatives]),
                          tuple(smallest), sparse, integral, proposal(supports[0]))


def _without(support: Any, indices: set[int]) -> Any:
    """The support with some terms removed (they belong to the skeleton)."""
    if not indices & set(support.indices):
        return support
    kept = tuple(i for i in support.indices if i not in indices)
    coefficients = np.where(np.isin(np.arange(support.coefficients.size), kept), support.coefficients, 0.0)
    return replace(support, indices=kept, coefficients=coefficients)


def _structures(per_state: list[_StateSupports | None], terms: list[sympy.Expr], origin: str) -> list:
    """Candidate structures of one rung: the chosen supports; each state's alternatives and its best
    small subset in turn; every state's best small subset at once, and every state's single best term.

    Terms are appended to the shared ``terms`` list (one entry per distinct expression), so that
    structures from every rung index the same list.
    """

    def position(expression: sympy.Expr) -> int:
        if expression not in terms:
            terms.append(expression)
        return terms.index(expression)

    def structure(choice: list[_Proposal | None], mark: str = "") -> tuple[Structure, dict[tuple[int, int], float], str]:
        indices = tuple(tuple(position(t) for t in p.terms) if p is not None else () for p in choice)
        start = {(k, position(t)): c for k, p in enumerate(choice) if p is not None for t, c in zip(p.terms, p.coefficients)}
        return indices, start, f"{origin}, {mark}" if mark else origin

    def each(pick: Callable[[_StateSupports], _Proposal]) -> list[_Proposal | None]:
        return [pick(supports) if supports else None for supports in per_state]

    base = each(lambda s: s.chosen)
    structures = [structure(base)]
    if origin == "mass action":
        # Few terms: the densest support too, for the trajectory pruning to start from.
        structures.append(structure(each(lambda s: s.densest)))
    for k, supports in enumerate(per_state):
        for alternative, mark in ((*((a, "") for a in supports.alternatives), (supports.sparse, SUBSETS),
                                   *((w, WEAK) for w in supports.integral)) if supports else ()):
            choice = list(base)
            choice[k] = alternative
            structures.append(structure(choice, mark))
    # A mechanism of one or two terms per state that thresholding passed over (a saturating law
    # among its near-copies) is only found when every state takes it at once.
    structures.append(structure(each(lambda s: s.sparse), SUBSETS))
    structures.append(structure(each(lambda s: s.smallest[0]), SUBSETS))
    if all(s is None or s.integral for s in per_state):
        structures.append(structure(each(lambda s: s.integral[0]), WEAK))
        structures.append(structure(each(lambda s: s.integral[-1]), WEAK))
    return structures


def _unique(structures: list, searched: frozenset[int]) -> list:
    """Each structure once (terms of a state in any order), none leaving a state of ``searched`` without
    terms, and none with more than :data:`MAX_STATE_TERMS` terms in a state unless all have."""
    seen, unique = set(), []
    for indices, start, origin in structures:
        key = structure_key(indices)
        if key not in seen and all(indices[k] for k in searched):
            seen.add(key)
            unique.append((tuple(tuple(sorted(t)) for t in indices), start, origin))
    sparse = [s for s in unique if max(len(t) for t in s[0]) <= MAX_STATE_TERMS]
    return sparse or unique


def _inclusion(library, X, dX, groups, states, options) -> dict[str, dict[str, float]]:
    """Per state, the share of bootstrap resamples in which sparse regression on the chosen model's
    library selects each term (terms never selected are left out)."""
    from biotwin.discover.sparse import inclusion_probabilities

    if options.n_bags <= 0:
        return {}
    theta = library.evaluate(X)
    result = {}
    for k, state in enumerate(states):
        probabilities, _ = inclusion_probabilities(theta, dX[:, k], n_bags=options.n_bags, seed=options.seed,
                                                   groups=groups)
        result[state] = {label: float(p) for label, p in zip(library.labels, probabilities) if p > 0}
    return result

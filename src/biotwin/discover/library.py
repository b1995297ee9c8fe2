"""Mechanism-aware term libraries: the candidate functions theta_k(x) of sparse regression.

Sparse regression writes each right-hand side as a short sum over a library,

    dx_i/dt = sum_k xi_ik theta_k(x),

so the library decides which mechanisms can be found at all. A polynomial library fits
Michaelis-Menten data well and extrapolates badly; rational kinetics need their own terms with the
constants K and n *in the term*, searched on a grid spanning the data. A :class:`Term` is one
function of the states with fixed numbers only (``x*y``, ``x/(0.5 + x)``, ``0.3^2/(0.3^2 + y^2)``,
``sin(x)``); a :class:`Library` is a tuple of them over named states, evaluated on data as the
matrix Theta (T, L).

Families
--------
Every family is *data*: a :class:`Family` entry in :data:`FAMILIES` holding one pure builder
``(states, ranges, options) -> terms``, where ``ranges`` is the (low, high) interval of each state in
the data. With x_j a state, K a grid constant and n a Hill exponent:

==========================  ==========================================================================
``constant``                1
``linear``                  x_j (first-order kinetics: decay, conversion, transport)
``polynomial``              every monomial of total degree 1..d; d = ``options.degree``, by default 3 for
                            one or two states and 2 for more (cubic libraries of three or more states
                            are large and collinear; ask for them explicitly)
``mass_action``             the degree-2 monomials x_i x_j (i <= j, squares included: dimerisation).
                            Equal to part of ``polynomial``; kept as its own name so priors can speak of it
``michaelis_menten``        x_j/(K + x_j) and x_i x_j/(K + x_j) for i != j (an enzyme or carrier x_i
                            saturating in its substrate x_j), K on the grid of x_j
``hill_activation``         x_j^n/(K^n + x_j^n), n in ``options.hill_exponents`` (1, 2, 3, 4), K on the grid
``hill_repression``         K^n/(K^n + x_j^n), same n and K
``substrate_inhibition``    x_j/(K^2 + x_j^2) and x_i x_j/(K^2 + x_j^2) for i != j: a rate that peaks at
                            x_j = K and falls beyond (Andrews' substrate inhibition), K on the grid
``trigonometric``           sin(w x_j), cos(w x_j) for w in ``options.frequencies`` (default 1 only: ODEBench's
                            trigonometric right-hand sides use sin/cos of a state; add e.g. (0.5, 1, 2)
                            for other periods)
``trigonometric_products``  sin(x_i) cos(x_j) for every i, j (i = j: half of sin(2 x_i)), sin(x_i) sin(x_j) and
                            cos(x_i) cos(x_j) for i < j: coupled phase oscillators and rotating frames
                            (sin(x_i - x_j) = sin x_i cos x_j - cos x_i sin x_j is two of them)
``exponential``             exp(-x_j) and x_i exp(-x_j) for every i (decay of an activity with a dose,
                            Arrhenius-like and Gompertz-like forms). Built only for states with
                            x_j >= -``options.exp_limit`` (50) on the data, so exp(-x_j) <= e^50 and cannot
                            overflow or swamp the other columns
``logarithmic``             log x_j and x_j log x_j for states positive on the data (Gompertz growth)
==========================  ==========================================================================

User terms (``user=`` of :func:`build_library`, or :func:`user_terms`) are SymPy expressions or
model-language strings (parsed with :func:`biotwin.model.parse_expression`) of the states and
numbers; any other symbol is a :class:`~biotwin.errors.ModelError` that names it. Their family is
``"user"``.

The K grid of a state (:func:`k_grid`) has ``options.k_points`` (5) values log-spaced between 5% and
200% of max |x_j| on the data, rounded to two significant digits so they read well in a model.
K values with K/2 <= -min x_j are left out: a denominator K + x_j (or K^n + x_j^n) that comes
near zero on noisy, slightly negative concentrations would give a pole inside the data.

Presets (``families="bio"`` or ``"physics"``)
---------------------------------------------
* ``bio``: constant, linear, mass_action, michaelis_menten, hill_activation, hill_repression --
  zero-, first- and second-order mass action plus saturating and switch-like regulation. Three
  states give 1 + 3 + 6 + 45 + 45 + 60 = 160 terms (Hill n = 1 activation equals the MM term and
  is merged).
* ``physics`` (ODEBench-like): constant, polynomial, michaelis_menten, trigonometric,
  trigonometric_products, exponential. Two states give 10 + 20 + 4 + 6 + 6 = 46 terms.

Size cap
--------
A library keeps at most ``options.max_terms`` (200) terms. Terms are first evaluated on the data
(or, when only ranges are given, on 256 Halton points of the box of ranges); a term whose column
is non-finite anywhere or zero everywhere (``|theta| <= 2.2e-308``, i.e. exactly zero or
underflowed) is dropped. If more than ``max_terms`` remain, the *protected* families (constant,
linear, polynomial, mass_action, user) are kept first, in order (the first ``max_terms`` of them
if they alone are more), and the rest are added greedily, least collinear first: each step adds
the term whose unit-norm column has the largest residual after projection on the columns already
kept (pivoted Gram-Schmidt, on at most 2000 evenly spaced rows). So the terms dropped are those
best explained by the kept ones: neighbouring K values, Hill exponents that look alike on the
data. The kept terms stay in family order.
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

import numpy as np
import sympy
from scipy.stats import qmc
from sympy.printing.str import StrPrinter

from biotwin.errors import DataError, ModelError
from biotwin.model import parse_expression

Ranges = tuple[tuple[float, float], ...]
PROTECTED = frozenset({"constant", "linear", "polynomial", "mass_action", "user"})
_TINY = float(np.finfo(float).tiny)
_MAX_CAP_ROWS = 2000


class _LabelPrinter(StrPrinter):
    """SymPy's text printer with short floats (six significant digits) and ``^`` for powers."""

    def _print_Float(self, expr: sympy.Float) -> str:
        return _num(float(expr))


def _num(value: float) -> str:
    return f"{value:.6g}"


def _text(expr: sympy.Expr) -> str:
    return _LabelPrinter().doprint(expr).replace("**", "^")


@dataclass(frozen=True)
class Term:
    """One candidate function theta(x) of the states, with fixed numbers only.

    ``expr`` is a SymPy expression whose free symbols are states; ``family`` names the family it
    came from (for priors and reports); ``label`` is readable text in the model language (by
    default the printed expression).
    """

    expr: sympy.Expr
    family: str
    label: str = ""

    def __post_init__(self) -> None:
        expr = parse_expression(self.expr) if isinstance(self.expr, str) else sympy.sympify(self.expr)
        if not isinstance(expr, sympy.Expr):
            raise ModelError(f"library term {self.expr!r} is not an arithmetic expression")
        if expr.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):
            raise ModelError(f"library term '{_text(expr)}' is infinite or undefined")
        # Symbols are matched by name: Symbol('x', positive=True) is the state x.
        expr = expr.xreplace({s: sympy.Symbol(s.name) for s in expr.free_symbols})
        if not self.family:
            raise ModelError(f"library term '{_text(expr)}' has no family name")
        object.__setattr__(self, "expr", expr)
        object.__setattr__(self, "label", self.label or _text(expr))


@dataclass(frozen=True, eq=False)
class Library:
    """Candidate terms over named states; :meth:`evaluate` gives the regression matrix Theta.

    Terms are deduplicated by expression (the first one of equal expressions is kept, with its
    family and label). Every term may use the states only; another symbol raises
    :class:`~biotwin.errors.ModelError` naming it.
    """

    states: tuple[str, ...]
    terms: tuple[Term, ...]

    def __post_init__(self) -> None:
        states = tuple(str(s) for s in self.states)
        repeated = sorted({s for s in states if states.count(s) > 1})
        if repeated:
            raise ModelError(f"state {repeated[0]!r} appears twice in the library's states")
        known = set(states)
        unique: dict[sympy.Expr, Term] = {}
        for term in self.terms:
            if not isinstance(term, Term):
                raise ModelError(f"library terms must be Term values, got {type(term).__name__}")
            _check_symbols(term.expr, term.label, known, states)
            unique.setdefault(term.expr, term)
        object.__setattr__(self, "states", states)
        object.__setattr__(self, "terms", tuple(unique.values()))

    def __len__(self) -> int:
        return len(self.terms)

    @property
    def labels(self) -> tuple[str, ...]:
        """Readable text of each term, in column order."""
        return tuple(t.label for t in self.terms)

    @property
    def families(self) -> tuple[str, ...]:
        """Family of each term, in column order."""
        return tuple(t.family for t in self.terms)

    @property
    def expressions(self) -> tuple[sympy.Expr, ...]:
        """SymPy expression of each term, in column order."""
        return tuple(t.expr for t in self.terms)

    def union(self, other: Library) -> Library:
        """This library's terms followed by the other's new ones (same states required)."""
        if other.states != self.states:
            raise ModelError(
                f"cannot join libraries over different states {self.states} and {other.states}; "
                "build both over the same states in the same order"
            )
        return Library(self.states, self.terms + other.terms)

    def subset(self, indices: Iterable[int]) -> Library:
        """The library of the terms at ``indices`` (column numbers), in that order."""
        chosen = [int(i) for i in indices]
        bad = [i for i in chosen if not -len(self) <= i < len(self)]
        if bad:
            raise ModelError(f"term index {bad[0]} is out of range for a library of {len(self)} terms")
        return Library(self.states, tuple(self.terms[i] for i in chosen))

    @cached_property
    def _function(self) -> Callable[..., Any]:
        symbols = [sympy.Symbol(s) for s in self.states]
        return sympy.lambdify(symbols, list(self.expressions), modules="numpy")

    def evaluate(self, X: np.ndarray) -> np.ndarray:
        """Theta[t, k] = theta_k(X[t]) for states X of shape (T, n_states); returns (T, L).

        Compiled once per library with ``sympy.lambdify(modules="numpy")``. Values outside a
        term's domain come out as NaN or inf (no warning).
        """
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != len(self.states):
            raise DataError(
                f"states must have shape (T, {len(self.states)}) for states {self.states}, got {X.shape}"
            )
        T = X.shape[0]
        if not self.terms:
            return np.zeros((T, 0))
        with np.errstate(all="ignore"):
            columns = self._function(*X.T)
            out = np.empty((T, len(self.terms)))
            for k, column in enumerate(columns):
                out[:, k] = np.broadcast_to(np.asarray(column, dtype=float), (T,))
        return out

    def __getstate__(self) -> dict[str, Any]:
        # The compiled function is a cache: rebuilt on first use after unpickling.
        return {k: v for k, v in self.__dict__.items() if k != "_function"}


def _check_symbols(expr: sympy.Expr, label: str, known: set[str], states: Sequence[str]) -> None:
    unknown = sorted(s.name for s in expr.free_symbols if s.name not in known)
    if unknown:
        raise ModelError(
            f"library term '{label}': unknown symbol '{unknown[0]}'; a term may use only the states "
            f"({', '.join(states)}) and numbers"
        )


# ---------------------------------------------------------------------- options and grids
@dataclass(frozen=True)
class LibraryOptions:
    """Settings shared by the family builders; see the module docstring for their meaning."""

    degree: int | None = None
    k_points: int = 5
    k_span: tuple[float, float] = (0.05, 2.0)
    hill_exponents: tuple[int, ...] = (1, 2, 3, 4)
    frequencies: tuple[float, ...] = (1.0,)
    exp_limit: float = 50.0
    max_terms: int = 200

    def __post_init__(self) -> None:
        if self.degree is not None and self.degree < 1:
            raise ModelError(f"polynomial degree must be >= 1, got {self.degree}")
        if self.k_points < 1:
            raise ModelError(f"k_points must be >= 1, got {self.k_points}")
        low, high = self.k_span
        if not 0 < low <= high:
            raise ModelError(f"k_span must be (low, high) with 0 < low <= high, got {self.k_span}")
        if any(int(n) != n or n < 1 for n in self.hill_exponents):
            raise ModelError(f"Hill exponents must be positive integers, got {self.hill_exponents}")
        if any(not math.isfinite(w) or w <= 0 for w in self.frequencies):
            raise ModelError(f"frequencies must be positive numbers, got {self.frequencies}")
        if self.max_terms < 1:
            raise ModelError(f"max_terms must be >= 1, got {self.max_terms}")

    def polynomial_degree(self, n_states: int) -> int:
        """The degree used: ``degree`` if set, else 3 for one or two states and 2 for more."""
        if self.degree is not None:
            return self.degree
        return 3 if n_states <= 2 else 2


def _round2(value: float) -> float:
    """Round to two significant digits."""
    if value == 0:
        return 0.0
    return float(f"{value:.2g}")


def k_grid(low: float, high: float, options: LibraryOptions = LibraryOptions()) -> tuple[float, ...]:
    """The grid of constants K for a state observed in [low, high].

    ``k_points`` values log-spaced over ``k_span`` (default 5%..200%) of max(|low|, |high|),
    rounded to two significant digits, increasing; K with K/2 <= -low (a pole near the data) are
    left out. Empty when the state is zero or not finite on the data.
    """
    scale = max(abs(low), abs(high))
    if not math.isfinite(scale) or scale <= 0:
        return ()
    values = scale * np.geomspace(options.k_span[0], options.k_span[1], options.k_points)
    return tuple(sorted({k for k in (_round2(float(v)) for v in values) if k > 0 and k / 2 > -low}))


# ---------------------------------------------------------------------- families
Builder = Callable[[tuple[str, ...], Ranges, LibraryOptions], tuple[Term, ...]]


@dataclass(frozen=True)
class Family:
    """A named family of terms: ``build(states, ranges, options) -> terms``."""

    name: str
    description: str
    build: Builder = field(repr=False)


def _sym(name: str) -> sympy.Symbol:
    return sympy.Symbol(name)


def _constant(states: tuple[str, ...], ranges: Ranges, options: LibraryOptions) -> tuple[Term, ...]:
    return (Term(sympy.Integer(1), "constant", "1"),)


def _linear(states: tuple[str, ...], ranges: Ranges, options: LibraryOptions) -> tuple[Term, ...]:
    return tuple(Term(_sym(s), "linear", s) for s in states)


def _monomials(states: tuple[str, ...], degrees: Iterable[int], family: str) -> tuple[Term, ...]:
    symbols = [_sym(s) for s in states]
    terms = []
    for d in degrees:
        for combo in itertools.combinations_with_replacement(range(len(states)), d):
            expr = sympy.Mul(*(symbols[i] for i in combo))
            terms.append(Term(expr, family))
    return tuple(terms)


def _polynomial(states: tuple[str, ...], ranges: Ranges, options: LibraryOptions) -> tuple[Term, ...]:
    degree = options.polynomial_degree(len(states))
    return _monomials(states, range(1, degree + 1), "polynomial")


def _mass_action(states: tuple[str, ...], ranges: Ranges, options: LibraryOptions) -> tuple[Term, ...]:
    return _monomials(states, (2,), "mass_action")


def _michaelis_menten(states: tuple[str, ...], ranges: Ranges, options: LibraryOptions) -> tuple[Term, ...]:
    terms = []
    for j, xj in enumerate(states):
        for K in k_grid(*ranges[j], options):
            k = _num(K)
            terms.append(Term(_sym(xj) / (sympy.Float(K) + _sym(xj)), "michaelis_menten", f"{xj}/({k} + {xj})"))
    for j, xj in enumerate(states):
        for K in k_grid(*ranges[j], options):
            k = _num(K)
            for i, xi in enumerate(states):
                if i != j:
                    expr = _sym(xi) * _sym(xj) / (sympy.Float(K) + _sym(xj))
                    terms.append(Term(expr, "michaelis_menten", f"{xi}*{xj}/({k} + {xj})"))
    return tuple(terms)


def _hill(states: tuple[str, ...], ranges: Ranges, options: LibraryOptions, repression: bool) -> tuple[Term, ...]:
    family = "hill_repression" if repression else "hill_activation"
    terms = []
    for j, xj in enumerate(states):
        x = _sym(xj)
        for n in sorted({int(n) for n in options.hill_exponents}):
            for K in k_grid(*ranges[j], options):
                Kn = sympy.Float(K**n)
                kn = _num(K) if n == 1 else f"{_num(K)}^{n}"
                xn = xj if n == 1 else f"{xj}^{n}"
                if repression:
                    terms.append(Term(Kn / (Kn + x**n), family, f"{kn}/({kn} + {xn})"))
                else:
                    terms.append(Term(x**n / (Kn + x**n), family, f"{xn}/({kn} + {xn})"))
    return tuple(terms)


def _substrate_inhibition(states: tuple[str, ...], ranges: Ranges, options: LibraryOptions) -> tuple[Term, ...]:
    """x_j/(K^2 + x_j^2) and x_i x_j/(K^2 + x_j^2) for i != j, K on the grid of x_j.

    A rate that rises with its substrate x_j, peaks at x_j = K and falls beyond: substrate
    inhibition in Andrews' form, S/(K_s + S^2/K_i) (Haldane's S/(K_s + S + S^2/K_i) where the
    first-order term of the denominator is negligible), with K^2 = K_s K_i. The chlorine
    dioxide-iodine-malonic acid and bacterial-respiration models have it, times a second state.
    """
    terms = []
    for j, xj in enumerate(states):
        x = _sym(xj)
        for K in k_grid(*ranges[j], options):
            K2, k2 = sympy.Float(K**2), f"{_num(K)}^2"
            terms.append(Term(x / (K2 + x**2), "substrate_inhibition", f"{xj}/({k2} + {xj}^2)"))
            for i, xi in enumerate(states):
                if i != j:
                    terms.append(Term(_sym(xi) * x / (K2 + x**2), "substrate_inhibition", f"{xi}*{xj}/({k2} + {xj}^2)"))
    return tuple(terms)


def _hill_activation(states: tuple[str, ...], ranges: Ranges, options: LibraryOptions) -> tuple[Term, ...]:
    return _hill(states, ranges, options, repression=False)


def _hill_repression(states: tuple[str, ...], ranges: Ranges, options: LibraryOptions) -> tuple[Term, ...]:
    return _hill(states, ranges, options, repression=True)


def _trigonometric(states: tuple[str, ...], ranges: Ranges, options: LibraryOptions) -> tuple[Term, ...]:
    terms = []
    for w in options.frequencies:
        factor = sympy.Integer(int(w)) if float(w).is_integer() else sympy.Float(w)
        for xj in states:
            arg = factor * _sym(xj)
            text = xj if factor == 1 else f"{_num(w)}*{xj}"
            terms.append(Term(sympy.sin(arg), "trigonometric", f"sin({text})"))
            terms.append(Term(sympy.cos(arg), "trigonometric", f"cos({text})"))
    return tuple(terms)


def _trigonometric_products(states: tuple[str, ...], ranges: Ranges, options: LibraryOptions) -> tuple[Term, ...]:
    terms = []
    for xi, xj in itertools.product(states, repeat=2):
        terms.append(Term(sympy.sin(_sym(xi)) * sympy.cos(_sym(xj)), "trigonometric_products", f"sin({xi})*cos({xj})"))
    for xi, xj in itertools.combinations(states, 2):
        terms.append(Term(sympy.sin(_sym(xi)) * sympy.sin(_sym(xj)), "trigonometric_products", f"sin({xi})*sin({xj})"))
        terms.append(Term(sympy.cos(_sym(xi)) * sympy.cos(_sym(xj)), "trigonometric_products", f"cos({xi})*cos({xj})"))
    return tuple(terms)


def _exponential(states: tuple[str, ...], ranges: Ranges, options: LibraryOptions) -> tuple[Term, ...]:
    usable = [j for j, (low, _) in enumerate(ranges) if low >= -options.exp_limit]
    terms = [Term(sympy.exp(-_sym(states[j])), "exponential", f"exp(-{states[j]})") for j in usable]
    for j in usable:
        for xi in states:
            expr = _sym(xi) * sympy.exp(-_sym(states[j]))
            terms.append(Term(expr, "exponential", f"{xi}*exp(-{states[j]})"))
    return tuple(terms)


def _logarithmic(states: tuple[str, ...], ranges: Ranges, options: LibraryOptions) -> tuple[Term, ...]:
    """log x_j and x_j log x_j for the states that stay positive on the data.

    Gompertz growth, dV/dt = a V log(K/V) = (a log K) V - a V log V, is a linear term plus
    V log V: tumour growth and ageing curves are written this way.
    """
    terms = []
    for j, xj in enumerate(states):
        if ranges[j][0] > 0:
            x = _sym(xj)
            terms.append(Term(sympy.log(x), "logarithmic", f"log({xj})"))
            terms.append(Term(x * sympy.log(x), "logarithmic", f"{xj}*log({xj})"))
    return tuple(terms)


FAMILIES: Mapping[str, Family] = MappingProxyType(
    {
        f.name: f
        for f in (
            Family("constant", "1", _constant),
            Family("linear", "x_j", _linear),
            Family("polynomial", "monomials of degree 1..d", _polynomial),
            Family("mass_action", "x_i x_j (degree-2 monomials)", _mass_action),
            Family("michaelis_menten", "x_j/(K + x_j), x_i x_j/(K + x_j)", _michaelis_menten),
            Family("hill_activation", "x_j^n/(K^n + x_j^n)", _hill_activation),
            Family("hill_repression", "K^n/(K^n + x_j^n)", _hill_repression),
            Family("substrate_inhibition", "x_j/(K^2 + x_j^2), x_i x_j/(K^2 + x_j^2)", _substrate_inhibition),
            Family("trigonometric", "sin(w x_j), cos(w x_j)", _trigonometric),
            Family("trigonometric_products", "sin(x_i) cos(x_j), sin(x_i) sin(x_j), cos(x_i) cos(x_j)",
                   _trigonometric_products),
            Family("exponential", "exp(-x_j), x_i exp(-x_j)", _exponential),
            Family("logarithmic", "log x_j, x_j log x_j (positive states)", _logarithmic),
        )
    }
)

PRESETS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "bio": ("constant", "linear", "mass_action", "michaelis_menten", "hill_activation", "hill_repression", "logarithmic"),
        "physics": ("constant", "polynomial", "michaelis_menten", "trigonometric", "trigonometric_products",
                    "exponential"),
    }
)


def user_terms(states: Sequence[str], expressions: Iterable[str | sympy.Expr | Term]) -> tuple[Term, ...]:
    """Terms written by the user: model-language strings, SymPy expressions or :class:`Term` values.

    Strings are parsed with :func:`biotwin.model.parse_expression`; the family is ``"user"`` (a
    :class:`Term` keeps its own). A symbol that is not a state raises
    :class:`~biotwin.errors.ModelError` naming it.
    """
    states = tuple(states)
    known = set(states)
    terms = []
    for number, item in enumerate(expressions, start=1):
        if isinstance(item, Term):
            term = item
        elif isinstance(item, str):
            try:
                expr = parse_expression(item.strip(), number)
            except ModelError as error:
                raise ModelError(f"library term {number} ('{item.strip()}'): {error}") from None
            term = Term(expr, "user", item.strip())
        else:
            term = Term(item, "user")
        _check_symbols(term.expr, term.label, known, states)
        terms.append(term)
    return tuple(terms)


# ---------------------------------------------------------------------- building
def _ranges(states: tuple[str, ...], data: Any) -> tuple[Ranges, np.ndarray | None]:
    """Per-state (low, high) and the finite data rows (None when ranges were given)."""
    n = len(states)
    X = None
    if isinstance(data, Mapping):
        missing = [s for s in states if s not in data]
        if missing:
            raise DataError(f"no range given for state '{missing[0]}'; give (low, high) for each of {states}")
        pairs = [tuple(data[s]) for s in states]
    else:
        array = np.asarray(data, dtype=float)
        if array.ndim != 2 or array.shape[1] != n:
            raise DataError(
                f"data must be states of shape (T, {n}) or a mapping {{state: (low, high)}}, got shape {array.shape}"
            )
        X = array[np.all(np.isfinite(array), axis=1)]
        if X.shape[0] == 0:
            raise DataError("the data have no row where every state is finite; cannot build a library")
        pairs = list(zip(X.min(axis=0).tolist(), X.max(axis=0).tolist()))
    ranges = []
    for state, pair in zip(states, pairs):
        if len(pair) != 2 or not all(math.isfinite(float(v)) for v in pair) or float(pair[0]) > float(pair[1]):
            raise DataError(f"range of state '{state}' must be finite (low, high) with low <= high, got {pair}")
        ranges.append((float(pair[0]), float(pair[1])))
    return tuple(ranges), X


def _points(ranges: Ranges, n: int = 256) -> np.ndarray:
    """Deterministic evaluation points filling the box of ranges (unscrambled Halton sequence)."""
    low = np.array([r[0] for r in ranges])
    high = np.array([r[1] for r in ranges])
    unit = qmc.Halton(d=len(ranges), scramble=False).random(n)
    return low + unit * (high - low)


def build_library(
    states: Sequence[str],
    data: np.ndarray | Mapping[str, tuple[float, float]],
    families: str | Sequence[str] = "bio",
    *,
    user: Iterable[str | sympy.Expr | Term] = (),
    options: LibraryOptions | None = None,
) -> Library:
    """The term library of ``families`` over ``states``, sized to the data.

    ``data`` is either states sampled on the data, shape (T, n_states) (rows with NaN are
    ignored), or per-state ranges as a mapping ``{state: (low, high)}``. ``families`` is a
    preset (``"bio"``, ``"physics"``) or a sequence of family names from :data:`FAMILIES`;
    ``user`` adds terms (see :func:`user_terms`). Terms whose column is non-finite or zero on
    the data are dropped, and the result is capped at ``options.max_terms`` (see the module
    docstring).
    """
    states = tuple(str(s) for s in states)
    if not states:
        raise ModelError("a library needs at least one state")
    options = options or LibraryOptions()
    ranges, X = _ranges(states, data)
    names = PRESETS[families] if isinstance(families, str) and families in PRESETS else families
    if isinstance(names, str):
        names = (names,)
    terms: list[Term] = []
    for name in names:
        if name not in FAMILIES:
            close = difflib.get_close_matches(name, [*FAMILIES, *PRESETS], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            known = ", ".join([*FAMILIES, *PRESETS])
            raise ModelError(f"unknown library family '{name}'{hint}; known: {known}")
        terms.extend(FAMILIES[name].build(states, ranges, options))
    terms.extend(user_terms(states, user))
    library = Library(states, tuple(terms))
    points = X if X is not None else _points(ranges)
    theta = library.evaluate(points)
    keep = np.all(np.isfinite(theta), axis=0) & (np.max(np.abs(theta), axis=0, initial=0.0) > _TINY)
    kept = np.flatnonzero(keep)
    if kept.size > options.max_terms:
        kept = _least_collinear(theta[:, kept], [library.terms[i].family for i in kept], options.max_terms, kept)
    return library.subset(kept)


def _least_collinear(theta: np.ndarray, families: list[str], cap: int, index: np.ndarray) -> np.ndarray:
    """Indices (into ``index``) of at most ``cap`` columns: protected first, then least collinear."""
    rows = theta.shape[0]
    if rows > _MAX_CAP_ROWS:
        theta = theta[np.linspace(0, rows - 1, _MAX_CAP_ROWS).round().astype(int)]
    columns = theta / np.linalg.norm(theta, axis=0)
    protected = [k for k, f in enumerate(families) if f in PROTECTED][:cap]
    chosen = list(protected)
    others = np.array([k for k in range(len(families)) if k not in set(protected)], dtype=int)
    residual = columns[:, others].copy()
    if protected:
        q, _ = np.linalg.qr(columns[:, protected])
        residual -= q @ (q.T @ residual)
    available = np.ones(others.size, dtype=bool)
    while len(chosen) < cap and available.any():
        norms = np.where(available, np.linalg.norm(residual, axis=0), -1.0)
        best = int(np.argmax(norms))
        available[best] = False
        chosen.append(int(others[best]))
        if norms[best] > 0:
            q = residual[:, best] / norms[best]
            residual -= np.outer(q, q @ residual)
    return index[np.sort(np.array(chosen, dtype=int))]

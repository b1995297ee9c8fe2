"""Symbolic-regression candidates: Operon's expressions, cut into terms for the library.

Operon (pyoperon) fits each state's derivative estimate, dx_k/dt ~ f_k(x), by genetic
programming with local optimisation of constants. Its best expressions find the main
mechanisms quickly but carry spurious pieces, so they are not taken as they are: each is expanded
and cut into additive terms, leading constants dropped (c * phi(x) -> phi(x)), and those terms
join the term library. Sparse regression and the trajectory refit then decide which survive,
with coefficients fitted afresh. Constants inside a term (a half-saturation constant, a
frequency) are kept as Operon found them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sympy

#: Operators given to Operon: arithmetic plus the functions of ODEBench's physics systems.
OPERATORS = "add,sub,mul,div,constant,variable,sin,cos,exp"


def operon_expressions(
    X: np.ndarray,
    dXdt: np.ndarray,
    states: Sequence[str],
    *,
    seed: int = 0,
    generations: int = 100,
    population_size: int = 300,
    max_length: int = 25,
    seconds_per_state: int = 10,
) -> list[sympy.Expr]:
    """Operon's chosen expression for each column of ``dXdt`` as SymPy in ``states``, the names of
    the columns of ``X`` (the states, then any input signals the rates may depend on)."""
    from pyoperon.sklearn import SymbolicRegressor

    symbols = {name: sympy.Symbol(name) for name in states}
    expressions = []
    for k in range(dXdt.shape[1]):
        regressor = SymbolicRegressor(
            allowed_symbols=OPERATORS, generations=generations, population_size=population_size,
            max_length=max_length, n_threads=1, random_state=seed, max_time=seconds_per_state,
        )
        regressor.fit(X, dXdt[:, k])
        text = regressor.get_model_string(regressor.model_, 10, list(states))
        expressions.append(sympy.sympify(text, locals=symbols))
    return expressions


def additive_terms(expression: sympy.Expr, states: Sequence[str], *, max_nodes: int = 25) -> list[sympy.Expr]:
    """The state-dependent additive terms of an expression, leading numeric factors removed.

    Constants alone are dropped (the library has its own constant term) and so are terms larger
    than ``max_nodes`` expression nodes, which are too intricate to be a mechanism.
    """
    symbols = {sympy.Symbol(s) for s in states}
    terms: list[sympy.Expr] = []
    for term in sympy.Add.make_args(sympy.expand(expression)):
        if not term.free_symbols & symbols:
            continue
        _, rest = term.as_coeff_Mul()
        rest = _round_constants(rest)
        if sum(1 for _ in sympy.preorder_traversal(rest)) <= max_nodes and rest not in terms:
            terms.append(rest)
    return terms


def _round_constants(expression: sympy.Expr, digits: int = 4) -> sympy.Expr:
    """Constants inside a term to a few significant digits, so near-duplicates coincide."""
    return expression.xreplace({f: sympy.Float(float(f"{float(f):.{digits}g}")) for f in expression.atoms(sympy.Float)})

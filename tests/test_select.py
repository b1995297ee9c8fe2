"""Trajectory refit and selection: starts for pruned structures, and fragile candidates."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import sympy

from biotwin.data import Dataset, Experiment
from biotwin.discover.fragility import fragile, robust_choice
from biotwin.discover.select import Candidate, Candidates, Refitter, choose
from biotwin.model import Model, Parameter
from biotwin.simulate import simulate

x = sympy.Symbol("x")
TERMS = [sympy.Integer(1), x, x**2]


@pytest.fixture(scope="module")
def logistic() -> Dataset:
    """x' = 1.8 x - 0.11 x^2 from x = 1 (ODEBench's laser), 5% noise, fixed seed."""
    r, k = sympy.symbols("r k")
    model = Model(("x",), (r * x - k * x**2,), parameters=(Parameter("r", 1.8), Parameter("k", 0.11)))
    times = np.linspace(0.0, 4.0, 60)
    clean = simulate(model, y0={"x": 1.0}, times=times).state("x")
    noisy = clean * (1 + 0.05 * np.random.default_rng(0).standard_normal(times.size))
    return Dataset((Experiment("run", times, ("x",), noisy[:, None]),))


@pytest.fixture(scope="module")
def refitter(logistic: Dataset) -> Refitter:
    samples = logistic.experiments[0].values
    return Refitter(logistic, ("x",), TERMS, 3, max_evaluations=60, samples=samples)


def test_a_pruned_structure_starts_from_the_projection_of_the_larger_field(refitter: Refitter) -> None:
    full = refitter.fit(((0, 1, 2),), {(0, 0): 0.0, (0, 1): 1.0, (0, 2): -0.1}, "test")
    start = refitter.projected(full, ((1, 2),))
    values = refitter.term_values
    field = values @ np.array([full.fit.parameters[refitter.names[(0, j)]] for j in range(3)])
    projected = values[:, [1, 2]] @ np.array([start[(0, 1)], start[(0, 2)]])
    truncated = values[:, [1, 2]] @ np.array([full.fit.parameters[refitter.names[(0, j)]] for j in (1, 2)])
    # The least-squares projection is at least as close to the full field as dropping the constant.
    assert np.sum((field - projected) ** 2) <= np.sum((field - truncated) ** 2) + 1e-12
    # And a field inside the smaller span projects onto itself.
    inside = refitter.fit(((1, 2),), {(0, 1): 1.8, (0, 2): -0.11}, "test")
    again = refitter.projected(inside, ((1, 2),))
    assert again[(0, 1)] == pytest.approx(inside.fit.parameters[refitter.names[(0, 1)]], rel=1e-9)


def test_the_logistic_refitted_from_the_projection_recovers_its_coefficients(refitter: Refitter) -> None:
    full = refitter.fit(((0, 1, 2),), {(0, 0): 0.5, (0, 1): 1.0, (0, 2): -0.05}, "test")
    logistic = refitter.fit(((1, 2),), refitter.projected(full, ((1, 2),)), "pruned")
    assert logistic.fit.parameters[refitter.names[(0, 1)]] == pytest.approx(1.8, rel=0.1)
    assert logistic.fit.parameters[refitter.names[(0, 2)]] == pytest.approx(-0.11, rel=0.1)


def _unstable(refitter: Refitter) -> Candidate:
    """x' = 3 x (x - 1.05) from x = 1, fitting the data ten times better than it does (a fragile look-alike):
    it decays from x = 1 but blows up from 1.1."""
    base = refitter.fit(((1, 2),), {(0, 1): 1.8, (0, 2): -0.11}, "unstable")
    coefficients = {refitter.names[(0, 1)]: -3.15, refitter.names[(0, 2)]: 3.0}
    fit = replace(base.fit, parameters={**base.fit.parameters, **coefficients}, initial={"run": {"x": 1.0}},
                  rss=base.fit.rss / 10)
    c1, c2 = (sympy.Symbol(name) for name in coefficients)
    model = Model(("x",), (c1 * x + c2 * x**2,), parameters=tuple(Parameter(n, v) for n, v in coefficients.items()))
    return replace(base, model=model, fit=fit)


def test_a_candidate_that_blows_up_from_a_nearby_start_is_not_chosen(refitter: Refitter) -> None:
    robust = refitter.fit(((1, 2),), {(0, 1): 1.8, (0, 2): -0.11}, "robust")
    unstable = _unstable(refitter)
    assert fragile(refitter, unstable)
    assert not fragile(refitter, robust)
    candidates = choose([unstable, robust], "bic")
    assert candidates.chosen is unstable  # the criterion alone prefers it
    assert robust_choice(candidates, lambda candidate: refitter).chosen is robust


def test_when_every_candidate_is_fragile_the_criterion_choice_stands(refitter: Refitter) -> None:
    unstable = _unstable(refitter)
    candidates: Candidates = choose([unstable], "bic")
    assert robust_choice(candidates, lambda candidate: refitter).chosen is unstable


def test_choose_never_picks_an_excluded_candidate(refitter: Refitter) -> None:
    a = refitter.fit(((1, 2),), {(0, 1): 1.8, (0, 2): -0.11}, "a")
    b = refitter.fit(((0, 1),), {(0, 0): 1.0, (0, 1): 0.1}, "b")
    best = choose([a, b], "bic").chosen_index
    assert choose([a, b], "bic", excluded=frozenset({best})).chosen_index == 1 - best


def test_pruning_swaps_a_look_alike_with_an_inner_constant_for_the_plain_term(logistic: Dataset) -> None:
    """x exp(-0.001 x) imitates x on the data; elimination alone cannot reach 1.8 x - 0.11 x^2 from
    (x exp(-0.001 x), x^2), a swap can, and the swapped structure wins: one fitted constant fewer."""
    from biotwin.discover.select import eliminate

    look_alike = x * sympy.exp(-sympy.Float(0.001) * x)
    terms = [sympy.Integer(1), x, x**2, look_alike]
    refitter = Refitter(logistic, ("x",), terms, 3, max_evaluations=60, samples=logistic.experiments[0].values)
    start = refitter.fit(((2, 3),), {(0, 2): -0.11, (0, 3): 1.8}, "symbolic")
    assert ((1, 2),) in refitter.swaps(start)
    tried = eliminate(refitter, start, "bic")
    best = min([start, *tried], key=lambda c: c.bic)
    assert best.structure == ((1, 2),)
    assert best.fit.parameters[refitter.names[(0, 1)]] == pytest.approx(1.8, rel=0.1)


def test_fitting_a_michaelis_constant_off_the_grid_recovers_it_and_names_it() -> None:
    """S' = -1.2 S/(0.7 + S): the grid offers S/(2 + S). Held fixed, K = 2 leaves a misfit the
    coefficient cannot absorb; fitted (``fit_inner``), K comes back near 0.7 and the fit is better,
    at the same parameter count for the criterion (the fixed K was counted too)."""
    s = sympy.Symbol("S")
    vmax, km = sympy.symbols("vmax km")
    truth = Model(("S",), (-vmax * s / (km + s),), parameters=(Parameter("vmax", 1.2), Parameter("km", 0.7)))
    times = np.linspace(0.0, 6.0, 50)
    clean = simulate(truth, y0={"S": 4.0}, times=times).state("S")
    noisy = clean * (1 + 0.02 * np.random.default_rng(3).standard_normal(times.size))
    data = Dataset((Experiment("run", times, ("S",), noisy[:, None]),))
    terms = [s / (sympy.Float(2.0) + s)]
    fixed = Refitter(data, ("S",), terms, 1, max_evaluations=60).fit(((0,),), {(0, 0): -1.0}, "rational")
    tuner = Refitter(data, ("S",), terms, 2, max_evaluations=60, fit_inner=True)
    tuned = tuner.resume(fixed, origin="rational, tuned")
    assert tuner.inner_parameters == {0: (Parameter("k0_0", 2.0, 0.2, 20.0),)}
    assert tuned.fit.parameters["k0_0"] == pytest.approx(0.7, rel=0.1)
    assert tuned.fit.parameters[tuner.names[(0, 0)]] == pytest.approx(-1.2, rel=0.1)
    assert tuned.fit.rss < fixed.fit.rss / 2
    assert tuned.n_parameters == fixed.n_parameters and tuned.inner_constants == 0
    assert tuned.bic < fixed.bic and tuned.origin == "rational, tuned"
    # The tuned model carries K as a parameter at its fitted value.
    assert tuned.model.parameter("k0_0").value == pytest.approx(tuned.fit.parameters["k0_0"])
    assert sympy.Symbol("k0_0") in tuned.model.rhs[0].free_symbols

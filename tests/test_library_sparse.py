"""Term libraries (families, grids, evaluation, deduplication, user terms, dropping, the size cap)
and sparse regression (scaling, the STLSQ path, automatic choice, bagging, prior constraints) on
Lotka-Volterra and Michaelis-Menten data."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import sympy
from scipy.integrate import solve_ivp

from biotwin.discover.library import (
    FAMILIES,
    PRESETS,
    Library,
    LibraryOptions,
    Term,
    build_library,
    k_grid,
    user_terms,
)
from biotwin.discover.refine import refine
from biotwin.discover.sparse import (
    Support,
    best_subsets,
    choose,
    cv_errors,
    inclusion_probabilities,
    path,
    select,
    stlsq,
)
from biotwin.errors import DataError, ModelError

x, y = sympy.symbols("x y")


def exprs(library: Library) -> set[sympy.Expr]:
    return set(library.expressions)


# ---------------------------------------------------------------------- library
def test_polynomial_degree_two_over_two_states() -> None:
    X = np.random.default_rng(0).uniform(0.5, 2.0, (50, 2))
    lib = build_library(("x", "y"), X, ("constant", "polynomial"), options=LibraryOptions(degree=2))
    assert exprs(lib) == {sympy.Integer(1), x, y, x**2, x * y, y**2}
    assert lib.labels == ("1", "x", "y", "x^2", "x*y", "y^2")
    assert lib.families == ("constant",) + ("polynomial",) * 5


def test_default_polynomial_degree_depends_on_the_number_of_states() -> None:
    rng = np.random.default_rng(0)
    two = build_library(("x", "y"), rng.uniform(1, 2, (30, 2)), ("polynomial",))
    three = build_library(("a", "b", "c"), rng.uniform(1, 2, (30, 3)), ("polynomial",))
    assert len(two) == 9 and x**2 * y in exprs(two)  # degrees 1..3
    assert len(three) == 9  # 3 linear + 6 quadratic
    assert max(sympy.Poly(e).total_degree() for e in three.expressions) == 2


def test_mass_action_is_the_degree_two_monomials_and_dedup_keeps_the_first_family() -> None:
    X = np.random.default_rng(1).uniform(1, 2, (30, 2))
    lib = build_library(("x", "y"), X, ("mass_action",))
    assert exprs(lib) == {x**2, x * y, y**2}
    both = build_library(("x", "y"), X, ("polynomial", "mass_action"), options=LibraryOptions(degree=2))
    assert len(both) == 5 and set(both.families) == {"polynomial"}


def test_michaelis_menten_terms_use_the_k_grid_of_each_state() -> None:
    X = np.column_stack([np.linspace(0.0, 10.0, 40), np.linspace(0.1, 1.0, 40)])
    lib = build_library(("x", "y"), X, ("michaelis_menten",))
    grid_x, grid_y = k_grid(0.0, 10.0), k_grid(0.1, 1.0)
    assert grid_x == (0.5, 1.3, 3.2, 8.0, 20.0)  # 5%..200% of max |x|, log-spaced, 2 digits
    assert grid_y == (0.05, 0.13, 0.32, 0.8, 2.0)
    expected = {x / (sympy.Float(K) + x) for K in grid_x} | {y / (sympy.Float(K) + y) for K in grid_y}
    expected |= {y * x / (sympy.Float(K) + x) for K in grid_x} | {x * y / (sympy.Float(K) + y) for K in grid_y}
    assert exprs(lib) == expected
    assert "x/(3.2 + x)" in lib.labels and "y*x/(3.2 + x)" in lib.labels


def test_k_grid_avoids_poles_near_negative_data() -> None:
    assert k_grid(-0.3, 10.0) == (1.3, 3.2, 8.0, 20.0)  # K = 0.5 would put a pole at x = -0.5
    assert k_grid(0.0, 0.0) == ()


def test_hill_terms_cover_exponents_one_to_four_on_the_grid() -> None:
    X = np.linspace(0.0, 10.0, 40)[:, None]
    act = build_library(("x",), X, ("hill_activation",))
    rep = build_library(("x",), X, ("hill_repression",))
    grid = k_grid(0.0, 10.0)
    assert len(act) == len(rep) == 4 * len(grid)
    for n in (1, 2, 3, 4):
        for K in grid:
            Kn = sympy.Float(K**n)
            assert x**n / (Kn + x**n) in exprs(act)
            assert Kn / (Kn + x**n) in exprs(rep)
    assert "x^4/(3.2^4 + x^4)" in act.labels and "3.2^2/(3.2^2 + x^2)" in rep.labels
    # Hill n = 1 activation is the Michaelis-Menten term: merged, keeping the first family.
    merged = build_library(("x",), X, ("michaelis_menten", "hill_activation"))
    assert len(merged) == len(grid) + 3 * len(grid)
    assert merged.terms[merged.labels.index("x/(3.2 + x)")].family == "michaelis_menten"


def test_substrate_inhibition_terms_peak_at_their_grid_constant() -> None:
    X = np.column_stack([np.linspace(0.0, 10.0, 40), np.linspace(0.1, 1.0, 40)])
    lib = build_library(("x", "y"), X, ("substrate_inhibition",))
    grid_x, grid_y = k_grid(0.0, 10.0), k_grid(0.1, 1.0)
    expected = {x / (sympy.Float(K**2) + x**2) for K in grid_x} | {y / (sympy.Float(K**2) + y**2) for K in grid_y}
    expected |= {y * x / (sympy.Float(K**2) + x**2) for K in grid_x} | {x * y / (sympy.Float(K**2) + y**2) for K in grid_y}
    assert exprs(lib) == expected
    assert "y*x/(3.2^2 + x^2)" in lib.labels
    # x/(K^2 + x^2) rises, peaks at x = K and falls beyond: the shape no Hill or MM term has.
    single = build_library(("x",), {"x": (0.0, 10.0)}, ("substrate_inhibition",))
    term = single.subset([single.labels.index("x/(3.2^2 + x^2)")])
    values = term.evaluate(np.array([[1.6], [3.2], [6.4]]))[:, 0]
    assert values[1] > values[0] and values[1] > values[2]
    assert values[1] == pytest.approx(1 / (2 * 3.2))


def test_trigonometric_and_exponential_families() -> None:
    X = np.random.default_rng(2).uniform(-1, 2, (40, 2))
    lib = build_library(("x", "y"), X, ("trigonometric", "exponential"), options=LibraryOptions(frequencies=(1.0, 2.0)))
    assert {sympy.sin(x), sympy.cos(y), sympy.sin(2 * x), sympy.cos(2 * y)} <= exprs(lib)
    assert {sympy.exp(-x), y * sympy.exp(-x), x * sympy.exp(-x)} <= exprs(lib)
    # A state reaching -100 would give exp(100): no exponential terms of it.
    far = build_library(("x", "y"), {"x": (-100.0, 1.0), "y": (0.0, 1.0)}, ("exponential",))
    assert exprs(far) == {sympy.exp(-y), x * sympy.exp(-y), y * sympy.exp(-y)}


def test_trigonometric_products_write_coupled_phases() -> None:
    X = np.random.default_rng(5).uniform(-3, 3, (60, 2))
    lib = build_library(("x", "y"), X, ("trigonometric_products",))
    assert exprs(lib) == {sympy.sin(x) * sympy.cos(x), sympy.sin(x) * sympy.cos(y), sympy.sin(y) * sympy.cos(x),
                          sympy.sin(y) * sympy.cos(y), sympy.sin(x) * sympy.sin(y), sympy.cos(x) * sympy.cos(y)}
    # sin(x - y), the coupling of two bar magnets or Kuramoto phases, is exactly two of the columns.
    theta = lib.evaluate(X)
    coupling = np.sin(X[:, 0] - X[:, 1])
    weights = np.linalg.lstsq(theta, coupling, rcond=None)[0]
    assert np.allclose(theta @ weights, coupling)
    assert np.sum(np.abs(weights) > 1e-8) == 2


def test_logarithmic_family_only_for_states_that_stay_positive() -> None:
    # Gompertz growth, dV/dt = a V log(K/V), needs V log V; log of a state that reaches 0 is not a term.
    lib = build_library(("x", "y"), {"x": (0.5, 4.0), "y": (0.0, 1.0)}, ("logarithmic",))
    assert exprs(lib) == {sympy.log(x), x * sympy.log(x)}


def test_presets_are_family_names_and_have_documented_sizes() -> None:
    assert set(PRESETS["bio"]) <= set(FAMILIES) and set(PRESETS["physics"]) <= set(FAMILIES)
    rng = np.random.default_rng(3)
    assert len(build_library(("a", "b", "c"), rng.uniform(0.1, 5, (200, 3)), "bio")) == 166
    assert len(build_library(("x", "y"), rng.uniform(0.1, 5, (200, 2)), "physics")) == 46


def test_evaluate_matches_sympy() -> None:
    X = np.random.default_rng(4).uniform(0.2, 3.0, (7, 2))
    lib = build_library(("x", "y"), X, "physics", user=["x*y/(1 + y^2)"])
    theta = lib.evaluate(X)
    assert theta.shape == (7, len(lib))
    for t in (0, 3, 6):
        for k, expr in enumerate(lib.expressions):
            value = float(expr.subs({x: X[t, 0], y: X[t, 1]}))
            assert theta[t, k] == pytest.approx(value, rel=1e-12, abs=1e-14)
    with pytest.raises(DataError, match=r"shape \(T, 2\)"):
        lib.evaluate(X[:, :1])
    clone = pickle.loads(pickle.dumps(lib))
    assert np.array_equal(clone.evaluate(X), theta)


def test_library_values_deduplicate_union_and_subset() -> None:
    terms = (Term(x * y, "mass_action"), Term(y * x, "polynomial"), Term(sympy.Integer(1), "constant"))
    lib = Library(("x", "y"), terms)
    assert len(lib) == 2 and lib.families == ("mass_action", "constant")
    other = Library(("x", "y"), (Term(x, "linear"), Term(x * y, "user")))
    joined = lib.union(other)
    assert joined.labels == ("x*y", "1", "x")
    assert joined.subset([2, 0]).labels == ("x", "x*y")
    with pytest.raises(ModelError, match="different states"):
        lib.union(Library(("y", "x"), ()))
    with pytest.raises(ModelError, match="unknown symbol 'k'"):
        Library(("x",), (Term(sympy.Symbol("k") * x, "user"),))


def test_user_terms_parse_the_model_language_and_name_unknown_symbols() -> None:
    terms = user_terms(("x", "y"), ["x*y/(0.5 + x)", x**2 * sympy.exp(-y)])
    assert terms[0].expr == x * y / (sympy.Float(0.5) + x) and terms[0].label == "x*y/(0.5 + x)"
    assert terms[1].family == "user"
    with pytest.raises(ModelError, match="unknown symbol 'Km'"):
        user_terms(("x", "y"), ["Vmax*x/(Km + x)"])
    with pytest.raises(ModelError, match="unknown symbol 't'"):
        build_library(("x",), np.ones((5, 1)), ("constant",), user=["x*t"])
    with pytest.raises(ModelError, match="unknown library family 'michaelis'.*michaelis_menten"):
        build_library(("x",), np.ones((5, 1)), ("michaelis",))


def test_non_finite_and_zero_columns_are_dropped() -> None:
    X = np.column_stack([np.linspace(0.0, 2.0, 20), np.zeros(20)])  # x touches 0, y is always 0
    lib = build_library(("x", "y"), X, ("constant", "linear"), user=["1/x", "log(x)", "sqrt(x)", "x*y"])
    assert lib.labels == ("1", "x", "sqrt(x)")
    assert np.all(np.isfinite(lib.evaluate(X)))


def test_ranges_instead_of_data() -> None:
    lib = build_library(("x", "y"), {"x": (0.0, 4.0), "y": (1.0, 2.0)}, ("constant", "michaelis_menten"))
    assert k_grid(0.0, 4.0) == (0.2, 0.5, 1.3, 3.2, 8.0)
    assert {f"x/({k:g} + x)" for k in k_grid(0.0, 4.0)} <= set(lib.labels)
    # Terms are checked on points filling the box, which include its corner x = 0.
    assert len(build_library(("x",), {"x": (0.0, 1.0)}, (), user=["1/x"])) == 0
    with pytest.raises(DataError, match="no range given for state 'y'"):
        build_library(("x", "y"), {"x": (0.0, 1.0)}, ("constant",))


def test_size_cap_keeps_protected_terms_and_drops_the_most_collinear() -> None:
    X = np.random.default_rng(5).uniform(0.1, 5.0, (200, 2))
    full = build_library(("x", "y"), X, ("constant", "polynomial", "hill_activation"))
    capped = build_library(
        ("x", "y"), X, ("constant", "polynomial", "hill_activation"), options=LibraryOptions(max_terms=20)
    )
    assert len(full) > 20 and len(capped) == 20
    assert capped.labels[:10] == full.labels[:10]  # constant and polynomial are protected
    kept = [label for label in capped.labels if "/" in label]
    # The greedy keeps distinct shapes: several exponents and several K per state.
    assert len({label.split("^")[1][0] if "^" in label else "1" for label in kept}) >= 2
    assert {label[0] for label in kept} == {"x", "y"}


# ---------------------------------------------------------------------- sparse regression
def lotka_volterra(t: float, z: np.ndarray) -> list[float]:
    u, v = z
    return [1.0 * u - 0.1 * u * v, -1.5 * v + 0.075 * u * v]


@pytest.fixture(scope="module")
def lv() -> tuple[Library, np.ndarray, np.ndarray]:
    """Theta of a cubic library on a Lotka-Volterra trajectory and the exact derivatives."""
    t = np.linspace(0.0, 15.0, 300)
    X = solve_ivp(lotka_volterra, (0.0, 15.0), [10.0, 5.0], t_eval=t, rtol=1e-10, atol=1e-10).y.T
    dX = np.array([lotka_volterra(0.0, z) for z in X])
    lib = build_library(("x", "y"), X, ("constant", "polynomial"))
    assert len(lib) == 10
    return lib, lib.evaluate(X), dX


TRUE_LV = ({"x": 1.0, "x*y": -0.1}, {"y": -1.5, "x*y": 0.075})


def assert_recovers(lib: Library, support: Support, truth: dict[str, float], rel: float) -> None:
    assert {lib.labels[i] for i in support.indices} == set(truth)
    for label, value in truth.items():
        assert support.coefficients[lib.labels.index(label)] == pytest.approx(value, rel=rel)
    assert np.all(support.coefficients[[i for i in range(len(lib)) if i not in support.indices]] == 0)


@pytest.mark.parametrize("criterion", ["cv", "aicc", "bic"])
def test_exact_lotka_volterra_is_recovered(lv, criterion) -> None:
    lib, theta, dX = lv
    for j, truth in enumerate(TRUE_LV):
        assert_recovers(lib, select(theta, dX[:, j], criterion=criterion), truth, rel=1e-6)


def test_a_fixed_threshold_of_0_1_on_raw_coefficients_would_delete_the_small_term(lv) -> None:
    # PySINDy's default compares raw coefficients with 0.1: 0.075 x y falls below it. Scaled
    # coefficients put it on a par with -1.5 y, and the chosen threshold comes from the data.
    lib, theta, dX = lv
    chosen = select(theta, dX[:, 1])
    assert 0.075 < 0.1 and lib.labels.index("x*y") in chosen.indices
    assert chosen.threshold > 0


def test_noisy_lotka_volterra_is_still_exact(lv) -> None:
    lib, theta, dX = lv
    rng = np.random.default_rng(0)
    for j, truth in enumerate(TRUE_LV):
        noisy = dX[:, j] + 0.02 * np.std(dX[:, j]) * rng.standard_normal(len(dX))
        chosen = select(theta, noisy)
        assert_recovers(lib, chosen, truth, rel=0.01)


def test_path_runs_from_all_terms_to_none(lv) -> None:
    lib, theta, dX = lv
    supports = path(theta, dX[:, 0])
    assert supports[0].indices == tuple(range(10)) and supports[0].threshold == 0.0
    assert supports[-1].indices == ()
    assert len({s.indices for s in supports}) == len(supports)
    assert all(a.threshold < b.threshold for a, b in zip(supports, supports[1:]))
    assert supports[-1].rss == pytest.approx(float(np.sum(dX[:, 0] ** 2)))
    assert any(set(s.indices) == {1, 4} for s in supports)
    # One STLSQ run at a threshold inside the true support's interval gives the same support.
    true = next(s for s in supports if set(s.indices) == {1, 4})
    assert stlsq(theta, dX[:, 0], true.threshold * 1.0000001).indices == true.indices


def test_cv_uses_groups_and_rejects_a_single_group(lv) -> None:
    lib, theta, dX = lv
    supports = path(theta, dX[:, 1])
    groups = np.repeat(np.arange(12), 25)  # 12 windows of 25 samples
    assert cv_errors(supports, theta, dX[:, 1], groups).shape == (len(supports), 5)
    assert_recovers(lib, choose(supports, theta, dX[:, 1], groups), TRUE_LV[1], rel=1e-6)
    with pytest.raises(DataError, match="at least 2 distinct groups"):
        choose(supports, theta, dX[:, 1], np.zeros(300))


def test_michaelis_menten_data_select_the_saturating_term_not_a_polynomial() -> None:
    def mm(t: float, s: np.ndarray, km: float) -> np.ndarray:
        return -1.0 * s / (km + s)

    t = np.linspace(0.0, 30.0, 200)
    nearest = "S/(3.2 + S)"
    for km, noise in ((3.2, 0.0), (3.0, 0.05)):  # on the K grid (0.5, 1.3, 3.2, 8, 20), and off it
        S = solve_ivp(mm, (0.0, 30.0), [10.0], t_eval=t, args=(km,), rtol=1e-10, atol=1e-12).y.T
        lib = build_library(("S",), S, ("constant", "polynomial", "michaelis_menten"))
        assert lib.labels == ("1", "S", "S^2", "S^3", *(f"S/({k:g} + S)" for k in (0.5, 1.3, 3.2, 8, 20)))
        theta = lib.evaluate(S)
        exact = mm(0.0, S[:, 0], km)
        dS = exact + noise * np.std(exact) * np.random.default_rng(1).standard_normal(len(t))
        chosen = select(theta, dS)
        assert lib.labels.index(nearest) in chosen.indices
        if noise == 0:
            assert [lib.labels[i] for i in chosen.indices] == [nearest]
            assert chosen.coefficients[lib.labels.index(nearest)] == pytest.approx(-1.0, rel=1e-6)
        else:
            # Off the grid a second MM term or a polynomial can shave the held-out error within
            # one standard error; bagging settles on the nearest-K term alone.
            bagged = inclusion_probabilities(theta, dS, n_bags=20, seed=0)
            assert bagged.probabilities[lib.labels.index(nearest)] >= 0.9
            assert np.all(bagged.probabilities[:4] < 0.5)
            assert np.flatnonzero(bagged.median_coefficients).tolist() == [lib.labels.index(nearest)]
            assert bagged.median_coefficients[lib.labels.index(nearest)] == pytest.approx(-1.0, rel=0.05)


def test_best_subsets_equal_an_exhaustive_search_with_required_terms_and_signs() -> None:
    from itertools import combinations

    rng = np.random.default_rng(3)
    theta = rng.normal(size=(120, 12))
    theta[:, 5] = theta[:, 4] + 1e-4 * rng.normal(size=120)  # a near-copy of term 4
    target = 2.0 * theta[:, 3] - 0.7 * theta[:, 7] + 0.3 * theta[:, 4] + 0.1 * rng.normal(size=120)

    def brute(size: int, required: tuple[int, ...], signs: dict[int, int]) -> tuple[int, ...]:
        fits = []
        for extra in combinations([j for j in range(12) if j not in required], size):
            idx = sorted((*required, *extra))
            coefficients = np.linalg.lstsq(theta[:, idx], target, rcond=None)[0]
            if all(np.sign(coefficients[idx.index(j)]) == sign for j, sign in signs.items() if j in extra):
                fits.append((float(np.sum((theta[:, idx] @ coefficients - target) ** 2)), tuple(idx)))
        return min(fits)[1]

    for required, signs in (((), {}), ((0,), {}), ((), {7: 1})):
        found = best_subsets(theta, target, (1, 2, 3), required=required, signs=signs or None)
        assert [s.indices for s in found] == [brute(k, required, signs) for k in (1, 2, 3)]
        assert all(s.n_terms == len(required) + k for k, s in zip((1, 2, 3), found))
    pair, triple = best_subsets(theta, target, (1, 2, 3))[1:]
    assert pair.indices == (3, 7) and triple.indices in ((3, 4, 7), (3, 5, 7))  # 5 is 4's near-copy
    assert best_subsets(theta, target, signs={7: 1})[1].indices != (3, 7)


def test_refine_fits_a_michaelis_constant_between_grid_points_on_the_rates() -> None:
    # S' = -1.5 S/(1.1 + S): the library offers S/(0.63 + S) and S/(1.6 + S); the fit on the rates
    # moves the nearest grid constant to the true one, and the coefficient with it.
    S = np.linspace(0.05, 5.0, 80)[:, None]
    rates = -1.5 * S[:, 0] / (1.1 + S[:, 0])
    s = sympy.Symbol("S")
    (term,), (coefficient,) = refine([s / (s + sympy.Float(1.6))], ("S",), S, rates)
    (number,) = term.atoms(sympy.Float)
    assert float(number) == pytest.approx(1.1, rel=1e-3) and coefficient == pytest.approx(-1.5, rel=1e-3)
    assert refine([s / (s + sympy.Float(1.6))], ("S",), S, rates, fixed={s / (s + sympy.Float(1.6))}) is None
    assert refine([s, s**2], ("S",), S, rates) is None  # no number inside the terms


def test_required_forbidden_and_sign_constraints(lv) -> None:
    lib, theta, dX = lv
    one, x_, xy = lib.labels.index("1"), lib.labels.index("x"), lib.labels.index("x*y")
    forced = select(theta, dX[:, 0], required=[one])
    assert set(forced.indices) == {one, x_, xy}
    assert forced.coefficients[one] == pytest.approx(0.0, abs=1e-8)
    assert all(one in s.indices for s in path(theta, dX[:, 0], required=[one]))
    assert path(theta, dX[:, 0], required=[one])[-1].indices == (one,)

    without = path(theta, dX[:, 0], forbidden=[xy])
    assert all(xy not in s.indices for s in without)
    assert select(theta, dX[:, 0], forbidden=[xy]).coefficients[xy] == 0.0

    # Right signs change nothing; a wrong sign is obeyed in every fit.
    assert_recovers(lib, select(theta, dX[:, 0], signs={x_: 1, xy: -1}), TRUE_LV[0], rel=1e-6)
    wrong = path(theta, dX[:, 0], signs={xy: +1})
    assert all(s.coefficients[xy] >= 0 for s in wrong)
    assert select(theta, dX[:, 0], signs={xy: +1}).coefficients[xy] >= 0

    with pytest.raises(ModelError, match="both required and forbidden"):
        path(theta, dX[:, 0], required=[one], forbidden=[one])
    with pytest.raises(ModelError, match=r"must be \+1 or -1"):
        path(theta, dX[:, 0], signs={xy: 2})
    with pytest.raises(ModelError, match="out of range"):
        path(theta, dX[:, 0], forbidden=[10])


def test_bagging_on_noisy_lotka_volterra_is_deterministic() -> None:
    # Two initial states: on a single closed orbit the conserved quantity of Lotka-Volterra makes
    # the cubic library nearly collinear, and some bootstrap bags trade x*y for cubic terms.
    t = np.linspace(0.0, 15.0, 150)
    X = np.vstack(
        [solve_ivp(lotka_volterra, (0.0, 15.0), z0, t_eval=t, rtol=1e-10, atol=1e-10).y.T for z0 in ([10, 5], [30, 20])]
    )
    dX = np.array([lotka_volterra(0.0, z) for z in X])
    lib = build_library(("x", "y"), X, ("constant", "polynomial"))
    theta = lib.evaluate(X)
    rng = np.random.default_rng(2)
    for j, truth in enumerate(TRUE_LV):
        noisy = dX[:, j] + 0.02 * np.std(dX[:, j]) * rng.standard_normal(len(dX))
        result = inclusion_probabilities(theta, noisy, n_bags=20, seed=7)
        true = [lib.labels.index(label) for label in truth]
        spurious = [i for i in range(len(lib)) if i not in true]
        assert np.all(result.probabilities[true] >= 0.95)
        assert np.all(result.probabilities[spurious] <= 0.1)
        assert result.median_coefficients[true] == pytest.approx(list(truth.values()), rel=0.01)
        assert np.all(result.median_coefficients[spurious] == 0)
    again = inclusion_probabilities(theta, noisy, n_bags=20, seed=7)
    assert np.array_equal(again.probabilities, result.probabilities)
    assert np.array_equal(again.median_coefficients, result.median_coefficients)
    # Block bootstrap over windows (15 windows of 20 samples; each window within one trajectory).
    blocks = inclusion_probabilities(theta, noisy, n_bags=10, seed=7, groups=np.repeat(np.arange(15), 20))
    assert np.all(blocks.probabilities[true] >= 0.9)


def test_input_validation(lv) -> None:
    lib, theta, dX = lv
    with pytest.raises(DataError, match="y must have shape"):
        path(theta, dX[:-1, 0])
    bad = theta.copy()
    bad[3, 2] = np.nan
    with pytest.raises(DataError, match="row 3"):
        path(bad, dX[:, 0])
    with pytest.raises(ModelError, match="unknown criterion"):
        choose(path(theta, dX[:, 0]), theta, dX[:, 0], criterion="loo")  # type: ignore[arg-type]
    zero = select(theta, np.zeros(len(dX)))
    assert zero.indices == () and np.all(zero.coefficients == 0)

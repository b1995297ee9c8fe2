"""The NUTS posterior: recovery of a known truth, diagnostics that catch bad runs, priors, inputs."""

from __future__ import annotations

import dataclasses
import math
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from biotwin.data import Dataset
from biotwin.errors import ModelError
from biotwin.infer import (
    ConvergenceWarning,
    Transform,
    default_log_prior,
    ess_bulk,
    infer,
    linear_scale_prior,
    metric_windows,
    rhat,
)
from biotwin.likelihood import dataset_objective
from biotwin.model import Model
from biotwin.objective import Measurements, Objective
from biotwin.simulate import simulate

# Logistic growth with a known initial state; r and K are estimated, the noise is known.
LOGISTIC = Model.from_text(
    """
    dx/dt = r*x*(1 - x/K)
    x(0) = 2
    r in [0.01, 10] log = 1
    K in [1, 1000] log = 100
    """
)
TRUTH = {"r": 0.8, "K": 40.0}
NOISE = 1.5
TIMES = np.linspace(0.5, 12.0, 30)


def _logistic_data(seed: int = 1) -> Dataset:
    truth = simulate(LOGISTIC, TRUTH, None, TIMES, start=0.0, rtol=1e-10, atol=1e-12).observable("x")
    values = truth + NOISE * np.random.default_rng(seed).standard_normal(truth.shape)
    return Dataset.from_arrays(TIMES, values[:, None], ("x",), t0=0.0)


@pytest.fixture(scope="module")
def logistic() -> tuple[Objective, object]:
    """The logistic objective (known noise) and its posterior, from the model's default values (r 1, K 100)."""
    objective = dataset_objective(LOGISTIC, _logistic_data(), noise="normal", sigma=NOISE, rtol=1e-6, atol=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        posterior = infer(objective, objective.nominal, chains=4, warmup=150, samples=600, seed=0)
    return objective, posterior


def test_posterior_of_logistic_growth_recovers_the_truth_with_converged_chains(logistic) -> None:
    objective, posterior = logistic
    assert posterior.chains == 4 and posterior.draws == 600
    assert posterior.max_rhat < 1.01
    assert posterior.min_ess > 400
    assert posterior.divergences == 0 and posterior.warnings == ()
    samples = posterior.samples
    for name, true in TRUTH.items():
        mean, sd = float(np.mean(samples[name])), float(np.std(samples[name]))
        assert abs(mean - true) < 3 * sd, (name, mean, sd)
        assert abs(mean - true) / true < 0.05
    # The draws are the optimisation scale's (log10 here) and the log density is finite.
    np.testing.assert_allclose(10 ** posterior.x[..., 0], samples["r"])
    assert np.all(np.isfinite(posterior.log_density))
    assert posterior.gradient == "forward"
    assert posterior.ess_per_second > 0 and posterior.wall_time >= posterior.compile_time
    # The chains started at the posterior mode that infer found from the default values.
    np.testing.assert_allclose(10 ** posterior.modes[0], [TRUTH["r"], TRUTH["K"]], rtol=0.05)
    rows = posterior.summary()
    assert [row["name"] for row in rows] == ["r", "K"]
    assert all(row["lower"] < row["median"] < row["upper"] for row in rows)


def test_predictive_bands_cover_about_ninety_percent_of_the_data(logistic) -> None:
    objective, posterior = logistic
    predictive = posterior.predictive(objective, draws=300, seed=0)
    assert predictive.replicates.shape == (300, len(objective.measurements))
    assert np.all(predictive.lower <= predictive.median) and np.all(predictive.median <= predictive.upper)
    # 30 measurements: a binomial(30, 0.9) count lies in [22, 30] with probability > 0.99.
    assert 22 / 30 <= predictive.coverage <= 1.0
    band = predictive.bands("experiment", "x")
    np.testing.assert_allclose(band["time"], TIMES)
    # The band's width is about 2 * 1.645 * noise (posterior uncertainty of the curve adds a little).
    width = float(np.median(band["upper"] - band["lower"]))
    assert 2 * 1.645 * NOISE * 0.8 < width < 2 * 1.645 * NOISE * 1.5
    with pytest.raises(ModelError, match="no measurement of 'y'"):
        predictive.bands("experiment", "y")
    with pytest.raises(ModelError, match="unknown measurement transform"):
        dataclasses.replace(objective.measurements, transform=np.full(len(objective.measurements), 5))


def test_posterior_plots_are_written(logistic, tmp_path) -> None:
    from biotwin.report.posterior import plot_posterior, plot_predictive

    objective, posterior = logistic
    pairs = plot_posterior(posterior, tmp_path / "posterior.png", reference=TRUTH, title="logistic")
    bands = plot_predictive(posterior.predictive(objective, draws=50), tmp_path / "bands.png")
    for path in (pairs, bands):
        assert path.is_file() and path.stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bands.png", "posterior.png"]


def test_starts_in_two_separated_modes_raise_the_rhat_warning() -> None:
    # x' = -k^2 x cannot tell k from -k: two modes, split by k = 0 where nothing decays.
    model = Model.from_text("dx/dt = -k^2*x\nx(0) = 10\nk in [-2, 2] = 0.5")
    times = np.linspace(0.25, 4.0, 16)
    truth = simulate(model, {"k": 0.7}, None, times, start=0.0).observable("x")
    data = Dataset.from_arrays(times, (truth + 0.2 * np.random.default_rng(2).standard_normal(16))[:, None], ("x",), t0=0.0)
    objective = dataset_objective(model, data, noise="normal", sigma=0.2, rtol=1e-6, atol=1e-8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        posterior = infer(objective, [[0.7], [-0.7]], chains=4, warmup=50, samples=100, seed=0)
    issued = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert any(message.startswith("R-hat of 'k'") for message in issued)
    assert tuple(issued) == posterior.warnings
    assert posterior.max_rhat > 1.5
    # Each chain stayed in the mode it started in.
    chain_means = posterior.samples["k"].mean(axis=1)
    np.testing.assert_allclose(np.sign(chain_means), [1, -1, 1, -1])


# ---------------------------------------------------------------------- a Gaussian posterior, exactly known
def _regression() -> tuple[Objective, np.ndarray, np.ndarray]:
    """y = a + b t with known normal noise: under a flat prior the posterior is N(beta_hat, s^2 (X^T X)^-1)."""
    t = np.linspace(0.0, 1.0, 20)
    y = 1.0 + 2.0 * t + 0.3 * np.random.default_rng(3).standard_normal(t.size)
    design = np.stack([np.ones_like(t), t], axis=1)
    mean = np.linalg.solve(design.T @ design, design.T @ y)
    covariance = 0.09 * np.linalg.inv(design.T @ design)
    X, Y = jnp.asarray(design), jnp.asarray(y)

    def predict(x):
        return X @ x

    def sigma(x):
        return jnp.full(t.size, 0.3)

    def nll(x):
        return 0.5 * jnp.sum(((Y - predict(x)) / 0.3) ** 2)

    measurements = Measurements(("fit",) * t.size, ("y",) * t.size, t, y)
    objective = Objective(("a", "b"), ("lin", "lin"), np.array([-100.0, -100.0]), np.array([100.0, 100.0]),
                          np.zeros(2), nll, measurements, predict, sigma)
    return objective, mean, covariance


def test_gaussian_posterior_moments_and_determinism() -> None:
    objective, mean, covariance = _regression()
    # A start far from the mode: infer's Newton steps find the mode first (on the sampling scale,
    # whose Jacobian moves it by a hair from the least-squares solution).
    first = infer(objective, [20.0, -30.0], chains=4, warmup=100, samples=2000, seed=7)
    sd = np.sqrt(np.diag(covariance))
    assert np.all(np.abs(first.modes[0] - mean) < 0.01 * sd)
    draws = first.x.reshape(-1, 2)
    # Monte Carlo error of a mean is sd / sqrt(ESS); allow 4 of them.
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 4 * sd / np.sqrt(first.min_ess))
    np.testing.assert_allclose(draws.std(axis=0), sd, rtol=0.06)
    np.testing.assert_allclose(np.corrcoef(draws.T)[0, 1], covariance[0, 1] / (sd[0] * sd[1]), atol=0.03)
    assert first.max_rhat < 1.01 and first.divergences == 0
    # The same seed gives the same draws, also when the run is cut into chunks for progress reports.
    reports: list[tuple[int, int]] = []
    again = infer(objective, [20.0, -30.0], chains=4, warmup=100, samples=2000, seed=7,
                  progress=lambda done, total, label: reports.append((done, total)))
    np.testing.assert_array_equal(again.x, first.x)
    assert len(reports) > 5 and reports[-1] == (2100, 2100)
    assert all(a[0] <= b[0] for a, b in zip(reports, reports[1:]))


def test_an_objective_differentiable_only_in_reverse_mode_is_sampled_in_reverse_mode() -> None:
    import jax

    objective, mean, covariance = _regression()

    @jax.custom_vjp
    def nll(x):
        return objective.nll(x)

    def forward(x):
        return objective.nll(x), x

    def backward(x, cotangent):
        return (cotangent * jax.grad(objective.nll)(x),)

    nll.defvjp(forward, backward)
    reverse_only = Objective(objective.names, objective.scales, objective.lower, objective.upper, objective.nominal,
                             nll, objective.measurements, objective.predict, objective.sigma)
    posterior = infer(reverse_only, mean, chains=1, warmup=100, samples=1000, seed=1)
    assert posterior.gradient == "reverse" and posterior.chains == 1
    np.testing.assert_allclose(posterior.x.reshape(-1, 2).std(axis=0), np.sqrt(np.diag(covariance)), rtol=0.15)


def test_bad_inputs_raise_model_errors() -> None:
    objective, mean, _ = _regression()
    with pytest.raises(ModelError, match=r"starts have shape \(3,\) but the objective estimates 2 parameters \(a, b\)"):
        infer(objective, [1.0, 2.0, 3.0])
    with pytest.raises(ModelError, match="estimates 2 parameters"):
        infer(objective, np.zeros((2, 3)))
    with pytest.raises(ModelError, match="start 1 has b = 500 outside its bounds"):
        infer(objective, [[0.0, 0.0], [0.0, 500.0]])
    with pytest.raises(ModelError, match="non-finite"):
        infer(objective, [np.nan, 0.0])
    with pytest.raises(ModelError, match="chains >= 1"):
        infer(objective, mean, chains=0)
    with pytest.raises(ModelError, match="target_accept"):
        infer(objective, mean, target_accept=1.0)


def test_an_objective_that_cannot_be_evaluated_at_the_start_is_refused() -> None:
    objective, mean, _ = _regression()
    broken = Objective(objective.names, objective.scales, objective.lower, objective.upper, objective.nominal,
                       lambda x: jnp.where(x[0] > 50.0, jnp.inf, objective.nll(x)), objective.measurements,
                       objective.predict, objective.sigma)
    with pytest.raises(ModelError, match="not finite at any of the 1 starts"):
        infer(broken, [60.0, 0.0], warmup=10, samples=10)


def test_a_mode_far_below_the_best_gets_no_chain() -> None:
    objective, _, _ = _regression()

    def double_well(x):
        # Minima near a = -1 (-log p about -15) and a = +1 (about +15): the second has e^-30 of the mass.
        return 20.0 * (x[0] ** 2 - 1.0) ** 2 + 15.0 * x[0] + 0.5 * x[1] ** 2

    wells = Objective(("a", "b"), ("lin", "lin"), np.array([-3.0, -10.0]), np.array([3.0, 10.0]), np.zeros(2),
                      double_well, objective.measurements, objective.predict, objective.sigma)
    posterior = infer(wells, [[1.0, 0.5], [-1.0, -0.5]], chains=4, warmup=100, samples=300, seed=0)
    assert posterior.modes.shape == (1, 2) and posterior.modes[0, 0] < -0.9
    assert np.all(posterior.samples["a"] < 0) and posterior.max_rhat < 1.01


def test_warmup_reestimates_the_mass_matrix_where_the_laplace_approximation_misjudges_the_spread() -> None:
    """p(a, b) ∝ exp(-a^2/400 - a^4/4 - b^2/2): at the mode the curvature along a is 1/200 of b's,
    so the Laplace mass matrix thinks a is 14 times wider than it is (E a^2 = 0.675, not 200).
    The warm-up windows learn the draws' covariance: trajectories get shorter (mean tree depth 4.3
    and 17 divergences with the Laplace matrix kept) and the moments stay right."""
    objective, _, _ = _regression()

    def quartic(x):
        return x[0] ** 2 / 400 + x[0] ** 4 / 4 + 0.5 * x[1] ** 2

    flat_bottom = Objective(("a", "b"), ("lin", "lin"), np.array([-100.0, -100.0]), np.array([100.0, 100.0]),
                            np.zeros(2), quartic, objective.measurements, objective.predict, objective.sigma)
    posterior = infer(flat_bottom, [0.0, 0.0], chains=4, warmup=300, samples=1000, seed=0, target_accept=0.9)
    a = np.linspace(-6.0, 6.0, 20001)
    density = np.exp(-(a**2 / 400 + a**4 / 4))
    second_moment = float(np.sum(a**2 * density) / np.sum(density))
    draws = posterior.x.reshape(-1, 2)
    assert np.mean(draws[:, 0] ** 2) == pytest.approx(second_moment, rel=0.08)
    assert np.mean(draws[:, 1] ** 2) == pytest.approx(1.0, rel=0.12)
    assert posterior.tree_depth.mean() < 3.7 and posterior.divergences == 0 and posterior.max_rhat < 1.01


def _ridge(scale: str) -> Objective:
    """-log L = (p + q - 0.5)^2 / (2 0.05^2) on p, q in [-2, 2]: only the sum is known, and the
    ridge p + q = 0.5 runs into the bounds (p from -1.5 to 2)."""
    objective, _, _ = _regression()

    def ridge(x):
        return 0.5 * ((x[0] + x[1] - 0.5) / 0.05) ** 2

    return Objective(("p", "q"), (scale, scale), np.array([-2.0, -2.0]), np.array([2.0, 2.0]), np.zeros(2), ridge,
                     objective.measurements, objective.predict, objective.sigma)


def test_a_ridge_into_the_bounds_is_sampled_between_walls_with_short_trajectories() -> None:
    """On the log scale the ridge is sampled between walls: a straight line a dense metric follows.
    The logistic map of the same box (the parameters declared on the linear scale) bends it towards
    infinity at both ends: mean tree depth 3.6, 13 % of the draws at the depth limit 6, 2
    divergences and a bulk ESS of 172 there, against 2.2, 0.3 %, none and 3,769 with walls."""
    posterior = infer(_ridge("log10"), [0.25, 0.25], chains=4, warmup=300, samples=1000, seed=0, max_tree_depth=6)
    p = posterior.x.reshape(-1, 2)[:, 0]
    assert np.all(np.abs(posterior.x) <= 2.0)
    # p is uniform on [-1.5, 2] blurred by the ridge's width: mean 0.25, sd 3.5 / sqrt(12).
    assert np.mean(p) == pytest.approx(0.25, abs=0.1)
    assert np.std(p) == pytest.approx(3.5 / math.sqrt(12), rel=0.05)
    assert posterior.tree_depth.mean() < 2.8 and np.mean(posterior.tree_depth == 6) < 0.02
    assert posterior.divergences == 0 and posterior.max_rhat < 1.01 and posterior.min_ess > 1500


def test_wall_bounces_keep_the_energy_and_are_reversible_and_volume_preserving() -> None:
    import jax

    transform = Transform.for_bounds(np.array([0.0, -1.0, -np.inf]), np.array([1.0, 2.0, np.inf]),
                                     walls=np.array([True, True, True]))
    root = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.3, 0.2, 0.5]])
    inverse_mass = jnp.asarray(root @ root.T)
    z, r = jnp.array([0.9, 1.5, 0.3]), jnp.array([2.0, 1.5, -1.0])
    epsilon = 2.5  # long enough for several bounces off both walls
    z1, r1 = transform.move(z, r, epsilon, inverse_mass)
    assert 0.0 <= z1[0] <= 1.0 and -1.0 <= z1[1] <= 2.0
    kinetic = lambda m: 0.5 * m @ (inverse_mass @ m)  # noqa: E731
    assert float(kinetic(r1)) == pytest.approx(float(kinetic(r)), rel=1e-12)
    z2, r2 = transform.move(z1, -r1, epsilon, inverse_mass)
    np.testing.assert_allclose(z2, z, atol=1e-12)
    np.testing.assert_allclose(-r2, r, atol=1e-12)
    flow = jax.jacfwd(lambda s: jnp.concatenate(transform.move(s[:3], s[3:], epsilon, inverse_mass)))
    assert abs(float(jnp.linalg.det(flow(jnp.concatenate([z, r]))))) == pytest.approx(1.0, rel=1e-9)
    bounces = transform.move(z, r, 1e-3, inverse_mass)
    np.testing.assert_allclose(bounces[0], z + 1e-3 * inverse_mass @ r, rtol=1e-12)  # no wall in reach


def test_metric_windows_follow_stans_schedule() -> None:
    assert metric_windows(1000) == (75, 100, 150, 250, 450, 950)
    assert metric_windows(300) == (75, 100, 150, 250)
    assert metric_windows(150) == (75, 100)
    assert metric_windows(100) == (15, 90)  # short warm-ups: 15 % buffer, one window, 10 % buffer
    assert metric_windows(10) == ()


# ---------------------------------------------------------------------- pieces
def test_transform_maps_the_real_line_into_the_bounds_with_the_right_jacobian() -> None:
    lower = np.array([0.0, -np.inf, 1.0, -np.inf])
    upper = np.array([5.0, 3.0, np.inf, np.inf])
    transform = Transform.for_bounds(lower, upper)
    z = np.array([-2.0, 0.3, 1.1, -4.0])
    x = np.asarray(transform.to_x(jnp.asarray(z)))
    assert 0 < x[0] < 5 and x[1] < 3 and x[2] > 1
    np.testing.assert_allclose(transform.to_z(x), z, rtol=1e-12)
    # log |dx/dz| against central differences, parameter by parameter.
    h = 1e-6
    up, down = (np.asarray(transform.to_x(jnp.asarray(z + d))) for d in (h, -h))
    numeric = np.log(np.abs((up - down) / (2 * h)))
    np.testing.assert_allclose(float(transform.log_jacobian(jnp.asarray(z))), numeric.sum(), rtol=1e-6)
    # A start on a bound is moved inside, so that its z is finite.
    assert np.all(np.isfinite(transform.to_z(transform.inside(np.array([0.0, 3.0, 1.0, 7.0])))))


def test_default_prior_is_uniform_in_a_box_and_wide_normal_outside() -> None:
    objective, _, _ = _regression()
    prior = default_log_prior(objective)
    assert float(prior(jnp.array([3.0, -40.0]))) == pytest.approx(-2 * math.log(200.0))
    open_ended = Objective(("p", "q"), ("log10", "lin"), np.array([-np.inf, 0.0]), np.array([np.inf, np.inf]),
                           np.array([1.0, 4.0]), objective.nll, objective.measurements, objective.predict, objective.sigma)
    expected = stats.norm.logpdf(2.5, 1.0, 3.0) + stats.norm.logpdf(7.0, 4.0, 40.0)
    assert float(default_log_prior(open_ended)(jnp.array([2.5, 7.0]))) == pytest.approx(expected)


def test_linear_scale_prior_changes_variables_to_the_optimisation_scale() -> None:
    import numpyro.distributions as dist

    objective, _, _ = _regression()
    scaled = Objective(("k", "b"), ("log10", "lin"), np.array([-3.0, -100.0]), np.array([3.0, 100.0]), np.zeros(2),
                       objective.nll, objective.measurements, objective.predict, objective.sigma)
    prior = linear_scale_prior(scaled, {"k": dist.LogNormal(0.5, 0.8)})
    x = 0.3
    # log10 k = x is normal with mean 0.5 / ln 10 and sd 0.8 / ln 10; b keeps the uniform default.
    expected = stats.norm.logpdf(x, 0.5 / math.log(10), 0.8 / math.log(10)) - math.log(200.0)
    assert float(prior(jnp.array([x, 1.0]))) == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ModelError, match="unknown estimated parameter 'kk'"):
        linear_scale_prior(scaled, {"kk": dist.Normal(0, 1)})


def test_rhat_and_bulk_ess_on_known_draws() -> None:
    rng = np.random.default_rng(0)
    independent = rng.standard_normal((4, 1000))
    assert rhat(independent) < 1.01
    assert 3000 < ess_bulk(independent) < 5000
    shifted = independent + np.array([0.0, 0.0, 0.0, 1.0])[:, None]
    assert rhat(shifted) > 1.1
    # A random walk has far fewer effective draws than draws.
    walk = np.cumsum(rng.standard_normal((4, 1000)), axis=1)
    assert ess_bulk(walk) < 200

"""Profile likelihood on real ODE likelihoods: structural, practical and full identifiability, intervals, plot."""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
import pytest

from biotwin import _jax  # noqa: F401
from biotwin.data import Dataset
from biotwin.errors import ModelError
from biotwin.identify import (
    BOUND,
    IDENTIFIABLE,
    OTHER_BOUND,
    PRACTICAL,
    STRUCTURAL,
    THRESHOLD,
    Profiles,
    profile,
    threshold,
)
from biotwin.likelihood import dataset_objective
from biotwin.progress import rich_progress
from biotwin.model import Model
from biotwin.objective import Objective
from biotwin.report.profiles import plot_profiles
from biotwin.simulate import simulate


def noisy(truth: Model, y0: dict[str, float], times: np.ndarray, seed: int, noise: float = 0.03) -> Dataset:
    """Measurements of the first state with multiplicative normal noise of relative size ``noise``."""
    state = truth.states[0]
    clean = simulate(truth, None, y0, times).state(state)
    measured = clean * (1 + noise * np.random.default_rng(seed).standard_normal(times.size))
    return Dataset.from_arrays(times, measured[:, None], [state])


def optimum(objective: Objective) -> np.ndarray:
    """The maximum-likelihood point: trust-region least squares on the residuals with exact Jacobians."""
    import jax
    from scipy.optimize import least_squares

    residuals, jacobian = jax.jit(objective.residuals), jax.jit(jax.jacfwd(objective.residuals))
    result = least_squares(lambda x: np.asarray(residuals(x)), objective.nominal, jac=lambda x: np.asarray(jacobian(x)),
                           bounds=(objective.lower, objective.upper), method="trf", x_scale="jac",
                           ftol=1e-12, xtol=1e-12, gtol=1e-12)
    return result.x


@pytest.fixture(scope="module")
def product() -> tuple[Objective, Profiles]:
    """dx/dt = -a b x: the data see only the product a b = 0.5."""
    data = noisy(Model.from_text("dx/dt = -a*b*x\na = 2\nb = 0.25"), {"x": 10.0}, np.linspace(0, 10, 21), seed=0)
    model = Model.from_text("dx/dt = -a*b*x\nx(0) = 10\na in [0.01, 100] log = 1\nb in [0.01, 100] log = 1")
    objective = dataset_objective(model, data, noise="proportional")
    return objective, profile(objective, optimum(objective), parameters=["a", "b"])


@pytest.fixture(scope="module")
def logistic() -> tuple[Objective, np.ndarray, Profiles]:
    """Logistic growth r = 0.8, K = 100 from N(0) = 5, 13 points with 3 % noise."""
    truth = Model.from_text("dN/dt = r*N*(1 - N/K)\nr = 0.8\nK = 100")
    data = noisy(truth, {"N": 5.0}, np.linspace(0, 12, 13), seed=1)
    model = Model.from_text("dN/dt = r*N*(1 - N/K)\nN(0) = 5\nr in [0.01, 10] log = 1\nK in [1, 10000] log = 30")
    objective = dataset_objective(model, data, noise="proportional")
    best = optimum(objective)
    return objective, best, profile(objective, best)


def test_a_parameter_seen_only_through_a_product_is_structurally_non_identifiable(product):
    objective, profiles = product
    assert profiles.verdicts == {"a": STRUCTURAL, "b": STRUCTURAL}
    # The Fisher information sees one direction of (log a, log b) and the noise scale: rank 2 of 3.
    assert profiles.fisher_rank == 2
    for p in profiles:
        determined = ~p.pinned
        assert np.max(np.abs(p.rise[determined])) < 1e-3 * p.threshold
        # Flat across more than three decades, until a's partner reaches its bound.
        assert np.ptp(p.x[determined]) > 3.0
        assert p.ends[0] == BOUND and p.ends[1] == OTHER_BOUND
        assert p.curvature == 0.0 and p.wald == (0.0, math.inf)
    assert not profiles.improved


def test_identifiable_intervals_contain_the_truth_and_agree_with_wald(logistic):
    objective, _, profiles = logistic
    assert profiles.threshold == pytest.approx(1.9207, abs=1e-4) == threshold(0.95)
    assert profiles.fisher_rank == 3 and not profiles.improved
    for name, true in {"r": 0.8, "K": 100.0}.items():
        p = profiles[name]
        assert p.verdict == IDENTIFIABLE and p.ends == (THRESHOLD, THRESHOLD)
        low, high = p.interval
        assert low < true < high, (name, low, high)
        assert high / low < 1.1  # 3 % noise on 13 points pins both to a few percent
        wald_low, wald_high = p.wald
        # A nearly quadratic profile: the likelihood-ratio and Wald intervals agree closely.
        assert (high - low) / (wald_high - wald_low) == pytest.approx(1.0, abs=0.1), name
        assert low == pytest.approx(wald_low, rel=0.01) and high == pytest.approx(wald_high, rel=0.01)
        # The interval ends are where the profile, interpolated, reaches the threshold.
        assert np.interp(p.lower, p.x, p.rise) == pytest.approx(p.threshold, rel=0.05)
    # The noise scale is identifiable too; 13 residuals leave its interval wide and skewed upwards.
    sigma = profiles["sigma_N"]
    estimate = objective.values(profiles.best_x)["sigma_N"]
    assert sigma.verdict == IDENTIFIABLE
    assert sigma.interval[1] - estimate > estimate - sigma.interval[0] > 0


def test_without_residuals_lbfgs_on_the_gradient_gives_the_same_interval(logistic):
    objective, best, profiles = logistic
    general = dataclasses.replace(objective, least_squares=None)  # J only, as under Laplace noise
    alone = profile(general, best, parameters=["r"])["r"]
    assert alone.verdict == IDENTIFIABLE
    assert alone.interval == pytest.approx(profiles["r"].interval, rel=2e-3)
    # The Hessian of J by differences of its gradient: the Wald interval matches Gauss-Newton's.
    assert alone.wald == pytest.approx(profiles["r"].wald, rel=5e-3)


def test_michaelis_menten_far_below_km_is_practically_non_identifiable():
    truth = Model.from_text("dS/dt = -Vmax*S/(Km+S)\nVmax = 60\nKm = 300")
    data = noisy(truth, {"S": 5.0}, np.linspace(0, 15, 16), seed=2)
    model = Model.from_text(
        "dS/dt = -Vmax*S/(Km+S)\nS(0) = 5\nVmax in [0.01, 10000] log = 1\nKm in [0.01, 10000] log = 1"
    )
    objective = dataset_objective(model, data, noise="proportional")
    profiles = profile(objective, optimum(objective), parameters=["Km", "Vmax"])
    km, vmax = profiles["Km"], profiles["Vmax"]
    assert km.verdict == PRACTICAL and vmax.verdict == PRACTICAL
    # Small Km saturates the elimination, which the data refute; large Km is linear elimination,
    # which they cannot tell apart: the interval is open above, up to the bound.
    assert km.ends == (THRESHOLD, BOUND) and km.interval[1] == math.inf
    assert km.interval[0] < 300 and km.rise[-1] < km.threshold
    assert vmax.ends[0] == THRESHOLD and vmax.ends[1] != THRESHOLD
    assert 0.01 * km.threshold < np.max(km.rise[km.x > km.optimum]) < km.threshold  # it rises, but not enough


def test_a_better_optimum_found_along_a_profile_is_reported(logistic):
    objective, best, _ = logistic
    start = best.copy()
    start[objective.names.index("K")] += 0.01  # K 2.3 % off: not the optimum
    profiles = profile(objective, start, parameters=["r"])
    assert profiles.improved
    assert profiles.better_nll < profiles.best_nll - 1.0
    assert objective.values(profiles.better_x)["K"] == pytest.approx(objective.values(best)["K"], rel=0.01)


def test_progress_bar_reports_each_parameter(logistic):
    from rich.console import Console

    objective, best, _ = logistic
    calls: list[tuple[int, int, str]] = []
    profile(objective, best, parameters=["sigma_N"], progress=lambda *call: calls.append(call))
    assert calls == [(1, 1, "sigma_N")]
    stream = io.StringIO()
    with rich_progress(Console(file=stream, width=80, force_terminal=False), "profile likelihood") as report:
        profile(objective, best, parameters=["sigma_N", "r"], progress=report)
    assert "profile likelihood: r" in stream.getvalue() and "2/2" in stream.getvalue()


def test_plot_writes_a_png(logistic, product, tmp_path):
    _, _, profiles = logistic
    path = plot_profiles(profiles, tmp_path / "figures" / "profiles.png", title="logistic growth")
    content = path.read_bytes()
    assert content.startswith(b"\x89PNG\r\n\x1a\n") and len(content) > 10_000
    flat = plot_profiles(product[1], tmp_path / "flat.png")
    assert flat.stat().st_size > 10_000 and not list(tmp_path.glob(".*tmp*"))


def test_unknown_parameter_and_bad_arguments_are_explained(logistic):
    objective, best, profiles = logistic
    with pytest.raises(ModelError, match="unknown estimated parameter 'rr'; did you mean 'r'"):
        profile(objective, best, parameters=["rr"])
    with pytest.raises(ModelError, match="did you mean 'sigma_N'"):
        profiles["sigma_n"]
    with pytest.raises(ModelError, match="'r' is listed twice"):
        profile(objective, best, parameters=["r", "K", "r"])
    with pytest.raises(ModelError, match="confidence must lie between 0 and 1"):
        profile(objective, best, confidence=95)
    with pytest.raises(ModelError, match="one value per estimated parameter"):
        profile(objective, best[:2])
    outside = best.copy()
    outside[0] = 5.0
    with pytest.raises(ModelError, match="'r' at 5.0 .* outside its bounds"):
        profile(objective, outside)

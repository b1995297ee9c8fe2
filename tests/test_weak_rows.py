"""The rates in weak form (:mod:`biotwin.discover.weak_rows`): b = G xi holds for the true
coefficients on real smoothed data, and on ODEBench's oscillator-death system with 5% noise and
half the points dropped the weak form's best pair of terms is the true one where the
derivative estimates' is not."""

from __future__ import annotations

import numpy as np
import pytest

from biotwin.bench.corrupt import corrupt
from biotwin.bench.systems import suite
from biotwin.data import Dataset, Experiment
from biotwin.discover.derivatives import resample, smooth_dataset
from biotwin.discover.library import build_library
from biotwin.discover.sparse import best_subsets
from biotwin.discover.weak_rows import MIN_ROWS, weak_rows


def _plain(experiment, values, times):
    return values


def _none(experiment, times):
    return np.zeros((len(times), len(experiment.observables)))


def test_weak_rows_of_a_decay_give_its_rate_constant() -> None:
    # x' = -0.5 x, 40 uneven times, 2 % multiplicative noise: b = G k with k = -0.5 to a few per cent.
    rng = np.random.default_rng(0)
    times = np.sort(rng.uniform(0, 8, 40))
    values = 3.0 * np.exp(-0.5 * times) * np.exp(0.02 * rng.standard_normal(40))
    data = Dataset((Experiment("decay", times, ("x",), values[:, None]),))
    smooths = smooth_dataset(data)
    rows = weak_rows(list(data), smooths, ("x",), _plain, _none)
    assert rows is not None and rows.lhs.shape[1] == 1 and len(rows.lhs) >= MIN_ROWS
    G = rows.project(lambda v: v)
    rate = np.linalg.lstsq(G, rows.lhs[:, 0], rcond=None)[0][0]
    assert rate == pytest.approx(-0.5, rel=0.05)


def test_an_experiment_too_short_for_test_functions_adds_no_rows() -> None:
    # With 10 times or fewer, a support holding 5 intervals is wider than half the span.
    times = np.linspace(0, 1, 10)
    data = Dataset((Experiment("short", times, ("x",), np.exp(-times)[:, None]),))
    assert weak_rows(list(data), smooth_dataset(data), ("x",), _plain, _none) is None


def test_the_weak_form_finds_the_wobble_of_two_rotating_angles_that_the_derivatives_miss() -> None:
    # ODEBench 51 (Ermentrout-Kopell oscillator death): x0' = 1.432 + sin(x1) cos(x0),
    # x1' = 0.972 + sin(x1) cos(x0). The angles grow to 16 rad, so 5 % noise is as large as the
    # wobble and the smoothed derivatives lose it.
    system = next(s for s in suite("odebench") if s.name.startswith("odebench_51_"))
    data = corrupt(system.dataset(reveal_initial=False), "noise=0.05,subsample=0.5", seed=0)
    states = tuple(data.observables)
    smooths = smooth_dataset(data)
    grids = resample(data, smooths, n_points=100)
    X = np.concatenate([g.values for g in grids])
    dX = np.concatenate([g.derivatives for g in grids])
    library = build_library(states, X, ("constant", "polynomial", "trigonometric", "trigonometric_products",
                                        "exponential"))
    rows = weak_rows(list(data), smooths, states, _plain, _none)
    G = rows.project(library.evaluate)
    truth = {"1", "sin(x_1)*cos(x_0)"}
    for k in range(2):
        weak_pair = best_subsets(G, rows.lhs[:, k], sizes=(2,))[0]
        assert {library.labels[j] for j in weak_pair.indices} == truth
        derivative_pair = best_subsets(library.evaluate(X), dX[:, k], sizes=(2,))[0]
        assert {library.labels[j] for j in derivative_pair.indices} != truth

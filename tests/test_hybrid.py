"""Hybrid twins: a Lotka-Volterra skeleton with unknown interactions, trained and distilled back into equations."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

from biotwin.data import Dataset
from biotwin.discover.hybrid import Skeleton, distill, train_hybrid
from biotwin.errors import DataError, ModelError
from biotwin.model import Model
from biotwin.simulate import simulate


def test_unknown_interactions_are_learned_and_distilled_into_mass_action_terms() -> None:
    # The classic universal-ODE test: 31 points on [0, 3] with 5 % noise, the interactions unknown.
    truth = Model.from_text("dx/dt = 1.3*x - 0.9*x*y\ndy/dt = -0.8*y + 1.8*x*y")
    times = np.linspace(0, 3, 31)
    clean = np.asarray(simulate(truth, times=times, y0={"x": 0.44249296, "y": 4.6280594}).states)
    noisy = clean * (1 + 0.05 * np.random.default_rng(0).standard_normal(clean.shape))
    data = Dataset.from_arrays(times, noisy, ["x", "y"])
    skeleton = Skeleton.from_text("dx/dt = a*x + NN1(x, y)\ndy/dt = -c*y + NN2(x, y)\na in [0, 5] = 1\nc in [0, 5] = 1")
    hybrid = train_hybrid(skeleton, data, steps=1000)
    distilled = distill(hybrid, data)
    x, y = sympy.symbols("x y")
    rhs = {s: sympy.expand(e.subs({sympy.Symbol(p.name): p.value for p in distilled.model.parameters}))
           for s, e in zip(distilled.model.states, distilled.model.rhs)}
    assert set(rhs["x"].as_coefficients_dict()) == {x, x * y}
    assert set(rhs["y"].as_coefficients_dict()) == {y, x * y}
    assert float(rhs["x"].coeff(x * y)) == pytest.approx(-0.9, rel=0.1)
    assert float(rhs["y"].coeff(x * y)) == pytest.approx(1.8, rel=0.1)


def test_skeletons_with_mistakes_get_clear_errors() -> None:
    with pytest.raises(ModelError, match="has no neural term"):
        Skeleton.from_text("dx/dt = -a*x")
    with pytest.raises(ModelError, match="NN1 reads unknown state 'z'"):
        Skeleton.from_text("dx/dt = NN1(x, z)")
    with pytest.raises(ModelError, match="NN1 is called with"):
        Skeleton.from_text("dx/dt = NN1(x)\ndy/dt = NN1(x, y)")
    skeleton = Skeleton.from_text("dx/dt = -a*x + NN1(x, y)\ndy/dt = NN2(x)\na in [0, 1] = 0.5")
    only_x = Dataset.from_arrays(np.arange(5.0), np.ones((5, 1)), ["x"])
    with pytest.raises(DataError, match="state 'y' is never measured"):
        train_hybrid(skeleton, only_x, steps=1)

"""A twin's observables over each experiment on a dense time grid: the best fit and posterior bands.

For the figures of a twin. The best fit is the model at the fitted parameters (the model's
defaults where there is no fit). With a posterior, each of a subset of its draws x is simulated
and, when the fit's noise model and noise scales are known, a replicated measurement is drawn
around it, T(y~) = T(h(x)) + sigma e (see :meth:`biotwin.objective.Measurements.replicate`);
the quantiles of y~ over the draws are the posterior predictive bands.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from biotwin.data import Experiment
from biotwin.errors import SolverError
from biotwin.likelihood import NOISE_PREFIX
from biotwin.model import Model
from biotwin.report.folder import TwinResults

if TYPE_CHECKING:
    from biotwin.simulate import Plan

#: The quantiles of the bands: the 90 % and 50 % central intervals and the median.
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
#: The central intervals the bands show, widest first.
LEVELS = (0.9, 0.5)


@dataclass(frozen=True, eq=False)
class Trajectory:
    """One experiment's observables on a time grid.

    ``times`` (T,); ``best`` (T, O) the observables ``names`` at the best fit; ``quantiles``
    (len(QUANTILES), T, O) the posterior predictive quantiles, or None without a posterior;
    ``draws`` the number of posterior draws that could be solved; ``noisy`` whether the bands
    include the measurement noise (else they are bands of the model's prediction h(x) alone).
    """

    experiment: str
    times: np.ndarray
    names: tuple[str, ...]
    best: np.ndarray
    quantiles: np.ndarray | None = None
    draws: int = 0
    noisy: bool = False

    def column(self, name: str) -> int:
        return self.names.index(name)

    def quantile(self, name: str, q: float) -> np.ndarray:
        """The ``q`` quantile (one of :data:`QUANTILES`) of observable ``name`` over the grid."""
        assert self.quantiles is not None
        return self.quantiles[QUANTILES.index(q), :, self.column(name)]

    def band(self, name: str, level: float) -> tuple[np.ndarray, np.ndarray]:
        """The central ``level`` interval (one of :data:`LEVELS`) of observable ``name``: lower and upper edges."""
        tail = round((1.0 - level) / 2.0, 10)
        return self.quantile(name, tail), self.quantile(name, round(1.0 - tail, 10))


def initial_states(model: Model, experiment: Experiment, theta: np.ndarray, fitted: Mapping[str, float]) -> np.ndarray:
    """Initial states (B, n) for parameter sets ``theta`` (B, P), as the likelihood starts them.

    The experiment's overrides first, then ``fitted`` values (a discovered twin's fitted initial
    states), then the model's initial expressions at each theta, then the first measurement.
    """
    from biotwin.experiment import initial_states as at_parameters
    from biotwin.likelihood import given_initial_values

    design = experiment.replace(overrides={**{k: v for k, v in fitted.items() if k not in experiment.overrides},
                                           **experiment.overrides})
    return at_parameters(model, theta, given_initial_values(model, design), f"experiment '{experiment.name}'")


def _solve(model: Model, thetas: np.ndarray, y0: np.ndarray, plan: Plan, rtol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Observables (B, T, O) of a batch of parameter sets, initial states and plans (stacked, so
    that one compiled solve serves them all) and whether each solve succeeded (B,)."""
    from biotwin.simulate import OK, solve_batch

    _, observables, status, _ = solve_batch(model, thetas, y0, plan, "auto", rtol)
    ok = (np.asarray(status) == OK) & np.all(np.isfinite(observables), axis=(1, 2))
    return observables, ok


def _replicated(h: np.ndarray, names: tuple[str, ...], sigmas: Mapping[str, np.ndarray], noise: str,
                rng: np.random.Generator) -> np.ndarray:
    """Replicated measurements (B, T, O) around predictions h under the fit's noise model.

    Observables without a noise scale (not measured) are left as predicted.
    """
    from biotwin.objective import TRANSFORMS, Measurements

    draws, points, count = h.shape
    scale = np.zeros_like(h)
    for k, name in enumerate(names):
        if name in sigmas:
            scale[:, :, k] = sigmas[name][:, None] * (np.abs(h[:, :, k]) if noise == "proportional" else 1.0)
    transform = TRANSFORMS.index("log" if noise == "lognormal" else "lin")
    size = points * count
    grid = Measurements(("",) * size, tuple(names) * points, np.zeros(size), np.zeros(size),
                        transform=np.full(size, transform))
    return grid.replicate(h.reshape(draws, size), scale.reshape(draws, size), rng).reshape(h.shape)


def trajectories(results: TwinResults, *, grid: int = 200, draws: int = 200, seed: int = 0) -> dict[str, Trajectory]:
    """Every experiment's observables at ``grid`` times from its start to its last measurement.

    The best fit, and with a posterior the :data:`QUANTILES` of ``draws`` posterior draws
    (replicated with measurement noise when the fit's noise model is known). Draws whose solve
    fails are left out. Raises :class:`SolverError` when the best fit itself cannot be solved.
    """
    from biotwin.simulate import Plan, plan_for_experiment

    model = results.twin.model
    names = model.parameter_names
    estimated = {k: v for k, v in results.estimated.items() if k in names}
    fitted = results.twin.initial if results.fit is None else {}
    sample = results.draws(draws, seed)
    size = 1 + (len(sample) if sample is not None else 0)
    dataset = results.twin.dataset
    grids = [np.linspace(e.start, float(e.times[-1]), grid) for e in dataset]
    segments = max(plan_for_experiment(model, e, t).jumps.shape[0] for e, t in zip(dataset, grids))
    thetas, initials, plans = [], [], []
    for experiment, times in zip(dataset, grids):
        # Row 0 is the best fit, the others the posterior draws; experiment overrides win over both.
        overrides = {k: v for k, v in experiment.overrides.items() if k in names}
        theta = np.tile(model.parameter_vector({**estimated, **overrides}), (size, 1))
        if sample is not None:
            drawn = [k for k, name in enumerate(names) if name in sample.names and name not in overrides]
            theta[1:, drawn] = sample.thetas(model)[:, drawn]
        thetas.append(theta)
        initials.append(initial_states(model, experiment, theta, fitted.get(experiment.name, {})))
        plans += [plan_for_experiment(model, experiment, times, segments)] * size
    stacked = Plan(*(np.stack(parts) for parts in zip(*plans)))
    observables, ok = _solve(model, np.concatenate(thetas), np.concatenate(initials), stacked)
    rng = np.random.default_rng(seed)
    out: dict[str, Trajectory] = {}
    for e, (experiment, times) in enumerate(zip(dataset, grids)):
        rows = slice(e * size, (e + 1) * size)
        h, solved = observables[rows], ok[rows]
        if not solved[0]:
            raise SolverError(f"the model cannot be solved at the fitted parameters in experiment '{experiment.name}'; "
                              "fit it again ('biotwin fit TWIN_DIR')")
        trajectory = Trajectory(experiment.name, times, model.observable_names, h[0])
        usable = solved[1:]
        if usable.any():
            replicates = h[1:][usable]
            sigmas = {o: sample.column(NOISE_PREFIX + o)[usable] for o in model.observable_names
                      if NOISE_PREFIX + o in sample.names}
            noisy = results.noise is not None and bool(sigmas)
            if noisy:
                replicates = _replicated(replicates, model.observable_names, sigmas, results.noise, rng)
            with warnings.catch_warnings():  # a grid point where every replicate is NaN stays NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                quantiles = np.nanquantile(replicates, QUANTILES, axis=0)
            trajectory = Trajectory(experiment.name, times, model.observable_names, h[0], quantiles,
                                    int(usable.sum()), noisy)
        out[experiment.name] = trajectory
    return out

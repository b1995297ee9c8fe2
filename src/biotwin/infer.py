"""The Bayesian posterior of an objective's parameters, sampled by NUTS.

For an :class:`~biotwin.objective.Objective` with negative log-likelihood J(x) and log prior
log pi(x), both on the optimisation scale, the posterior is

    p(x | y)  ∝  exp(-J(x)) pi(x),        lower <= x <= upper.

**Prior.** ``objective.log_prior`` when the problem has one (a PEtab parameter table); otherwise
:func:`default_log_prior`: uniform on [lower, upper] on the optimisation scale when both bounds
are finite, else a wide normal around the nominal value (three decades for log-scale
parameters), cut at the finite bound.

**Sampling space.** NUTS moves on a vector z, x = T(z), parameter by parameter:

    x = z,  l <= z <= u                  both bounds finite, log scale: walls at l and u
    x = l + (u - l) / (1 + exp(-z))     both bounds finite, linear scale
    x = l + exp(z),   x = u - exp(z)     one bound finite
    x = z                                no bound

and samples the density p(z) = p(T(z)) * prod_k |T_k'(z_k)|. A log-scale parameter already
lives where ODE rates have near-normal posteriors; its trajectories bounce off the walls
(:meth:`Transform.move`), so that a ridge of non-identifiable parameters that runs into a bound
(a hidden state's scale traded between its production and its effect) stays straight instead
of bending towards infinity in logit space, where no constant mass matrix follows it. Near a
bound at zero the logistic map behaves as a logarithm, so a positive rate declared on the
linear scale is sampled on a log scale.

**Modes and mass matrices.** Every start is first taken to its nearest posterior mode z* by
damped Newton steps, with the gradient and the Hessian H of -log p(z) (central differences of
the exact gradient); a best fit is at or next to a mode, and prior draws serve as starts too.
Each chain then starts at a draw from the Laplace approximation N(z*, H^{-1}) of its mode, with
the *dense mass matrix* M = H.

**Warm-up** tunes the step size by dual averaging and re-estimates the mass matrix from the
chain's own draws in Stan's windows (:func:`metric_windows`): where the posterior is not
Gaussian (a ridge of practically non-identifiable parameters bounded by the prior, a curved
valley), the curvature at the mode misjudges its spread and trajectories hit the maximum tree
depth. At the end of each window M^{-1} becomes the draws' covariance C, shrunk towards the
Laplace covariance with n pseudo-draws,

    M^{-1} = (N C + n H^{-1}) / (N + n),          N draws in the window,

and dual averaging restarts from the current step size. On a posterior with a quartic
direction (tests/test_infer.py) this halves the leapfrog steps per draw and removes the
divergences.

**One flat, vectorised loop.** The sampler is the multinomial NUTS of Stan and numpyro, written
so that every iteration of one compiled loop takes one leapfrog step in every chain: the
potential and its gradient appear once in the program, evaluated on all chains in one batch,
and no chain waits for another's longer trajectory. The Newton probes and the chains' first
points run through the same compiled call, so the model's sensitivity solve is compiled once.
The compiled program is kept with the objective, so sampling it again (another seed, more
starts of the same number) compiles nothing. Randomness comes from a counter-based generator (SplitMix64 of chain, iteration and use),
which keeps the program small. The gradient is taken in *forward mode* when the objective
allows it (few parameters: carrying n tangents through one solve beats a reverse pass through
a checkpointed solve), else in reverse mode.

Measured in ``benchmarks/nuts_vs_numpyro.py`` (lynx-hare Lotka-Volterra, 8 unknowns, 4 chains x
1000 draws, 2 busy cores): compilation about 7 s, a batched gradient of 4 chains 0.65 ms, about
8,000 of them, a bulk ESS above 4,000 - about 35x the ESS per second of plain numpyro NUTS.

**Diagnostics** follow Vehtari et al. (2021), "Rank-normalization, folding, and localization":
split R-hat on rank-normalised draws (the larger of the bulk and the folded, tail, value) and the
bulk effective sample size, from ``numpyro.diagnostics.effective_sample_size`` on split,
rank-normalised chains. :class:`Posterior` lists a warning (and :func:`infer` issues a
:class:`ConvergenceWarning`) when R-hat exceeds 1.01, when transitions diverge after warm-up,
when the bulk ESS is below 100 per chain, or when trajectories hit the maximum tree depth.
"""

from __future__ import annotations

import math
import time
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from biotwin.errors import ModelError
from biotwin.objective import Measurements, Objective, from_scale
from biotwin.progress import Progress

#: R-hat above this means the chains have not mixed (Vehtari et al. 2021).
RHAT_LIMIT = 1.01
#: Fewer effective draws than this per chain make the R-hat and ESS estimates themselves unreliable.
MIN_ESS_PER_CHAIN = 100
#: The default NUTS tree depth cap: at most 2^depth leapfrog steps per draw.
DEFAULT_MAX_TREE_DEPTH = 10
#: Step of the central differences of the gradient that give the Laplace Hessian (in z).
HESSIAN_STEP = 1e-4
#: Newton steps towards the mode from each start: at most this many, first trust radius (in z),
#: and the Newton decrement below which a start is at its mode.
NEWTON_ITERATIONS, NEWTON_RADIUS, NEWTON_TOLERANCE = 60, 1.0, 1e-6
#: Largest trust radius of the Newton steps (in z: two decades for a log10-scale parameter). One
#: step that multiplies a rate by 10^8 lands where the model is stiff and the solve runs to its
#: step limit for all 2n + 1 probes of that start: on lynx-hare from prior draws, one such probe
#: set took 16.6 s of the 19.2 s spent finding the modes; with this limit, 2.3 s for the same modes.
NEWTON_MAX_RADIUS = 2.0
#: Starts whose mode has -log p more than this above the best mode's (density below 1e-4 of it)
#: get no chain.
MODE_GAP = math.log(1e4)
#: Standard deviation of the default prior of a parameter without two finite bounds, in decades
#: for log-scale parameters and in units of max(|nominal|, 1) for linear-scale ones.
DEFAULT_PRIOR_DECADES = 3.0
DEFAULT_PRIOR_WIDTH = 10.0
#: How far inside its bounds a start on a bound is moved, relative to the bounds' width.
BOUND_MARGIN = 1e-6
#: Most wall bounces within one leapfrog step (a step longer than many box widths is cut short).
MAX_BOUNCES = 64
#: Leapfrog steps per chain between two progress reports.
PROGRESS_ITERATIONS = 256
#: Stan's warm-up windows (draws): a first buffer tuning only the step size, the first window
#: re-estimating the mass matrix (each next one twice as long), a last buffer for the step size.
#: Warm-ups too short for them split 15 % / 75 % / 10 %, and below MIN_METRIC_WARMUP the Laplace
#: mass matrix is kept.
METRIC_BUFFERS, METRIC_WINDOW, MIN_METRIC_WARMUP = (75, 50), 25, 20


#: Compiled samplers by objective and settings (shapes and constants of the program), kept while
#: the objective lives: sampling the same objective again, e.g. with another seed, compiles nothing.
_COMPILED: weakref.WeakKeyDictionary[Objective, dict[tuple[Any, ...], tuple[Any, bool]]] = weakref.WeakKeyDictionary()


class ConvergenceWarning(UserWarning):
    """The sampler's diagnostics say the draws may not represent the posterior."""


# ---------------------------------------------------------------------------------------------
# The unconstrained sampling space


#: Transform kinds: no finite bound, lower only, upper only, both (logistic map), both (walls).
FREE, LOWER, UPPER, LOGISTIC, WALLED = 0, 1, 2, 3, 4


@dataclass(frozen=True, eq=False)
class Transform:
    """The map x = T(z) from the sampling space to the bounded optimisation scale.

    ``kind[k]`` is :data:`FREE` for no finite bound, :data:`LOWER` for a lower bound only,
    :data:`UPPER` for an upper bound only and :data:`LOGISTIC` for both, mapped from the real
    line; :data:`WALLED` has both bounds and x = z itself, kept inside them by walls that the
    sampler's trajectories bounce off (:meth:`move`). The bounds hold where they are finite (zero
    elsewhere, never used).
    """

    kind: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def for_bounds(cls, lower: np.ndarray, upper: np.ndarray, walls: np.ndarray | None = None) -> Transform:
        """The transform for bounds; parameters with both bounds finite and ``walls`` set are walled."""
        lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
        has_lower, has_upper = np.isfinite(lower), np.isfinite(upper)
        kind = has_lower.astype(int) + 2 * has_upper.astype(int)
        if walls is not None:
            kind = np.where(np.asarray(walls, dtype=bool) & (kind == LOGISTIC), WALLED, kind)
        return cls(kind, np.where(has_lower, lower, 0.0), np.where(has_upper, upper, 0.0))

    @property
    def _two_sided(self) -> np.ndarray:
        return (self.kind == LOGISTIC) | (self.kind == WALLED)

    @property
    def walled(self) -> bool:
        """Whether any parameter is kept in its bounds by walls."""
        return bool(np.any(self.kind == WALLED))

    def inside(self, x: np.ndarray) -> np.ndarray:
        """``x`` moved strictly inside the bounds (a start on a bound would map to z = -inf)."""
        width = np.where(self._two_sided, self.upper - self.lower, 1.0)
        margin = BOUND_MARGIN * width
        low = np.where((self.kind == LOWER) | self._two_sided, self.lower + margin, -np.inf)
        high = np.where((self.kind == UPPER) | self._two_sided, self.upper - margin, np.inf)
        return np.clip(x, low, high)

    def within_walls(self, z: np.ndarray) -> np.ndarray:
        """``z`` with every walled coordinate clipped to its bounds (NumPy)."""
        return np.where(self.kind == WALLED, np.clip(z, self.lower, self.upper), z)

    def to_z(self, x: np.ndarray) -> np.ndarray:
        """z = T^{-1}(x) for x strictly inside the bounds (NumPy)."""
        x = np.asarray(x, dtype=float)
        width = np.where(self.kind == LOGISTIC, self.upper - self.lower, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            fraction = (x - self.lower) / width
            logit = np.log(fraction) - np.log1p(-fraction)
            return np.select(
                [self.kind == LOGISTIC, self.kind == LOWER, self.kind == UPPER],
                [logit, np.log(x - self.lower), np.log(self.upper - x)],
                x,
            )

    def move(self, z: Any, r: Any, epsilon: Any, inverse_mass: Any) -> tuple[Any, Any]:
        """The position step of a leapfrog, z + epsilon M^{-1} r, bouncing off the walls (JAX).

        Along the straight path the first wall crossed, of coordinate k at the fraction t of the
        step, stops the move; the momentum is reflected in the metric,

            r' = r - 2 (v_k / (M^{-1})_kk) e_k,        v = M^{-1} r,

        which reverses the velocity's k-th component and keeps every direction along the wall
        (v' = v - 2 v_k M^{-1} e_k / (M^{-1})_kk), the kinetic energy r^T M^{-1} r / 2 and
        the phase-space volume (|det| = 1; applied twice, it is the identity). The move goes on
        for the remaining 1 - t of the step. The map stays reversible and volume-preserving, so
        HMC with it samples the density restricted to the box exactly (Neal 2011, "MCMC using
        Hamiltonian dynamics", 5.1; Afshar & Domke 2015), and a ridge that runs into a bound
        stays straight where the logistic map would bend it towards infinity.
        """
        import jax
        import jax.numpy as jnp

        if not self.walled:
            return z + epsilon * (inverse_mass @ r), r
        walled = self.kind == WALLED
        low = jnp.asarray(np.where(walled, self.lower, -np.inf))
        high = jnp.asarray(np.where(walled, self.upper, np.inf))
        diagonal = jnp.diagonal(inverse_mass)

        def bounce(state: tuple[Any, Any, Any, Any]) -> tuple[Any, Any, Any, Any]:
            z, r, remaining, count = state
            velocity = inverse_mass @ r
            displacement = epsilon * velocity
            moving = displacement != 0
            safe = jnp.where(moving, displacement, 1.0)
            to_wall = jnp.where(moving, jnp.where(displacement > 0, high - z, low - z) / safe, jnp.inf)
            times = jnp.maximum(to_wall, 0.0)
            k = jnp.argmin(times)
            hit = times[k] < remaining
            travel = jnp.where(hit, times[k], remaining)
            moved = z + travel * displacement
            wall = jnp.where(displacement[k] > 0, high[k], low[k])
            z = jnp.where(hit, moved.at[k].set(wall), moved)
            r = jnp.where(hit, r.at[k].add(-2.0 * velocity[k] / diagonal[k]), r)
            return z, r, jnp.where(hit, remaining - times[k], 0.0), count + 1

        z, r, _, _ = jax.lax.while_loop(lambda state: (state[2] > 0) & (state[3] < MAX_BOUNCES), bounce,
                                        (z, r, jnp.ones(()), jnp.zeros((), dtype=int)))
        return z, r

    def to_x(self, z: Any) -> Any:
        """x = T(z) (JAX)."""
        import jax
        import jax.numpy as jnp

        kind = jnp.asarray(self.kind)
        width = jnp.asarray(np.where(self.kind == LOGISTIC, self.upper - self.lower, 1.0))
        # exp(z) is only used where one bound is finite; clipping keeps the unused branches finite
        # so that no NaN leaks into the derivatives.
        grown = jnp.exp(jnp.clip(z, -700.0, 700.0))
        return jnp.select(
            [kind == LOGISTIC, kind == LOWER, kind == UPPER],
            [self.lower + width * jax.nn.sigmoid(z), self.lower + grown, self.upper - grown],
            z,
        )

    def log_jacobian(self, z: Any) -> Any:
        """log |dT/dz| summed over the parameters (JAX)."""
        import jax
        import jax.numpy as jnp

        kind = jnp.asarray(self.kind)
        width = np.where(self.kind == LOGISTIC, self.upper - self.lower, 1.0)
        terms = jnp.select(
            [kind == LOGISTIC, (kind == LOWER) | (kind == UPPER)],
            [jnp.log(width) + jax.nn.log_sigmoid(z) + jax.nn.log_sigmoid(-z), z],
            jnp.zeros_like(z),
        )
        return jnp.sum(terms)


def default_log_prior(objective: Objective) -> Callable[[Any], Any]:
    """The weakly-informative prior used when the objective has none, as a log density of x.

    Per parameter, on its optimisation scale: uniform on [lower, upper] when both bounds are
    finite, log pi = -log(upper - lower); otherwise normal around the nominal value,

        log pi = -1/2 ((x - nominal) / s)^2 - log(s sqrt(2 pi)),

    with s = 3 decades (3 for ``log10``, 3 ln 10 for ``log``) or s = 10 max(|nominal|, 1) for
    ``lin``, cut at the finite bound if there is one (the cut's normalisation is left out).
    """
    terms = _default_terms(objective)

    def log_prior(x: Any) -> Any:
        return terms(x).sum()

    return log_prior


def _default_terms(objective: Objective) -> Callable[[Any], Any]:
    """The default prior's log density parameter by parameter, (n,) for x (n,)."""
    import jax.numpy as jnp

    lower, upper = np.asarray(objective.lower, dtype=float), np.asarray(objective.upper, dtype=float)
    nominal = np.asarray(objective.nominal, dtype=float)
    bounded = np.isfinite(lower) & np.isfinite(upper)
    decade = {"lin": np.nan, "log": math.log(10.0), "log10": 1.0}
    width = np.array([
        DEFAULT_PRIOR_DECADES * decade[scale] if scale != "lin" else DEFAULT_PRIOR_WIDTH * max(abs(value), 1.0)
        for scale, value in zip(objective.scales, nominal)
    ])
    with np.errstate(invalid="ignore"):
        uniform = jnp.asarray(np.where(bounded, -np.log(np.where(bounded, upper - lower, 1.0)), 0.0))
    normal_constant = jnp.asarray(np.where(bounded, 0.0, -np.log(width * math.sqrt(2 * math.pi))))
    centre, spread, is_normal = jnp.asarray(nominal), jnp.asarray(np.where(bounded, 1.0, width)), jnp.asarray(~bounded)

    def terms(x: Any) -> Any:
        deviation = (jnp.asarray(x) - centre) / spread
        return uniform + jnp.where(is_normal, normal_constant - 0.5 * deviation**2, 0.0)

    return terms


def linear_scale_prior(objective: Objective, distributions: Mapping[str, Any]) -> Callable[[Any], Any]:
    """A log prior on the optimisation scale from priors of the parameters' linear-scale values.

    ``distributions`` maps parameter names to numpyro distributions of the linear value p
    (e.g. ``dist.TruncatedNormal(1.0, 0.5, low=0.0)``); a parameter estimated on a log scale,
    x = log p or log10 p, gets the density of x by the change of variables

        log pi_x(x) = log pi_p(p(x)) + log |dp/dx|,    dp/dx = p (log) or p ln 10 (log10).

    Parameters not named keep the :func:`default_log_prior` term. Pass the result as
    ``dataclasses.replace(objective, log_prior=...)``.
    """
    import jax.numpy as jnp

    unknown = [name for name in distributions if name not in objective.names]
    if unknown:
        from biotwin.model import Model

        raise ModelError(Model.unknown_message("estimated parameter", unknown[0], objective.names))
    defaults = _default_terms(objective)
    chosen = [(objective.names.index(name), distribution) for name, distribution in distributions.items()]
    default_index = jnp.asarray([k for k in range(objective.size) if objective.names[k] not in distributions], dtype=int)
    scales = objective.scales

    def log_prior(x: Any) -> Any:
        x = jnp.asarray(x)
        total = jnp.sum(defaults(x)[default_index])
        for k, distribution in chosen:
            p = from_scale(x[k], scales[k])
            total = total + distribution.log_prob(p)
            if scales[k] == "log":
                total = total + x[k]
            elif scales[k] == "log10":
                total = total + x[k] * math.log(10.0) + math.log(math.log(10.0))
        return total

    return log_prior


# ---------------------------------------------------------------------------------------------
# The posterior


@dataclass(frozen=True, eq=False)
class Posterior:
    """Draws from the posterior of an objective's parameters, with the sampler's diagnostics.

    ``x`` (chains, draws, n) holds the draws on the optimisation scale and :attr:`samples` the
    same on the linear scale by name; ``log_density`` (chains, draws) is log p(x | y) up to a
    constant, -J(x) + log pi(x). ``rhat`` and ``ess_bulk`` are per parameter; ``divergences``
    counts divergent transitions after warm-up; ``step_size`` is each chain's adapted step size,
    ``tree_depth`` (chains, draws) the NUTS tree depth of every draw (at most 2^depth leapfrog
    steps) and ``accept`` its mean acceptance statistic; ``gradient_evaluations`` counts the
    leapfrog steps of the kept draws and ``iterations`` the batched gradient evaluations of the
    whole run (every chain takes one leapfrog step per iteration).

    ``modes`` (k, n) are the posterior modes the chains started from (optimisation scale, best
    first). Times, in seconds: ``wall_time`` the whole call, of which ``compile_time`` compiling
    (next to nothing when the same objective was sampled with the same settings before),
    ``mode_time`` finding the modes and ``sampling_time`` warm-up and draws. ``gradient`` says
    whether derivatives were taken in ``"forward"`` or ``"reverse"`` mode.
    """

    names: tuple[str, ...]
    scales: tuple[str, ...]
    x: np.ndarray
    log_density: np.ndarray
    rhat: Mapping[str, float]
    ess_bulk: Mapping[str, float]
    divergences: int
    step_size: np.ndarray
    tree_depth: np.ndarray
    accept: np.ndarray
    gradient_evaluations: int
    iterations: int
    sampling_time: float
    modes: np.ndarray
    mode_time: float
    max_tree_depth: int
    warmup: int
    wall_time: float
    compile_time: float
    gradient: str
    warnings: tuple[str, ...] = ()

    @property
    def chains(self) -> int:
        return int(self.x.shape[0])

    @property
    def draws(self) -> int:
        return int(self.x.shape[1])

    @property
    def samples(self) -> dict[str, np.ndarray]:
        """Draws on the linear scale, (chains, draws) per parameter."""
        return _linear(self.x, self.names, self.scales)

    @property
    def max_rhat(self) -> float:
        return max(self.rhat.values())

    @property
    def at_max_depth(self) -> float:
        """The share of draws whose trajectory stopped at the tree depth cap."""
        return at_max_depth(self.tree_depth, self.max_tree_depth)

    @property
    def min_ess(self) -> float:
        return min(self.ess_bulk.values())

    @property
    def ess_per_second(self) -> float:
        """The smallest bulk ESS over the parameters per second of wall time."""
        return self.min_ess / self.wall_time if self.wall_time > 0 else math.inf

    def mean(self) -> dict[str, float]:
        """Posterior means on the linear scale."""
        return {name: float(np.mean(values)) for name, values in self.samples.items()}

    def predictive(self, objective: Objective, *, draws: int = 200, seed: int = 0, level: float = 0.9) -> Predictive:
        """The posterior predictive distribution of every measurement; see :func:`predictive`."""
        return predictive(self, objective, draws=draws, seed=seed, level=level)

    def _repr_html_(self) -> str:
        from biotwin.report.tables import html_table

        header = ("name", "mean", "sd", "lower", "median", "upper", "rhat", "ess_bulk")
        caption = (f"{self.chains} chains x {self.draws} draws; 90 % intervals; max R-hat {self.max_rhat:.3f}, "
                   f"min bulk ESS {self.min_ess:.0f}, {self.divergences} divergences")
        return html_table(header, [[row[h] for h in header] for row in self.summary()], caption)

    def summary(self, level: float = 0.9) -> list[dict[str, float | str]]:
        """One row per parameter: mean, sd, the central ``level`` interval and median, R-hat, bulk ESS."""
        tail = (1.0 - level) / 2.0
        rows: list[dict[str, float | str]] = []
        for name, values in self.samples.items():
            low, median, high = np.quantile(values, [tail, 0.5, 1.0 - tail])
            rows.append({
                "name": name, "mean": float(np.mean(values)), "sd": float(np.std(values)), "lower": float(low),
                "median": float(median), "upper": float(high), "rhat": self.rhat[name], "ess_bulk": self.ess_bulk[name],
            })
        return rows


def _linear(x: np.ndarray, names: Sequence[str], scales: Sequence[str]) -> dict[str, np.ndarray]:
    """Draws (..., n) on the optimisation scale as linear-scale arrays by name."""
    return {name: np.asarray(from_scale(x[..., k], scale)) for k, (name, scale) in enumerate(zip(names, scales))}


# ---------------------------------------------------------------------------------------------
# Posterior predictive

@dataclass(frozen=True, eq=False)
class Predictive:
    """Posterior predictive bands of the measurements an objective explains.

    For every measurement m of ``measurements`` (same order), ``median``, ``lower`` and ``upper``
    are the median and the central ``level`` interval of replicated measurements y~_m, drawn as
    x ~ posterior, then y~_m from the noise model around h_m(x) with scale sigma_m(x).
    ``replicates`` (draws, M) holds the replicated measurements themselves.
    """

    measurements: Measurements
    level: float
    median: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    replicates: np.ndarray

    @property
    def coverage(self) -> float:
        """The fraction of measured values inside their band (about ``level`` for a calibrated model)."""
        value = self.measurements.value
        return float(np.mean((value >= self.lower) & (value <= self.upper)))

    def bands(self, experiment: str, observable: str) -> dict[str, np.ndarray]:
        """One observable of one experiment, by time: ``time``, ``value`` (data), ``median``, ``lower``, ``upper``."""
        chosen = np.array([e == experiment and o == observable
                           for e, o in zip(self.measurements.experiment, self.measurements.observable)], dtype=bool)
        if not chosen.any():
            raise ModelError(
                f"no measurement of '{observable}' in experiment '{experiment}'; pairs measured: "
                + ", ".join(sorted({f"{e}/{o}" for e, o in zip(self.measurements.experiment, self.measurements.observable)}))
            )
        order = np.argsort(self.measurements.time[chosen], kind="stable")
        return {
            "time": self.measurements.time[chosen][order], "value": self.measurements.value[chosen][order],
            "median": self.median[chosen][order], "lower": self.lower[chosen][order], "upper": self.upper[chosen][order],
        }


def predictive(posterior: Posterior, objective: Objective, *, draws: int = 200, seed: int = 0,
               level: float = 0.9) -> Predictive:
    """Replicate every measurement of ``objective`` from ``draws`` posterior draws, with observation noise.

    For each draw x (chosen at random among all chains' draws, without repetition where
    possible), the predictions h(x) and noise scales sigma(x) of the objective give replicated
    measurements under each measurement's own noise model (:meth:`Measurements.replicate`:
    T(y~) = T(h) + sigma e with the measurement's transformation T and normal or Laplace e;
    a proportional objective already returns sigma_m = sigma |h_m|). Draws whose solve fails
    are left out.
    """
    import jax
    import jax.numpy as jnp

    from biotwin import _jax  # noqa: F401

    if tuple(posterior.names) != tuple(objective.names):
        raise ModelError(
            f"the posterior is over ({', '.join(posterior.names)}) but the objective estimates "
            f"({', '.join(objective.names)}); use the objective the posterior was sampled from"
        )
    if draws < 1 or not 0.0 < level < 1.0:
        raise ModelError(f"need draws >= 1 and level in (0, 1); got {draws} and {level}")
    rng = np.random.default_rng(seed)
    pool = posterior.x.reshape(-1, posterior.x.shape[-1])
    chosen = rng.choice(len(pool), size=draws, replace=draws > len(pool))
    x = jnp.asarray(pool[chosen])
    h = np.asarray(jax.jit(jax.vmap(objective.predict))(x))
    sigma = np.asarray(jax.jit(jax.vmap(objective.sigma))(x))
    usable = np.all(np.isfinite(h), axis=1) & np.all(np.isfinite(sigma), axis=1)
    if not usable.any():
        raise ModelError("the model could not be solved at any of the posterior draws; check the objective")
    h, sigma = h[usable], sigma[usable]
    replicates = objective.measurements.replicate(h, sigma, rng)
    tail = 100 * (1 - level) / 2
    lower, median, upper = np.percentile(replicates, [tail, 50.0, 100 - tail], axis=0)
    return Predictive(objective.measurements, level, median, lower, upper, replicates)


# ---------------------------------------------------------------------------------------------
# Diagnostics


def _rank_normalise(draws: np.ndarray) -> np.ndarray:
    """z-scores of the fractional ranks of all draws pooled, (r - 3/8) / (S + 1/4)."""
    from scipy.special import ndtri
    from scipy.stats import rankdata

    ranks = rankdata(draws, method="average").reshape(draws.shape)
    return ndtri((ranks - 0.375) / (draws.size + 0.25))


def _split(draws: np.ndarray) -> np.ndarray:
    """Each chain cut into its first and second half (a middle draw of an odd length is dropped)."""
    half = draws.shape[1] // 2
    return np.concatenate([draws[:, :half], draws[:, draws.shape[1] - half :]], axis=0)


def _rhat(draws: np.ndarray) -> float:
    """Potential scale reduction of (chains, draws), sqrt(((N - 1)/N W + B/N) / W)."""
    n = draws.shape[1]
    within = float(np.mean(np.var(draws, axis=1, ddof=1)))
    between = n * float(np.var(np.mean(draws, axis=1), ddof=1))
    if within <= 0:
        return 1.0 if between <= 0 else math.inf
    return math.sqrt(((n - 1) / n * within + between / n) / within)


def rhat(draws: np.ndarray) -> float:
    """Rank-normalised split R-hat of one quantity's draws (chains, draws): max of bulk and tail R-hat."""
    draws = np.asarray(draws, dtype=float)
    if draws.shape[1] < 4:
        raise ModelError(f"R-hat needs at least 4 draws per chain, got {draws.shape[1]}; sample more")
    bulk = _rhat(_split(_rank_normalise(draws)))
    tail = _rhat(_split(_rank_normalise(np.abs(draws - np.median(draws)))))
    return max(bulk, tail)


def ess_bulk(draws: np.ndarray) -> float:
    """Bulk effective sample size of one quantity's draws (chains, draws): ESS of the split, rank-normalised chains."""
    from numpyro.diagnostics import effective_sample_size

    draws = np.asarray(draws, dtype=float)
    if draws.shape[1] < 4:
        raise ModelError(f"the effective sample size needs at least 4 draws per chain, got {draws.shape[1]}; sample more")
    if np.ptp(draws) == 0:
        return float(draws.size)
    return float(effective_sample_size(_split(_rank_normalise(draws))))


def at_max_depth(tree_depth: np.ndarray, max_tree_depth: int) -> float:
    """The share of draws whose NUTS trajectory stopped at the depth cap, not by a U-turn: where it
    is large, the chains explore a ridge slowly, and R-hat and ESS say how far that matters."""
    return float(np.mean(tree_depth >= max_tree_depth))


def _warnings(posterior_names: Sequence[str], rhats: Mapping[str, float], ess: Mapping[str, float], divergences: int,
              tree_depth: np.ndarray, max_tree_depth: int, chains: int) -> tuple[str, ...]:
    """The messages of everything the diagnostics find wrong, worst parameter named."""
    found = []
    worst = max(posterior_names, key=lambda name: rhats[name])
    if rhats[worst] > RHAT_LIMIT:
        found.append(
            f"R-hat of '{worst}' is {rhats[worst]:.3f} > {RHAT_LIMIT}: the chains disagree; run more samples, or check "
            "whether the starts lie in different modes"
        )
    if divergences:
        found.append(
            f"{divergences} divergent transitions after warm-up: the step size cannot follow the posterior's curvature; "
            "raise target_accept (e.g. 0.95) or give tighter bounds"
        )
    poorest = min(posterior_names, key=lambda name: ess[name])
    if ess[poorest] < MIN_ESS_PER_CHAIN * chains:
        found.append(
            f"bulk ESS of '{poorest}' is {ess[poorest]:.0f} < {MIN_ESS_PER_CHAIN * chains} ({MIN_ESS_PER_CHAIN} per chain): "
            "too few effective draws for reliable estimates; run more samples"
        )
    saturated = at_max_depth(tree_depth, max_tree_depth)
    if saturated > 0.01:
        found.append(
            f"{saturated:.0%} of the trajectories hit the maximum tree depth {max_tree_depth}: the sampler is slow "
            "here; raise max_tree_depth or check for a non-identifiable parameter"
        )
    return tuple(found)


# ---------------------------------------------------------------------------------------------
# Sampling

def _potential(objective: Objective, transform: Transform, log_prior: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """-log p(z): the negative log posterior density on the sampling space (+inf where a solve fails)."""
    import jax.numpy as jnp

    nll = objective.nll

    def potential(z: Any) -> Any:
        x = transform.to_x(z)
        value = nll(x) - log_prior(x) - transform.log_jacobian(z)
        return jnp.where(jnp.isfinite(value), value, jnp.inf)

    return potential


def _laplace(hessian: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Covariance H^{-1} of the Laplace approximation and a square root R (R R^T = H^{-1}).

    H is the Hessian of -log p(z) at a mode. Where it is not positive definite (a start that is
    not quite a minimum), the magnitudes of its eigenvalues still measure the posterior's scale
    in their directions, so they enter by absolute value, floored at 1e-8 of the largest. A
    Hessian that is not finite gives the identity.
    """
    n = hessian.shape[0]
    if not np.all(np.isfinite(hessian)):
        return np.eye(n), np.eye(n)
    curvature, vectors = _curvature(hessian)
    return (vectors / curvature) @ vectors.T, vectors / np.sqrt(curvature)


def _curvature(hessian: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues of a symmetric Hessian by magnitude, floored at 1e-8 of the largest, and its eigenvectors."""
    curvature, vectors = np.linalg.eigh(hessian)
    curvature = np.abs(curvature)
    return np.maximum(curvature, 1e-8 * max(float(np.max(curvature)), 1e-300)), vectors


def _modes(probe: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]], z: np.ndarray,
           feasible: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The mode of -log p(z) nearest each start, by damped Newton steps; with the value, gradient and Hessian there.

    ``probe(z)`` gives U, grad U and the Hessian at every row of z at once. Each start takes
    Newton steps d = -|H|^{-1} g (the Hessian's eigenvalues by magnitude, so that a saddle is
    left downhill), shortened to a trust radius in the infinity norm that doubles (up to
    :data:`NEWTON_MAX_RADIUS`) after a step that lowers U and shrinks fourfold after one that
    does not (or fails to solve). A start stops when the Newton decrement g^T |H|^{-1} g / 2 is
    below :data:`NEWTON_TOLERANCE`, so a start at its mode costs one probe set and a best fit one
    or two. ``feasible`` projects a point into the walls; a step is projected too, and the
    decrement is taken on the projected step -g^T d / 2, so a mode on a wall (the likelihood still
    rising beyond a bound) is found. A start where U is not finite keeps an infinite value.
    """
    z = np.array(z, dtype=float)
    values, gradients, hessians = probe(z)
    radius = np.full(len(z), NEWTON_RADIUS)
    for _ in range(NEWTON_ITERATIONS):
        steps = np.zeros_like(z)
        active = np.zeros(len(z), dtype=bool)
        for k in range(len(z)):
            if not (np.isfinite(values[k]) and np.all(np.isfinite(gradients[k])) and np.all(np.isfinite(hessians[k]))):
                continue
            curvature, vectors = _curvature(hessians[k])
            newton = feasible(z[k] - vectors @ ((vectors.T @ gradients[k]) / curvature)) - z[k]
            if -0.5 * gradients[k] @ newton < NEWTON_TOLERANCE or radius[k] < 1e-10:
                continue
            longest = float(np.max(np.abs(newton)))
            steps[k] = newton * min(1.0, radius[k] / longest)
            active[k] = True
        if not active.any():
            break
        trial_values, trial_gradients, trial_hessians = probe(z + steps)
        better = active & np.isfinite(trial_values) & (trial_values < values)
        z[better] += steps[better]
        values[better], gradients[better], hessians[better] = (
            trial_values[better], trial_gradients[better], trial_hessians[better])
        radius = np.where(better, np.minimum(2 * radius, NEWTON_MAX_RADIUS), np.where(active, radius / 4, radius))
    return z, values, gradients, hessians


def _validated_starts(objective: Objective, starts: Any) -> np.ndarray:
    n = objective.size
    try:
        array = np.asarray(starts, dtype=float)
    except (TypeError, ValueError):
        raise ModelError("starts must be numbers: one vector of estimated parameters (optimisation scale) per start") from None
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != n or array.shape[0] == 0:
        raise ModelError(
            f"starts have shape {np.shape(starts)} but the objective estimates {n} parameters "
            f"({', '.join(objective.names)}); give an array (starts, {n}) on the optimisation scale"
        )
    if not np.all(np.isfinite(array)):
        raise ModelError("a start has a non-finite value; give finite best-fit points")
    lower, upper = np.asarray(objective.lower, dtype=float), np.asarray(objective.upper, dtype=float)
    outside = np.argwhere((array < lower) | (array > upper))
    if outside.size:
        s, k = outside[0]
        raise ModelError(
            f"start {s} has {objective.names[k]} = {array[s, k]:.6g} outside its bounds [{lower[k]:.6g}, {upper[k]:.6g}] "
            "(optimisation scale); give starts within the bounds"
        )
    return array

# ---------------------------------------------------------------------------------------------
# NUTS as one flat loop: every iteration takes one leapfrog step in every chain
#
# The sampler is the multinomial NUTS of Betancourt (2017), "A Conceptual Introduction to
# Hamiltonian Monte Carlo", appendix A, in the iterative form of numpyro's ``build_tree``
# (checkpointed U-turn checks within subtrees, a biased transition between subtrees, the
# generalised no-U-turn criterion). Instead of a while loop per trajectory nested in a loop
# over draws, each chain carries its position in the trajectory as data, and one loop
# iteration advances every chain by exactly one leapfrog step: the potential and its gradient
# are evaluated at a single place in the program, on all chains at once. So the program
# compiles one ODE sensitivity solve, no chain waits for another's longer trajectory, and the
# Laplace probes and the first evaluation run through the same compiled call.


class _Tree(NamedTuple):
    """A (sub)trajectory: its two ends, its multinomial proposal, log weight and momentum sum."""

    z_left: Any
    r_left: Any
    g_left: Any
    z_right: Any
    r_right: Any
    g_right: Any
    z_proposal: Any
    pe_proposal: Any
    g_proposal: Any
    weight: Any
    r_sum: Any
    turning: Any
    diverging: Any
    sum_accept: Any
    proposals: Any


class _Chain(NamedTuple):
    """One chain's complete state between two leapfrog steps."""

    z: Any                 # current draw, its potential and gradient
    pe: Any
    g: Any
    tree: _Tree            # the trajectory so far
    sub: _Tree             # the subtree being built (``proposals`` = 0: not started)
    r_checkpoints: Any     # (depth, n) momenta and momentum sums for the U-turn checks
    r_sum_checkpoints: Any
    depth: Any             # doublings completed in this trajectory
    energy0: Any           # Hamiltonian at the trajectory's start
    going_right: Any       # direction of the current doubling
    step_size: Any
    log_step: Any          # dual averaging state (Hoffman & Gelman 2014, section 3.2)
    log_step_average: Any
    gradient_average: Any
    adapted: Any
    centre: Any
    draws: Any             # draws completed (warm-up included)
    stream: Any            # this chain's random stream (see _uniforms)
    inverse_mass: Any      # (n, n) M^{-1}
    mass_root: Any         # (n, n) S with S S^T = M
    laplace: Any           # (n, n) the Laplace covariance of the chain's mode, the metric's shrinkage target
    window_count: Any      # draws of the current metric window and their running mean and scatter (Welford)
    window_mean: Any
    window_scatter: Any


class _Record(NamedTuple):
    """Per chain and kept draw: x, log p(x | y) + const, leapfrog steps, divergence, tree depth, mean acceptance."""

    x: Any
    log_density: Any
    steps: Any
    diverging: Any
    depth: Any
    accept: Any


class _Carry(NamedTuple):
    """The compiled loop's whole state: iteration count, chains, kept draws, probe results, first points."""

    iteration: Any
    chains: _Chain
    record: _Record
    probe_pe: Any          # (rounds, chains) and (rounds, chains, n): -log p and gradient at the probes
    probe_g: Any
    candidates: Any        # (chains, n) first points, and the modes to fall back to
    fallback_z: Any
    fallback_pe: Any
    fallback_g: Any


#: Dual averaging constants of Stan: t0, kappa, gamma.
DUAL_T0, DUAL_KAPPA, DUAL_GAMMA = 10.0, 0.75, 0.05
#: A leapfrog step whose energy error exceeds this is a divergence (Stan's value).
MAX_ENERGY_ERROR = 1000.0


#: SplitMix64 constants (Steele, Lea & Flood 2014): the golden-ratio increment and the mixer.
_GOLDEN, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _stream(seed: int, chain: int) -> np.uint64:
    """The start of chain ``chain``'s random stream for ``seed``."""
    mixed = (int(seed) * _GOLDEN + 0x5851F42D4C957F2D) % 2**64
    return np.uint64((mixed + (chain + 1) * (2**40 + 1) * _GOLDEN) % 2**64)


def _uniforms(stream: Any, iteration: Any, count: int) -> Any:
    """``count`` uniforms in (0, 1) for one chain and iteration: SplitMix64 of a counter.

    A counter-based generator needs no state beyond the chain's stream and the iteration
    number, and compiles to a dozen integer operations (a threefry key split per draw would
    dominate the size of the sampler's program).
    """
    import jax.numpy as jnp

    index = jnp.asarray(iteration).astype(jnp.uint64) * np.uint64(256) + jnp.arange(count, dtype=jnp.uint64)
    counter = stream + index * np.uint64(_GOLDEN)
    z = (counter ^ (counter >> np.uint64(30))) * np.uint64(_MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
    z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(11)).astype(jnp.float64) + 0.5) * 2.0**-53


def _normals(u: Any) -> Any:
    """Standard normal draws from pairs of uniforms (Box-Muller), (2k,) -> (2k,)."""
    import jax.numpy as jnp

    first, second = u[0::2], u[1::2]
    radius = jnp.sqrt(-2.0 * jnp.log(first))
    return jnp.concatenate([radius * jnp.cos(2 * math.pi * second), radius * jnp.sin(2 * math.pi * second)])


def metric_windows(warmup: int) -> tuple[int, ...]:
    """The warm-up draws at which the mass matrix is re-estimated: the ends of Stan's windows.

    The first window starts after a buffer; the mass matrix is set from the draws since the
    previous end (or the first window's start) when the draw numbered ``end`` begins. Stan's
    schedule (Stan Reference Manual, "HMC algorithm parameters"): buffers of 75 and 50 draws and
    windows of 25, 50, 100, ... draws, the last one stretched to the final buffer; warm-ups
    shorter than 150 draws split 15 % / 75 % / 10 % with one window.
    """
    first, last = METRIC_BUFFERS
    if warmup < MIN_METRIC_WARMUP:
        return ()
    if warmup < first + last + METRIC_WINDOW:
        return (int(0.15 * warmup), warmup - int(0.1 * warmup))
    ends, start, size = [first], first, METRIC_WINDOW
    while True:
        end = start + size
        if end + 2 * size > warmup - last:
            ends.append(warmup - last)
            return tuple(ends)
        ends.append(end)
        start, size = end, 2 * size


def _is_turning(inverse_mass: Any, r_left: Any, r_right: Any, r_sum: Any) -> Any:
    """The generalised no-U-turn criterion (Betancourt 2017, A.4.2) between two ends of a trajectory."""
    import jax.numpy as jnp

    rho = r_sum - 0.5 * (r_left + r_right)
    return (jnp.dot(inverse_mass @ r_left, rho) <= 0) | (jnp.dot(inverse_mass @ r_right, rho) <= 0)


def _sampler(value_and_gradient: Callable[[Any], Any], transform: Transform, n: int, warmup: int, samples: int,
             target_accept: float, max_depth: int, rounds: int) -> Callable[..., Any]:
    """The loop ``advance(carry, probes, stop) -> carry`` (runs until ``stop`` iterations or all draws are done).

    Iterations 0 .. rounds-1 evaluate the Laplace probes, iteration ``rounds`` the chains' first
    points; from then on every iteration is one leapfrog step of every chain.
    """
    import jax
    import jax.numpy as jnp

    total = warmup + samples
    depth_index = jnp.arange(max_depth)
    pairs = -(-n // 2)
    windows = metric_windows(warmup)
    window_start, window_stop = (windows[0], windows[-1]) if windows else (0, 0)
    window_ends = jnp.asarray(windows[1:] or (-1,))

    def select(condition: Any, a: Any, b: Any) -> Any:
        return jax.tree_util.tree_map(lambda x, y: jnp.where(condition, x, y), a, b)

    def begin(chain: _Chain, z: Any, pe: Any, g: Any, u: Any) -> _Chain:
        """Start a trajectory from (z, pe, g) with a fresh momentum r ~ N(0, M), from uniforms u (2 pairs + 1)."""
        r = chain.mass_root @ _normals(u[: 2 * pairs])[:n]
        energy0 = pe + 0.5 * r @ (chain.inverse_mass @ r)
        tree = _Tree(z, r, g, z, r, g, z, pe, g, jnp.zeros(()), r, jnp.array(False), jnp.array(False),
                     jnp.zeros(()), jnp.array(0))
        return chain._replace(z=z, pe=pe, g=g, tree=tree, sub=tree, depth=jnp.array(0), energy0=energy0,
                              going_right=u[2 * pairs] < 0.5)

    def leapfrog_start(chain: _Chain) -> tuple[Any, Any]:
        """The position of the next leaf: half a momentum step and a full position step from the frontier."""
        tree, sub = chain.tree, chain.sub
        started = sub.proposals > 0
        right = (jnp.where(started, sub.z_right, tree.z_right), jnp.where(started, sub.r_right, tree.r_right),
                 jnp.where(started, sub.g_right, tree.g_right))
        left = (jnp.where(started, sub.z_left, tree.z_left), jnp.where(started, sub.r_left, tree.r_left),
                jnp.where(started, sub.g_left, tree.g_left))
        z, r, g = select(chain.going_right, right, left)
        epsilon = jnp.where(chain.going_right, chain.step_size, -chain.step_size)
        r_half = r - 0.5 * epsilon * g
        return transform.move(z, r_half, epsilon, chain.inverse_mass)

    def step(chain: _Chain, iteration: Any, z_new: Any, r_half: Any, pe_new: Any, g_new: Any) -> tuple[_Chain, Any, Any, _Record]:
        """Finish the leapfrog step, add the leaf to the subtree, and close subtree and trajectory when due.

        Returns the chain, whether a kept draw was completed, its slot and the draw, and whether
        the chain's metric window closed (:func:`new_metric` then sets its mass matrix).
        """
        u = _uniforms(chain.stream, iteration, 2 * pairs + 4)
        epsilon = jnp.where(chain.going_right, chain.step_size, -chain.step_size)
        r_new = r_half - 0.5 * epsilon * g_new
        energy = pe_new + 0.5 * r_new @ (chain.inverse_mass @ r_new)
        delta = energy - chain.energy0
        delta = jnp.where(jnp.isnan(delta), jnp.inf, delta)
        diverging = delta > MAX_ENERGY_ERROR
        accept = jnp.minimum(1.0, jnp.exp(-delta))

        # The leaf joins the subtree; within a subtree the proposal is drawn in proportion to weight.
        sub = chain.sub
        index = sub.proposals
        empty = index == 0
        take_leaf = empty | (u[0] < jax.nn.sigmoid(-delta - sub.weight))
        leaf = (z_new, r_new, g_new)
        left = select(chain.going_right & ~empty, (sub.z_left, sub.r_left, sub.g_left), leaf)
        right = select(~chain.going_right & ~empty, (sub.z_right, sub.r_right, sub.g_right), leaf)
        proposal = select(take_leaf, (z_new, pe_new, g_new), (sub.z_proposal, sub.pe_proposal, sub.g_proposal))
        r_sum = jnp.where(empty, r_new, sub.r_sum + r_new)
        # Checkpoints: an even leaf stores its momentum; an odd leaf closes the sub-subtrees that
        # end with it, each checked for a U-turn against its first leaf's checkpoint.
        checkpoint_max = jnp.bitwise_count(index >> 1).astype(int)
        closed = jnp.bitwise_count((~index & (index + 1)) - 1).astype(int)
        checkpoint_min = checkpoint_max - closed + 1
        even = index % 2 == 0
        r_checkpoints = jnp.where(even, chain.r_checkpoints.at[checkpoint_max].set(r_new), chain.r_checkpoints)
        r_sum_checkpoints = jnp.where(even, chain.r_sum_checkpoints.at[checkpoint_max].set(r_sum), chain.r_sum_checkpoints)
        inner_sums = r_sum[None, :] - r_sum_checkpoints + r_checkpoints
        turns = jax.vmap(lambda r_first, inner: _is_turning(chain.inverse_mass, r_first, r_new, inner))(r_checkpoints, inner_sums)
        turning = jnp.any(turns & (depth_index >= checkpoint_min) & (depth_index <= checkpoint_max))
        sub = _Tree(*left, *right, *proposal, jnp.where(empty, -delta, jnp.logaddexp(sub.weight, -delta)), r_sum, turning,
                    diverging, jnp.where(empty, accept, sub.sum_accept + accept), index + 1)
        sub_done = (sub.proposals >= 2**chain.depth) | turning | diverging

        # A finished subtree joins the trajectory; the proposal moves to it with probability
        # min(1, w_sub / w_tree) unless it turned or diverged (the biased transition).
        tree = chain.tree
        ends = select(chain.going_right, (tree.z_left, tree.r_left, tree.g_left, sub.z_right, sub.r_right, sub.g_right),
                      (sub.z_left, sub.r_left, sub.g_left, tree.z_right, tree.r_right, tree.g_right))
        total_sum = tree.r_sum + sub.r_sum
        move = jnp.where(turning | diverging, 0.0, jnp.minimum(1.0, jnp.exp(sub.weight - tree.weight)))
        merged_proposal = select(u[1] < move, (sub.z_proposal, sub.pe_proposal, sub.g_proposal),
                                 (tree.z_proposal, tree.pe_proposal, tree.g_proposal))
        merged_turning = turning | _is_turning(chain.inverse_mass, ends[1], ends[4], total_sum)
        merged = _Tree(*ends, *merged_proposal, jnp.logaddexp(tree.weight, sub.weight), total_sum, merged_turning,
                       diverging, tree.sum_accept + sub.sum_accept, tree.proposals + sub.proposals)
        depth = jnp.where(sub_done, chain.depth + 1, chain.depth)
        tree = select(sub_done, merged, tree)
        finished = sub_done & ((depth >= max_depth) | merged_turning | diverging)

        # A finished trajectory gives a draw: record it, adapt the step size during warm-up.
        mean_accept = tree.sum_accept / jnp.maximum(tree.proposals, 1)
        kept = finished & (chain.draws >= warmup) & (chain.draws < total)
        entry = _Record(transform.to_x(tree.z_proposal), -tree.pe_proposal - transform.log_jacobian(tree.z_proposal),
                        tree.proposals, tree.diverging, depth, mean_accept)
        adapting = finished & (chain.draws < warmup)
        t = chain.adapted + 1.0
        gradient_average = (1 - 1 / (t + DUAL_T0)) * chain.gradient_average + (target_accept - mean_accept) / (t + DUAL_T0)
        log_step = chain.centre - jnp.sqrt(t) / DUAL_GAMMA * gradient_average
        weight = t**-DUAL_KAPPA
        log_step_average = (1 - weight) * chain.log_step_average + weight * log_step
        last_warmup = chain.draws == warmup - 1
        new_step = jnp.clip(jnp.exp(jnp.where(last_warmup, log_step_average, log_step)), 1e-10, 1e3)
        # The warm-up draw joins its metric window (Welford's running mean and scatter).
        collecting = adapting & (chain.draws >= window_start) & (chain.draws < window_stop)
        count = chain.window_count + 1.0
        deviation = tree.z_proposal - chain.window_mean
        mean = chain.window_mean + deviation / count
        scatter = chain.window_scatter + jnp.outer(deviation, tree.z_proposal - mean)
        count, mean, scatter = select(collecting, (count, mean, scatter),
                                      (chain.window_count, chain.window_mean, chain.window_scatter))
        closing = adapting & jnp.any(chain.draws + 1 == window_ends)
        chain = chain._replace(
            tree=tree, sub=sub._replace(proposals=jnp.where(sub_done, 0, sub.proposals)), r_checkpoints=r_checkpoints,
            r_sum_checkpoints=r_sum_checkpoints, depth=depth,
            going_right=jnp.where(sub_done, u[2] < 0.5, chain.going_right),
            step_size=jnp.where(adapting, new_step, chain.step_size),
            log_step=jnp.where(adapting, log_step, chain.log_step),
            log_step_average=jnp.where(adapting, log_step_average, chain.log_step_average),
            gradient_average=jnp.where(adapting, gradient_average, chain.gradient_average),
            adapted=jnp.where(adapting, t, chain.adapted),
            window_count=count, window_mean=mean, window_scatter=scatter,
            draws=jnp.where(finished, chain.draws + 1, chain.draws),
        )
        restarted = begin(chain, tree.z_proposal, tree.pe_proposal, tree.g_proposal, u[3:])
        slot = jnp.clip(chain.draws - 1 - warmup, 0, samples - 1)
        return select(finished, restarted, chain), kept, slot, entry, closing

    def new_metric(chain: _Chain, closing: Any, iteration: Any) -> _Chain:
        """At the end of a metric window: M^{-1} from the window's draws, shrunk towards the
        Laplace covariance, dual averaging restarted, and the new trajectory's momentum drawn
        again from the new M (with the same uniforms as in ``step``)."""
        covariance = (chain.window_scatter + n * chain.laplace) / (chain.window_count + n)
        root = jnp.linalg.cholesky(0.5 * (covariance + covariance.T))
        usable = closing & jnp.all(jnp.isfinite(root))
        mass_root = jax.scipy.linalg.solve_triangular(root, jnp.eye(n), lower=True).T
        emptied = chain._replace(window_count=jnp.where(closing, 0.0, chain.window_count),
                                 window_mean=jnp.where(closing, 0.0, chain.window_mean),
                                 window_scatter=jnp.where(closing, 0.0, chain.window_scatter))
        adapted = emptied._replace(inverse_mass=covariance, mass_root=mass_root, centre=jnp.log(10 * chain.step_size),
                                   log_step_average=jnp.zeros(()), gradient_average=jnp.zeros(()), adapted=jnp.zeros(()))
        u = _uniforms(chain.stream, iteration, 2 * pairs + 4)
        return select(usable, begin(adapted, chain.z, chain.pe, chain.g, u[3:]), emptied)

    def first(chain: _Chain, iteration: Any, z: Any, pe: Any, g: Any, fallback_z: Any, fallback_pe: Any,
              fallback_g: Any) -> _Chain:
        """The chain's first point: the Laplace draw if the model solves there, else the mode."""
        usable = jnp.isfinite(pe) & jnp.all(jnp.isfinite(g))
        z, pe, g = select(usable, (z, pe, g), (fallback_z, fallback_pe, fallback_g))
        return begin(chain, z, pe, g, _uniforms(chain.stream, iteration, 2 * pairs + 1))

    batched_gradient = jax.vmap(value_and_gradient)

    def body(carry: _Carry, probes: Any) -> _Carry:
        i = carry.iteration
        z_nuts, r_half = jax.vmap(leapfrog_start)(carry.chains)
        points = jnp.where(i < rounds, probes[jnp.minimum(i, rounds - 1)], jnp.where(i == rounds, carry.candidates, z_nuts))
        pe, g = batched_gradient(points)
        probing = i < rounds
        row = jnp.minimum(i, rounds - 1)
        probe_pe = jnp.where(probing, carry.probe_pe.at[row].set(pe), carry.probe_pe)
        probe_g = jnp.where(probing, carry.probe_g.at[row].set(g), carry.probe_g)
        nothing = (jnp.zeros(pe.shape, dtype=bool), jnp.zeros(pe.shape, dtype=int),
                   jax.tree_util.tree_map(lambda buffer: buffer[:, 0], carry.record), jnp.zeros(pe.shape, dtype=bool))

        def nuts(chains: _Chain) -> Any:
            chains, kept, slot, entry, closing = jax.vmap(step, in_axes=(0, None, 0, 0, 0, 0))(chains, i, z_nuts, r_half, pe, g)
            return chains, (kept, slot, entry, closing)

        def initial(chains: _Chain) -> Any:
            started = jax.vmap(first, in_axes=(0, None, 0, 0, 0, 0, 0, 0))(
                chains, i, carry.candidates, pe, g, carry.fallback_z, carry.fallback_pe, carry.fallback_g)
            return started, nothing

        chains, (kept, slot, entry, closing) = jax.lax.cond(
            i > rounds, nuts, lambda c: jax.lax.cond(i == rounds, initial, lambda c2: (c2, nothing), c), carry.chains,
        )
        # A window closes a few times per warm-up: the factorisations run only in those iterations.
        chains = jax.lax.cond(jnp.any(closing), lambda c: jax.vmap(new_metric, in_axes=(0, 0, None))(c, closing, i),
                              lambda c: c, chains)
        lanes = jnp.arange(pe.shape[0])
        record = jax.tree_util.tree_map(
            lambda buffer, value: buffer.at[lanes, slot].set(
                jnp.where(kept.reshape((-1,) + (1,) * (value.ndim - 1)), value, buffer[lanes, slot])),
            carry.record, entry,
        )
        return carry._replace(iteration=i + 1, chains=chains, record=record, probe_pe=probe_pe, probe_g=probe_g)

    def advance(carry: _Carry, probes: Any, stop: Any) -> _Carry:
        def running(carry: _Carry) -> Any:
            finished = (carry.iteration > rounds) & jnp.all(carry.chains.draws >= total)
            return (carry.iteration < stop) & ~finished

        return jax.lax.while_loop(running, lambda carry: body(carry, probes), carry)

    return advance


def infer(
    objective: Objective,
    starts: Sequence[float] | Sequence[Sequence[float]] | np.ndarray,
    *,
    chains: int = 4,
    warmup: int = 200,
    samples: int = 1000,
    seed: int = 0,
    target_accept: float = 0.8,
    max_tree_depth: int = DEFAULT_MAX_TREE_DEPTH,
    progress: Progress | None = None,
) -> Posterior:
    """Sample the posterior of ``objective``'s parameters by NUTS, ``chains`` chains started from best fits.

    ``starts`` (S, n) are points on the optimisation scale (a single point may be given as a
    vector): best fits, e.g. from :func:`biotwin.fit.multistart`, or any points where the model
    can be solved, such as draws from the prior. Each is first moved to the nearest mode of the
    posterior by damped Newton steps (a best fit is at or next to one, and costs a single
    or two evaluations of the Laplace probes); the modes are ranked by density, those more than
    :data:`MODE_GAP` below the best are dropped, and chain c belongs to the c-th best of the
    rest, cyclically. Its mass matrix is the Laplace covariance at that mode and its first point
    a draw from the Laplace approximation (or the mode itself where the model cannot be solved
    at the draw). Starts in separate modes of similar density give chains that stay apart, which
    R-hat then reports. ``warmup`` draws per chain tune the step size by dual averaging towards the mean
    acceptance ``target_accept`` and re-estimate the mass matrix in Stan's windows
    (:func:`metric_windows`); ``samples`` draws per chain are kept. ``progress``, when given,
    is called as ``progress(done, total, label)`` (see :mod:`biotwin.progress`) with the draws per chain completed by the slowest
    chain; the label gives the leapfrog steps per draw and the step size since the last report.
    The same ``seed`` and inputs give the same draws.

    Raises :class:`ModelError` for starts of the wrong shape or outside the bounds, when the
    objective is not finite at any start, and for settings out of range.
    """
    from biotwin import _jax  # noqa: F401

    began = time.perf_counter()
    if chains < 1 or warmup < 0 or samples < 4:
        raise ModelError(f"need chains >= 1, warmup >= 0 and samples >= 4; got {chains}, {warmup} and {samples}")
    if not 0.0 < target_accept < 1.0:
        raise ModelError(f"target_accept must lie in (0, 1), got {target_accept}")
    if not 1 <= max_tree_depth <= 15:
        raise ModelError(f"max_tree_depth must lie in 1..15, got {max_tree_depth}")
    points = _validated_starts(objective, starts)
    n, n_starts = objective.size, len(points)
    # Log-scale parameters within two bounds are sampled on their own scale between walls: their
    # posteriors are close to normal there, and a ridge that reaches a bound stays straight.
    transform = Transform.for_bounds(objective.lower, objective.upper,
                                     walls=np.isin(np.asarray(objective.scales), ("log", "log10")))
    log_prior = objective.log_prior if objective.log_prior is not None else default_log_prior(objective)
    potential = _potential(objective, transform, log_prior)
    z_starts = transform.to_z(transform.inside(points))

    # Each probe set is every start and every start moved by +h and -h along every axis,
    # padded to whole rounds of one point per chain.
    offsets = np.concatenate([np.zeros((1, n)), HESSIAN_STEP * np.eye(n), -HESSIAN_STEP * np.eye(n)])
    rounds = -(-n_starts * (2 * n + 1) // chains)
    carry = _initial_carry(n, chains, samples, max_tree_depth, rounds, seed)

    def probe_points(z: np.ndarray) -> np.ndarray:
        flat = (z[:, None, :] + offsets[None]).reshape(-1, n)
        return np.concatenate([flat, np.repeat(flat[-1:], rounds * chains - len(flat), axis=0)]).reshape(rounds, chains, n)

    compile_began = time.perf_counter()
    settings = (chains, warmup, samples, target_accept, max_tree_depth, rounds)
    cache = _COMPILED.setdefault(objective, {})
    if settings not in cache:
        try:
            cache[settings] = (_compile(potential, transform, True, n, warmup, samples, target_accept, max_tree_depth,
                                        rounds, carry, probe_points(z_starts)), True)
        except TypeError:
            # An ODE adjoint that supports only reverse mode (a custom VJP) cannot carry tangents.
            cache[settings] = (_compile(potential, transform, False, n, warmup, samples, target_accept, max_tree_depth,
                                        rounds, carry, probe_points(z_starts)), False)
    compiled, forward = cache[settings]
    compile_time = time.perf_counter() - compile_began

    def probe(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-log p, its gradient and Hessian at every row of z, by one run of the compiled probe phase."""
        nonlocal carry
        carry = compiled(carry._replace(iteration=np.int64(0)), probe_points(z), np.int64(rounds))
        size = n_starts * (2 * n + 1)
        values = np.array(carry.probe_pe).reshape(-1)[:size].reshape(n_starts, 2 * n + 1)
        gradients = np.array(carry.probe_g).reshape(-1, n)[:size].reshape(n_starts, 2 * n + 1, n)
        hessians = (gradients[:, 1 : n + 1] - gradients[:, n + 1 :]) / (2 * HESSIAN_STEP)
        return values[:, 0].copy(), gradients[:, 0].copy(), 0.5 * (hessians + np.swapaxes(hessians, 1, 2))

    refine_began = time.perf_counter()
    z_modes, values, gradients, hessians = _modes(probe, z_starts, transform.within_walls)
    usable = np.flatnonzero(np.isfinite(values))
    if usable.size == 0:
        raise ModelError(
            f"the objective is not finite at any of the {n_starts} starts (the solve fails there); give best-fit points "
            "where the model can be simulated"
        )
    # The best modes first; a mode far below the best carries no posterior mass worth a chain.
    order = usable[np.argsort(values[usable], kind="stable")]
    used = order[values[order] <= values[order[0]] + MODE_GAP][:chains]
    refine_time = time.perf_counter() - refine_began
    covariances, roots = zip(*(_laplace(hessians[k]) for k in used))
    owner = np.arange(chains) % len(used)
    covariance = np.asarray(covariances)[owner]
    root = np.asarray(roots)[owner]
    centres = z_modes[used][owner]
    # M = H, so a momentum r ~ N(0, M) is H^{1/2} e; H^{1/2} = (R^T)^{-1} for R R^T = H^{-1}.
    mass_root = np.linalg.inv(np.swapaxes(root, 1, 2))
    draws = np.random.default_rng(seed).standard_normal((chains, n))
    candidates = transform.within_walls(centres + np.einsum("cij,cj->ci", root, draws))
    step0 = min(1.0, n**-0.25)
    carry = carry._replace(
        chains=carry.chains._replace(
            inverse_mass=covariance, mass_root=mass_root, laplace=covariance, step_size=np.full(chains, step0),
            log_step=np.full(chains, math.log(step0)), centre=np.full(chains, math.log(10 * step0)),
        ),
        candidates=candidates, fallback_z=centres, fallback_pe=values[used][owner], fallback_g=gradients[used][owner],
    )
    probes = probe_points(z_starts)
    total = warmup + samples
    sampling_began = time.perf_counter()
    largest = np.iinfo(np.int64).max
    chunk = largest if progress is None else PROGRESS_ITERATIONS
    iteration = rounds
    finished_draws = 0
    while True:
        iteration = min(iteration + chunk, largest)
        carry = compiled(carry, probes, np.int64(iteration))
        draws_by_chain = np.asarray(carry.chains.draws)
        done = int(np.min(draws_by_chain))
        if progress is not None:
            # Leapfrog steps per draw show a sampler at its maximum tree depth (2^depth - 1) while it runs.
            new_draws = int(np.sum(np.minimum(draws_by_chain, total))) - finished_draws
            finished_draws += new_draws
            steps = chunk * chains / max(new_draws, 1)
            progress(min(done, total), total, f"draw {min(done, total)} of {total}, {steps:.0f} steps per draw, "
                     f"step size {float(np.median(np.asarray(carry.chains.step_size))):.2g}")
        if done >= total:
            break
    record = _Record(*(np.asarray(part) for part in carry.record))
    sampling_time = time.perf_counter() - sampling_began
    x = record.x
    samples_linear = _linear(x, objective.names, objective.scales)
    rhats = MappingProxyType({name: rhat(values) for name, values in samples_linear.items()})
    ess = MappingProxyType({name: ess_bulk(values) for name, values in samples_linear.items()})
    divergences = int(np.sum(record.diverging))
    found = _warnings(objective.names, rhats, ess, divergences, record.depth, max_tree_depth, chains)
    for message in found:
        warnings.warn(message, ConvergenceWarning, stacklevel=2)
    return Posterior(
        names=objective.names, scales=objective.scales, x=x, log_density=record.log_density, rhat=rhats,
        ess_bulk=ess, divergences=divergences, step_size=np.asarray(carry.chains.step_size),
        tree_depth=record.depth.astype(int), accept=record.accept, gradient_evaluations=int(np.sum(record.steps)),
        iterations=int(carry.iteration), sampling_time=sampling_time,
        modes=np.asarray(transform.to_x(z_modes[used])), mode_time=refine_time,
        max_tree_depth=max_tree_depth, warmup=warmup, wall_time=time.perf_counter() - began,
        compile_time=compile_time, gradient="forward" if forward else "reverse", warnings=found,
    )


def _compile(potential: Callable[[Any], Any], transform: Transform, forward: bool, n: int, warmup: int, samples: int,
             target_accept: float, max_depth: int, rounds: int, carry: _Carry, probes: np.ndarray) -> Any:
    """The sampler's loop, lowered and compiled for the shapes of ``carry`` (which it may overwrite)."""
    import jax

    advance = _sampler(_value_and_gradient(potential, forward), transform, n, warmup, samples, target_accept,
                       max_depth, rounds)
    return jax.jit(advance, donate_argnums=0).lower(carry, probes, np.int64(0)).compile()


def _value_and_gradient(potential: Callable[[Any], Any], forward: bool) -> Callable[[Any], Any]:
    """(U(z), grad U(z)) in forward mode (one pass carrying n tangents) or reverse mode."""
    import jax

    if not forward:
        return jax.value_and_grad(potential)

    def twice(z: Any) -> tuple[Any, Any]:
        value = potential(z)
        return value, value

    def value_and_gradient(z: Any) -> Any:
        gradient, value = jax.jacfwd(twice, has_aux=True)(z)
        return value, gradient

    return value_and_gradient


def _initial_carry(n: int, chains: int, samples: int, max_depth: int, rounds: int, seed: int) -> _Carry:
    """The loop's state before the probes (NumPy): placeholders, overwritten before they are used."""

    def zeros(*shape: int, dtype: Any = float) -> np.ndarray:
        return np.zeros((chains, *shape), dtype=dtype)

    def tree() -> _Tree:
        return _Tree(zeros(n), zeros(n), zeros(n), zeros(n), zeros(n), zeros(n), zeros(n), zeros(), zeros(n), zeros(),
                     zeros(n), zeros(dtype=bool), zeros(dtype=bool), zeros(), zeros(dtype=np.int64))

    identity = np.repeat(np.eye(n)[None], chains, axis=0)
    chain = _Chain(
        z=zeros(n), pe=zeros(), g=zeros(n), tree=tree(), sub=tree(), r_checkpoints=zeros(max_depth, n),
        r_sum_checkpoints=zeros(max_depth, n), depth=zeros(dtype=np.int64), energy0=zeros(), going_right=zeros(dtype=bool),
        step_size=zeros(), log_step=zeros(), log_step_average=zeros(), gradient_average=zeros(), adapted=zeros(),
        centre=zeros(), draws=zeros(dtype=np.int64), stream=np.array([_stream(seed, c) for c in range(chains)], dtype=np.uint64),
        inverse_mass=identity, mass_root=identity.copy(), laplace=identity.copy(), window_count=zeros(),
        window_mean=zeros(n), window_scatter=zeros(n, n),
    )
    record = _Record(zeros(samples, n), zeros(samples), zeros(samples, dtype=np.int64), zeros(samples, dtype=bool),
                     zeros(samples, dtype=np.int64), zeros(samples))
    return _Carry(
        iteration=np.int64(0), chains=chain, record=record, probe_pe=np.zeros((rounds, chains)),
        probe_g=np.zeros((rounds, chains, n)), candidates=zeros(n), fallback_z=zeros(n), fallback_pe=zeros(), fallback_g=zeros(n),
    )

"""The objective of calibration: a negative log-likelihood over the estimated parameters.

Every calibration problem, whatever produced it (a PEtab problem, a CSV dataset with a noise
model), becomes one :class:`Objective`. Its argument ``x`` is the vector of *estimated* parameters,
each on its optimisation scale: for a parameter p declared on scale ``lin``, ``log`` or ``log10``,

    x = p,        x = ln p,        x = log10 p.

The objective is the negative log-likelihood of the measurements y_i given the model's
predictions h_i(x) and the noise scales sigma_i(x), written as PEtab writes it, constants
included, so that its value compares with every PEtab tool (for normal noise on the linear scale)

    J(x) = sum_i [ 1/2 log(2 pi sigma_i^2) + 1/2 ((y_i - h_i) / sigma_i)^2 ].

``nll``, ``residuals`` and ``predict`` are pure JAX functions of ``x``: they can be jitted,
differentiated and vmapped. Fitting (:mod:`biotwin.fit`), profiling (:mod:`biotwin.identify`) and
sampling (:mod:`biotwin.infer`) only ever see an :class:`Objective`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

import numpy as np

from biotwin.errors import ModelError

#: The scales a parameter may be estimated on.
SCALES = ("lin", "log", "log10")


def to_scale(value: float | np.ndarray, scale: str) -> Any:
    """A parameter value on its optimisation scale (``lin``, ``log`` or ``log10``)."""
    if scale == "lin":
        return value
    if scale == "log":
        return np.log(value)
    if scale == "log10":
        return np.log10(value)
    raise ModelError(f"unknown parameter scale '{scale}'; use lin, log or log10")


def from_scale(x: Any, scale: str) -> Any:
    """A parameter value from its optimisation scale; works on NumPy and JAX arrays alike."""
    if scale == "lin":
        return x
    if scale == "log":
        return 2.718281828459045**x
    if scale == "log10":
        return 10.0**x
    raise ModelError(f"unknown parameter scale '{scale}'; use lin, log or log10")


#: Transformations a measurement may be compared under (PEtab's ``observableTransformation``).
TRANSFORMS = ("lin", "log", "log10")


@dataclass(frozen=True)
class Measurements:
    """The measurements an objective explains, one entry per measured value, in a fixed order.

    ``predict(x)`` of the objective returns the simulated values in this order; ``sigma(x)`` the
    noise scale of each. ``experiment`` and ``observable`` name where each value belongs. Each
    value's noise model is ``transform`` (codes into :data:`TRANSFORMS`: T(y) = y, ln y or
    log10 y) and ``laplace`` (Laplace rather than normal noise on the transformed scale):

        T(y) = T(h) + sigma e,        e ~ N(0, 1) or Laplace(0, 1).

    Both default to linear, normal noise.
    """

    experiment: tuple[str, ...]
    observable: tuple[str, ...]
    time: np.ndarray
    value: np.ndarray
    transform: np.ndarray | None = None
    laplace: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.value)
        transform = np.zeros(n, dtype=int) if self.transform is None else np.asarray(self.transform, dtype=int)
        laplace = np.zeros(n, dtype=bool) if self.laplace is None else np.asarray(self.laplace, dtype=bool)
        if transform.shape != (n,) or laplace.shape != (n,):
            raise ModelError(f"measurements need one transform and one distribution per value ({n})")
        if np.any((transform < 0) | (transform >= len(TRANSFORMS))):
            raise ModelError(f"unknown measurement transform code; use {', '.join(f'{k} ({t})' for k, t in enumerate(TRANSFORMS))}")
        object.__setattr__(self, "transform", transform)
        object.__setattr__(self, "laplace", laplace)

    def __len__(self) -> int:
        return int(self.value.size)

    def replicate(self, h: np.ndarray, sigma: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Replicated measurements (..., M) around predictions ``h`` with noise scales ``sigma``, each
        under its own noise model: T^-1(T(h) + sigma e)."""
        e = np.where(self.laplace, rng.laplace(size=np.shape(h)), rng.standard_normal(np.shape(h)))
        # np.where evaluates every branch: the log-scale ones overflow on the linear-scale rows.
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            log_h = np.log(np.where(h > 0, h, np.nan))
            return np.where(self.transform == 0, h + sigma * e,
                            np.where(self.transform == 1, np.exp(log_h + sigma * e), 10.0 ** (log_h / np.log(10.0) + sigma * e)))


@dataclass(frozen=True, eq=False)
class Objective:
    """A negative log-likelihood J(x) over the estimated parameters x on their scales.

    ``names``, ``scales``, ``lower``, ``upper`` and ``nominal`` describe the estimated parameters
    (bounds and nominal values on the optimisation scale). ``nll(x)`` is J; ``least_squares(x)``,
    when given, is ``(r, J)`` from one solve, with r a vector such that J(x) = 1/2 |r|^2 + constant
    (for Gauss-Newton least squares, which needs both and should not solve twice for them);
    ``residuals(x)`` is its r alone;
    ``predict(x)`` and ``sigma(x)`` give the simulated value and noise scale of every measurement
    in ``measurements``; ``log_prior(x)``, when given, is the log prior density on the
    optimisation scale (from the problem's parameter table). ``fixed`` holds the values of the
    model parameters that are not estimated.
    """

    names: tuple[str, ...]
    scales: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    nominal: np.ndarray
    nll: Callable[[Any], Any]
    measurements: Measurements
    predict: Callable[[Any], Any]
    sigma: Callable[[Any], Any]
    least_squares: Callable[[Any], tuple[Any, Any]] | None = None
    log_prior: Callable[[Any], Any] | None = None
    fixed: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        n = len(self.names)
        if len(self.scales) != n or any(np.shape(a) != (n,) for a in (self.lower, self.upper, self.nominal)):
            raise ModelError("an objective needs one scale, bound pair and nominal value per estimated parameter")
        for name, scale in zip(self.names, self.scales):
            if scale not in SCALES:
                raise ModelError(f"parameter '{name}' has unknown scale '{scale}'; use lin, log or log10")

    @cached_property
    def residuals(self) -> Callable[[Any], Any] | None:
        """r(x) alone (None without a least-squares form, as under Laplace noise)."""
        if self.least_squares is None:
            return None
        import jax

        least_squares = self.least_squares
        return jax.jit(lambda x: least_squares(x)[0])

    @property
    def size(self) -> int:
        return len(self.names)

    def values(self, x: Sequence[float] | np.ndarray) -> dict[str, float]:
        """The estimated parameters' values on the linear scale, by name."""
        return {name: float(from_scale(float(v), scale)) for name, v, scale in zip(self.names, np.asarray(x), self.scales)}

    def point(self, values: Mapping[str, float]) -> np.ndarray:
        """The vector x on the optimisation scale from linear-scale values (others at nominal)."""
        unknown = [k for k in values if k not in self.names]
        if unknown:
            from biotwin.model import Model

            raise ModelError(Model.unknown_message("estimated parameter", unknown[0], self.names))
        x = np.array(self.nominal, dtype=float)
        for k, name in enumerate(self.names):
            if name in values:
                x[k] = to_scale(float(values[name]), self.scales[k])
        return x

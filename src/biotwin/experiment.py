"""Virtual experiments: a :class:`Scenario` run on a twin over its posterior draws, as a :class:`Forecast`.

A scenario says what is done to the system and for how long: the initial state, parameter
changes, knock-outs (a parameter set to 0, e.g. a synthesis rate of a deleted gene), clamped
states (held at a value: dx/dt = 0, as a buffered metabolite or a constant drug level), bolus
doses (once, or every T from t0), constant-rate infusions, and changed input signals. Its
forecast solves the model once per parameter draw, all draws in one batched, compiled solve,
and summarises every state and observable by the median and the central 50% and 90% bands
over the draws. Draws whose solve fails (a blow-up, a stalled solver) are counted and named in
:attr:`Forecast.failed`, never silently dropped from the count.

:func:`compare` sets two forecasts side by side over the *same* draws: the change of a quantity
at a time, per draw, relative to a baseline scenario, so that the uncertainty of the effect
(not of each level) is what the interval shows, e.g. "tumour at t=30: -42% [-55%, -28%] vs.
control".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from biotwin.data import Bolus, Input
from biotwin.errors import DataError, ModelError
from biotwin.model import Model

#: Output times of a scenario that names none: this many, evenly spaced from start to horizon.
DEFAULT_OUTPUTS = 201
#: The quantiles a forecast reports: the median and the central 50% and 90% bands.
QUANTILES = {"q05": 0.05, "q25": 0.25, "median": 0.5, "q75": 0.75, "q95": 0.95}
#: A forecast at most this fraction of whose draws failed is summarised; beyond it, an error.
MAX_FAILED_SHARE = 0.5


def _finite(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise DataError(f"{what} must be finite, got {value!r}")
    return number


@dataclass(frozen=True)
class Dosing:
    """Bolus doses: ``amount`` into ``state`` at ``start``, then every ``every`` time units, ``count`` doses in all.

    x(t_k+) = x(t_k-) + amount at t_k = start + k * every, k = 0 .. count - 1.
    """

    state: str
    amount: float
    start: float = 0.0
    every: float | None = None
    count: int = 1

    def __post_init__(self) -> None:
        where = f"dose into '{self.state}'"
        object.__setattr__(self, "amount", _finite(self.amount, f"{where}: amount"))
        object.__setattr__(self, "start", _finite(self.start, f"{where}: start"))
        if self.start < 0:
            raise DataError(f"{where} starts at t={self.start}; times must be >= 0")
        if self.amount < 0:
            raise DataError(f"{where} has a negative amount {self.amount}; a dose adds to a state")
        if int(self.count) != self.count or self.count < 1:
            raise DataError(f"{where}: count must be a whole number >= 1, got {self.count}")
        object.__setattr__(self, "count", int(self.count))
        if self.count > 1 and self.every is None:
            raise DataError(f"{where}: {self.count} doses need an interval; give 'every'")
        if self.every is not None:
            object.__setattr__(self, "every", _finite(self.every, f"{where}: every"))
            if self.every <= 0:
                raise DataError(f"{where}: the dosing interval 'every' must be > 0, got {self.every}")

    @property
    def times(self) -> tuple[float, ...]:
        return tuple(self.start + k * (self.every or 0.0) for k in range(self.count))

    def boluses(self) -> tuple[Bolus, ...]:
        return tuple(Bolus(t, self.state, self.amount) for t in self.times)


@dataclass(frozen=True)
class Infusion:
    """A constant-rate infusion: dx/dt gains ``rate`` (amount per time unit) into ``state`` on [start, stop)."""

    state: str
    rate: float
    start: float
    stop: float

    def __post_init__(self) -> None:
        where = f"infusion into '{self.state}'"
        for name in ("rate", "start", "stop"):
            object.__setattr__(self, name, _finite(getattr(self, name), f"{where}: {name}"))
        if self.start < 0 or self.stop <= self.start:
            raise DataError(f"{where} must run on 0 <= start < stop, got start={self.start}, stop={self.stop}")
        if self.rate < 0:
            raise DataError(f"{where} has a negative rate {self.rate}")


@dataclass(frozen=True, eq=False)
class Scenario:
    """A virtual experiment: what is done to the system from ``start`` to ``horizon``.

    ``initial`` gives initial states (the others take the model's initial expressions);
    ``parameters`` replaces parameter values in every draw; ``knockouts`` sets parameters to 0;
    ``clamp`` holds states at values (dx/dt = 0 from the start); ``doses``, ``infusions`` and
    ``inputs`` (piecewise-constant model inputs) act as in :mod:`biotwin.simulate`. ``times`` are
    the output times (default: :data:`DEFAULT_OUTPUTS` from start to horizon).
    """

    name: str
    horizon: float
    start: float = 0.0
    times: tuple[float, ...] = ()
    initial: Mapping[str, float] = field(default_factory=dict)
    parameters: Mapping[str, float] = field(default_factory=dict)
    knockouts: tuple[str, ...] = ()
    clamp: Mapping[str, float] = field(default_factory=dict)
    doses: tuple[Dosing, ...] = ()
    infusions: tuple[Infusion, ...] = ()
    inputs: tuple[Input, ...] = ()

    def __post_init__(self) -> None:
        where = f"scenario '{self.name}'"
        start = _finite(self.start, f"{where}: start")
        horizon = _finite(self.horizon, f"{where}: horizon")
        if start < 0:
            raise DataError(f"{where} starts at t={start}; times must be >= 0")
        if horizon <= start:
            raise DataError(f"{where}: the horizon {horizon} must lie after the start {start}")
        times = tuple(_finite(t, f"{where}: an output time") for t in self.times)
        if times and (times[0] < start or times[-1] > horizon or any(b <= a for a, b in pairwise(times))):
            raise DataError(f"{where}: output times must increase strictly within [start, horizon] = [{start}, {horizon}]")
        for label, mapping in (("initial", self.initial), ("parameters", self.parameters), ("clamp", self.clamp)):
            object.__setattr__(self, label, MappingProxyType(
                {str(k): _finite(v, f"{where}: {label} '{k}'") for k, v in dict(mapping).items()}))
        for dose in self.doses:
            if not all(start <= t <= horizon for t in dose.times):
                raise DataError(f"{where}: a dose into '{dose.state}' falls outside [start, horizon] = [{start}, {horizon}]")
        for infusion in self.infusions:
            if infusion.start < start or infusion.start >= horizon:
                raise DataError(f"{where}: the infusion into '{infusion.state}' starts outside [{start}, {horizon})")
        for signal in self.inputs:
            if signal.times[0] < start:
                raise DataError(f"{where}: input '{signal.name}' switches at t={signal.times[0]}, before the start {start}")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "horizon", horizon)
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "knockouts", tuple(str(k) for k in self.knockouts))
        object.__setattr__(self, "doses", tuple(self.doses))
        object.__setattr__(self, "infusions", tuple(self.infusions))
        object.__setattr__(self, "inputs", tuple(self.inputs))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_mapping(cls, name: str, entry: Mapping[str, Any]) -> Scenario:
        """A scenario from plain data (one entry of a scenario file; see :func:`read_scenarios`)."""
        where = f"scenario '{name}'"
        if not isinstance(entry, Mapping):
            raise DataError(f"{where} must be a mapping of settings, got {type(entry).__name__}")
        unknown = sorted(set(entry) - set(SCENARIO_KEYS))
        if unknown:
            raise DataError(f"{where}: unknown setting '{unknown[0]}'; the settings are {', '.join(SCENARIO_KEYS)}")
        if "horizon" not in entry:
            raise DataError(f"{where} has no horizon; give 'horizon: T' (the time the forecast ends)")

        knockouts = entry.get("knockout", [])
        return cls(
            name=name, horizon=entry["horizon"], start=entry.get("start", 0.0),
            times=parse_times(entry.get("times"), where),
            initial=_mapping(entry, "initial", where), parameters=_mapping(entry, "parameters", where),
            knockouts=tuple([knockouts] if isinstance(knockouts, str) else knockouts),
            clamp=_mapping(entry, "clamp", where),
            doses=records(entry, "doses", where), infusions=records(entry, "infusions", where),
            inputs=records(entry, "inputs", where),
        )

    # ------------------------------------------------------------------ use
    def output_times(self) -> np.ndarray:
        if self.times:
            return np.array(self.times)
        return np.linspace(self.start, self.horizon, DEFAULT_OUTPUTS)

    def boluses(self) -> tuple[Bolus, ...]:
        return tuple(b for d in self.doses for b in d.boluses())

    def signals(self) -> tuple[Input, ...]:
        """The model inputs and one infusion signal per infused state (overlapping infusions add up)."""
        return (*self.inputs, *infusion_signals(self.infusions))

    def check(self, model: Model) -> None:
        """Raise :class:`ModelError` when the scenario names a state, parameter or input the model lacks."""
        where = f"scenario '{self.name}'"
        checks = [
            *((k, "state", model.states) for k in self.initial),
            *((k, "parameter", model.parameter_names) for k in self.parameters),
            *((k, "parameter", model.parameter_names) for k in self.knockouts),
            *((k, "state", model.states) for k in self.clamp),
            *((d.state, "state", model.states) for d in self.doses),
            *((i.state, "state", model.states) for i in self.infusions),
            *((u.name, "input", model.inputs) for u in self.inputs),
        ]
        for name, what, known in checks:
            if name not in known:
                raise ModelError(f"{where}: {Model.unknown_message(what, name, known)}")

    def parameter_sets(self, model: Model, draws: ParameterDraws) -> tuple[Model, np.ndarray, np.ndarray]:
        """What a solve of this scenario needs: the model it runs (clamps applied), the parameter sets
        (S, P) of the draws with the scenario's changes and knock-outs, and the initial states (S, n)."""
        self.check(model)
        solved = self.applied_to(model)
        theta = draws.thetas(solved)
        for name, value in {**self.parameters, **{k: 0.0 for k in self.knockouts}}.items():
            if name in solved.parameter_names:
                theta[:, solved.parameter_names.index(name)] = value
        y0 = initial_states(solved, theta, {**self.initial, **self.clamp}, f"scenario '{self.name}'")
        return solved, theta, y0

    def applied_to(self, model: Model) -> Model:
        """The model with the clamped states held (dx/dt = 0); unchanged when nothing is clamped."""
        return _clamped(model, tuple(sorted(self.clamp))) if self.clamp else model


@lru_cache(maxsize=32)
def _clamped(model: Model, states: tuple[str, ...]) -> Model:
    """``model`` with dx/dt = 0 for ``states`` (one model, so one compilation, per set of clamped states)."""
    import sympy

    rhs = tuple(sympy.Integer(0) if s in states else e for s, e in zip(model.states, model.rhs))
    initial = {s: e for s, e in model.initial.items() if s not in states}
    used = set().union(*(e.free_symbols for e in (*rhs, *(o.expr for o in model.observables), *initial.values())))
    # A parameter only the clamped equations used is dropped; forecasts fill values by name.
    parameters = tuple(p for p in model.parameters if sympy.Symbol(p.name) in used)
    return Model(model.states, rhs, parameters, model.observables, model.inputs, initial, model.name)


SCENARIO_KEYS = ("horizon", "start", "times", "initial", "parameters", "knockout", "clamp", "doses", "infusions",
                 "inputs")


#: What an entry's lists of actions hold: the record each item becomes and the keys it may have.
ACTIONS: Mapping[str, tuple[type, tuple[str, ...]]] = MappingProxyType({
    "doses": (Dosing, ("state", "amount", "start", "every", "count")),
    "infusions": (Infusion, ("state", "rate", "start", "stop")),
    "inputs": (Input, ("name", "times", "levels")),
})


def records(entry: Mapping[str, Any], key: str, where: str) -> tuple[Any, ...]:
    """The ``key`` list of ``entry`` (doses, infusions or inputs; see :data:`ACTIONS`) as records."""
    kind, fields = ACTIONS[key]
    items = entry.get(key) or []
    if not isinstance(items, list):
        raise DataError(f"{where}: '{key}' must be a list of mappings")
    built = []
    for item in items:
        extra = sorted(set(item) - set(fields)) if isinstance(item, Mapping) else ["?"]
        if extra:
            raise DataError(f"{where}: each of '{key}' is a mapping with keys {', '.join(fields)}; got {item!r}")
        try:
            built.append(kind(**item))
        except TypeError as error:
            raise DataError(f"{where}: '{key}' entry {item!r} is incomplete ({error})") from None
    return tuple(built)


def infusion_signals(infusions: Iterable[Infusion]) -> tuple[Input, ...]:
    """One signal per infused state, its level the summed rate of the infusions running then."""
    by_state: dict[str, list[Infusion]] = {}
    for infusion in infusions:
        by_state.setdefault(infusion.state, []).append(infusion)
    merged = []
    for state, running in by_state.items():
        switches = sorted({t for i in running for t in (i.start, i.stop)})
        levels = [sum(i.rate for i in running if i.start <= t < i.stop) for t in switches]
        merged.append(Input(state, tuple(switches), tuple(levels)))
    return tuple(merged)


def _mapping(entry: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = entry.get(key) or {}
    if not isinstance(value, Mapping):
        raise DataError(f"{where}: '{key}' must map names to numbers, e.g. '{key}: {{x: 1.0}}'")
    return dict(value)


def parse_times(value: Any, where: str) -> tuple[float, ...]:
    """Times from ``"START:STOP:COUNT"`` (evenly spaced), ``"t1,t2,..."`` or a list of numbers; () for None."""
    if value is None:
        return ()
    if isinstance(value, str) and ":" in value:
        parts = value.split(":")
        if len(parts) != 3:
            raise DataError(f"{where}: times '{value}' is not START:STOP:COUNT or a list of numbers")
        start, stop = _finite(parts[0], f"{where}: times"), _finite(parts[1], f"{where}: times")
        count = _finite(parts[2], f"{where}: times")
        if count != int(count) or count < 1 or stop < start:
            raise DataError(f"{where}: times '{value}' needs START <= STOP and a whole COUNT >= 1")
        return tuple(np.linspace(start, stop, int(count)))
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise DataError(f"{where}: times must be START:STOP:COUNT or a non-empty list of numbers")
    return tuple(_finite(t, f"{where}: an output time") for t in items)


@dataclass(frozen=True)
class Comparison:
    """A request to compare ``quantity`` at ``time`` between ``scenario`` and ``baseline``."""

    scenario: str
    baseline: str
    quantity: str
    time: float


@dataclass(frozen=True, eq=False)
class ScenarioFile:
    """What a scenario file holds: the scenarios in file order, and the comparisons it asks for."""

    scenarios: tuple[Scenario, ...]
    comparisons: tuple[Comparison, ...] = ()


def read_scenarios(source: str | Path | Mapping[str, Any]) -> ScenarioFile:
    """Scenarios from a YAML file (or its parsed content).

    Top-level settings apply to every scenario (each may override them); ``scenarios`` maps
    names to settings; ``compare`` lists comparisons::

        horizon: 30
        initial: {tumour: 1.0, drug: 0.0}
        scenarios:
          control: {}
          weekly:
            doses: [{state: drug, amount: 10, start: 0, every: 7, count: 4}]
          knockout_k1: {knockout: [k1]}
        compare:
          - {scenario: weekly, baseline: control, quantity: tumour, time: 30}
    """
    from biotwin.io.files import read_yaml

    where = str(source) if not isinstance(source, Mapping) else "the scenarios"
    content: Any = source if isinstance(source, Mapping) else read_yaml(source, "scenario file")
    if not isinstance(content, Mapping) or not isinstance(content.get("scenarios"), Mapping) or not content["scenarios"]:
        raise DataError(f"{where}: a scenario file needs a 'scenarios:' mapping of names to settings")
    shared = {k: v for k, v in content.items() if k not in ("scenarios", "compare")}
    unknown = sorted(set(shared) - set(SCENARIO_KEYS))
    if unknown:
        raise DataError(f"{where}: unknown top-level setting '{unknown[0]}'; use scenarios, compare, "
                        + ", ".join(SCENARIO_KEYS))
    scenarios = []
    for name, entry in content["scenarios"].items():
        merged = dict(shared)
        for key, value in (entry or {}).items():
            # Mappings merge (a scenario changes one initial value); lists and numbers replace.
            merged[key] = {**merged[key], **value} if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping) else value
        scenarios.append(Scenario.from_mapping(str(name), merged))
    names = [s.name for s in scenarios]
    comparisons = []
    for item in content.get("compare") or []:
        if not isinstance(item, Mapping) or set(item) != {"scenario", "baseline", "quantity", "time"}:
            raise DataError(f"{where}: each 'compare' entry needs scenario, baseline, quantity and time; got {item!r}")
        for key in ("scenario", "baseline"):
            if item[key] not in names:
                raise DataError(f"{where}: compare names {key} '{item[key]}', which is not one of the scenarios ({', '.join(names)})")
        comparisons.append(Comparison(str(item["scenario"]), str(item["baseline"]), str(item["quantity"]),
                                      _finite(item["time"], f"{where}: compare time")))
    return ScenarioFile(tuple(scenarios), tuple(comparisons))


# ---------------------------------------------------------------------------------------------
# Parameter draws and forecasts


@dataclass(frozen=True, eq=False)
class ParameterDraws:
    """Parameter sets a forecast runs over: ``values[s, j]`` is parameter ``names[j]`` in draw s (linear scale).

    Names that are not parameters of the model (noise scales, say) are ignored by forecasts;
    model parameters not named keep the model's values. ``source`` says where the draws came
    from ("posterior", "best fit", "model").
    """

    names: tuple[str, ...]
    values: np.ndarray
    source: str = "posterior"

    def __post_init__(self) -> None:
        values = np.atleast_2d(np.asarray(self.values, dtype=float))
        if values.shape[1] != len(self.names):
            raise ModelError(f"parameter draws have {values.shape[1]} columns for {len(self.names)} names")
        values.setflags(write=False)
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @classmethod
    def point(cls, values: Mapping[str, float], source: str = "best fit") -> ParameterDraws:
        return cls(tuple(values), np.array([list(values.values())], dtype=float), source)

    @classmethod
    def of_model(cls, model: Model) -> ParameterDraws:
        """The model's own parameter values, as one draw."""
        return cls.point({p.name: p.value for p in model.parameters}, "model")

    def column(self, name: str) -> np.ndarray:
        """(S,): the draws of one parameter."""
        if name not in self.names:
            raise ModelError(Model.unknown_message("parameter", name, self.names))
        return self.values[:, self.names.index(name)]

    @classmethod
    def from_samples(cls, samples: Mapping[str, np.ndarray], source: str = "posterior") -> ParameterDraws:
        """Draws from ``{name: array}`` (any shape; flattened in the same order, e.g. chains x draws)."""
        names = tuple(samples)
        return cls(names, np.column_stack([np.asarray(samples[n], dtype=float).reshape(-1) for n in names]), source)

    def subsample(self, count: int | None, seed: int = 0) -> ParameterDraws:
        """At most ``count`` draws chosen at random without replacement (all when ``count`` is None)."""
        if count is None or count >= len(self):
            return self
        if count < 1:
            raise ModelError(f"need at least one draw, got {count}")
        rows = np.sort(np.random.default_rng(seed).choice(len(self), size=count, replace=False))
        return ParameterDraws(self.names, self.values[rows], self.source)

    def split(self, count: int, seed: int = 0) -> tuple[ParameterDraws, ParameterDraws]:
        """``count`` draws chosen at random, and the others (for testing on draws not trained on).

        With no more than ``count`` draws, both parts are all of them.
        """
        if count >= len(self):
            return self, self
        chosen = np.zeros(len(self), dtype=bool)
        chosen[np.random.default_rng(seed).choice(len(self), size=count, replace=False)] = True
        return (ParameterDraws(self.names, self.values[chosen], self.source),
                ParameterDraws(self.names, self.values[~chosen], self.source))

    def thetas(self, model: Model) -> np.ndarray:
        """(S, P): the model's parameter values, replaced by the draws where they name a model parameter."""
        theta = np.tile(model.parameter_vector(), (len(self), 1))
        for j, name in enumerate(self.names):
            if name in model.parameter_names:
                theta[:, model.parameter_names.index(name)] = self.values[:, j]
        return theta


@dataclass(frozen=True, eq=False)
class Forecast:
    """The trajectories of a scenario over parameter draws.

    ``states[s, i, k]`` is state k at ``times[i]`` in draw s, ``observables[s, i, j]`` observable j;
    rows of failed draws are NaN and ``failed`` (S,) marks them, ``failures`` says why for each.
    """

    scenario: Scenario
    times: np.ndarray
    states: np.ndarray
    observables: np.ndarray
    state_names: tuple[str, ...]
    observable_names: tuple[str, ...]
    failed: np.ndarray
    failures: tuple[str, ...] = ()
    source: str = "posterior"

    @property
    def draws(self) -> int:
        return int(self.failed.size)

    @property
    def n_failed(self) -> int:
        return int(np.sum(self.failed))

    @property
    def quantities(self) -> tuple[str, ...]:
        """Every state, then every observable that is not simply a state of the same name."""
        return (*self.state_names, *(o for o in self.observable_names if o not in self.state_names))

    def trajectories(self, quantity: str) -> np.ndarray:
        """(S, T): one state or observable over the draws (NaN rows for failed draws)."""
        if quantity in self.state_names:
            return self.states[..., self.state_names.index(quantity)]
        if quantity in self.observable_names:
            return self.observables[..., self.observable_names.index(quantity)]
        raise ModelError(Model.unknown_message("state or observable", quantity, self.quantities))

    def at(self, quantity: str, time: float) -> np.ndarray:
        """(S,): ``quantity`` at ``time`` in every draw (linear interpolation between output times)."""
        if not self.times[0] <= time <= self.times[-1]:
            raise DataError(f"t={time} lies outside the forecast of scenario '{self.scenario.name}' "
                            f"[{self.times[0]:g}, {self.times[-1]:g}]")
        values = self.trajectories(quantity)
        return np.array([np.interp(time, self.times, row) for row in values])

    def bands(self, quantity: str) -> dict[str, np.ndarray]:
        """Median and the 5, 25, 75 and 95% quantiles over the draws that succeeded, per output time."""
        values = self.trajectories(quantity)[~self.failed]
        return {key: np.quantile(values, q, axis=0) for key, q in QUANTILES.items()}

    def to_frame(self):
        """A long table: scenario, quantity, time, median and the band quantiles."""
        import pandas as pd

        frames = []
        for quantity in self.quantities:
            columns = {"scenario": self.scenario.name, "quantity": quantity, "time": self.times}
            frames.append(pd.DataFrame({**columns, **self.bands(quantity)}))
        return pd.concat(frames, ignore_index=True)

    def to_record(self) -> dict[str, Any]:
        """Plain data for ``forecasts.json``: times, draw counts and bands of every state and observable."""
        def bands(names: Iterable[str]) -> dict[str, Any]:
            return {n: {k: [float(f"{v:.7g}") for v in b] for k, b in self.bands(n).items()} for n in names}

        return {
            "times": [float(t) for t in self.times], "samples": self.draws, "failed": self.n_failed,
            "source": self.source, "failures": list(self.failures),
            "observables": bands(self.observable_names), "states": bands(self.state_names),
        }


@dataclass(frozen=True)
class Difference:
    """The effect of ``scenario`` against ``baseline`` on ``quantity`` at ``time``, per draw.

    ``relative``: (scenario - baseline) / |baseline|, else the plain difference; ``median``,
    ``low`` and ``high`` are the median and the central ``level`` interval over the draws where
    both succeeded.
    """

    scenario: str
    baseline: str
    quantity: str
    time: float
    median: float
    low: float
    high: float
    relative: bool
    level: float
    draws: int

    @property
    def text(self) -> str:
        if self.relative:
            numbers = f"{100 * self.median:+.3g}% [{100 * self.low:+.3g}%, {100 * self.high:+.3g}%]"
        else:
            numbers = f"{self.median:+.4g} [{self.low:+.4g}, {self.high:+.4g}]"
        return f"{self.quantity} at t={self.time:g}: {numbers} vs. {self.baseline}"

    def to_record(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "baseline": self.baseline, "quantity": self.quantity, "time": self.time,
                "median": self.median, "low": self.low, "high": self.high, "relative": self.relative,
                "level": self.level, "draws": self.draws, "text": self.text}


def compare(forecast: Forecast, baseline: Forecast, quantity: str, time: float, *, relative: bool = True,
            level: float = 0.9) -> Difference:
    """The change of ``quantity`` at ``time`` from ``baseline`` to ``forecast``, draw by draw.

    Both forecasts must run over the same draws (as :func:`forecast_all` and
    :meth:`biotwin.twin.Twin.simulate` with one seed do), so that the interval is the
    uncertainty of the effect itself.
    """
    if forecast.draws != baseline.draws:
        raise ModelError(f"scenarios '{forecast.scenario.name}' and '{baseline.scenario.name}' ran over different "
                         f"numbers of draws ({forecast.draws} and {baseline.draws}); forecast them together")
    a, b = forecast.at(quantity, time), baseline.at(quantity, time)
    usable = ~(forecast.failed | baseline.failed)
    if relative:
        with np.errstate(divide="ignore", invalid="ignore"):
            change = (a - b) / np.abs(b)
        usable &= np.isfinite(change)
        if not usable.any():
            raise ModelError(f"{quantity} is 0 at t={time:g} in scenario '{baseline.scenario.name}' in every draw; "
                             "compare the plain difference (relative=False)")
    else:
        change = a - b
    tail = (1 - level) / 2
    low, median, high = np.quantile(change[usable], [tail, 0.5, 1 - tail])
    return Difference(forecast.scenario.name, baseline.scenario.name, quantity, float(time), float(median),
                      float(low), float(high), relative, level, int(np.sum(usable)))


def forecast(model: Model, scenario: Scenario, draws: ParameterDraws | None = None, *, method: str = "auto",
             rtol: float = 1e-6, atol: float = 1e-9) -> Forecast:
    """Run ``scenario`` on ``model`` for every parameter draw, in one batched solve.

    ``draws`` default to the model's own parameter values (one draw). Initial states are the
    scenario's, else the model's initial expressions evaluated at each draw, else the clamp value.
    Raises :class:`ModelError` when a state has no initial value, and when more than
    :data:`MAX_FAILED_SHARE` of the draws fail (the forecast would mean little).
    """
    from biotwin.simulate import make_plan, solve_batch

    draws = draws if draws is not None else ParameterDraws.of_model(model)
    solved, theta, y0 = scenario.parameter_sets(model, draws)
    plan = make_plan(solved, scenario.output_times(), start=scenario.start, doses=scenario.boluses(),
                     inputs=scenario.signals())
    states, observables, status, t_stop = solve_batch(solved, theta, y0, plan, method, rtol, atol)
    return forecast_of_solves(model, scenario, draws, states, observables, status, t_stop)


def forecast_of_solves(model: Model, scenario: Scenario, draws: ParameterDraws, states: np.ndarray,
                       observables: np.ndarray, status: np.ndarray, t_stop: np.ndarray) -> Forecast:
    """The :class:`Forecast` of batched solves of ``scenario`` (one per draw), with failed draws as NaN rows and reasons.

    Raises :class:`ModelError` when more than :data:`MAX_FAILED_SHARE` of the draws failed.
    """
    from biotwin.simulate import BLOWUP, OK

    status, t_stop = np.atleast_1d(np.asarray(status)), np.atleast_1d(np.asarray(t_stop))
    failed = status != OK
    failures = tuple(
        f"draw {s}: {'blew up' if status[s] == BLOWUP else 'solver stalled'} at t={float(t_stop[s]):.4g}"
        for s in np.flatnonzero(failed)
    )
    if failed.mean() > MAX_FAILED_SHARE:
        raise ModelError(f"scenario '{scenario.name}': {failed.sum()} of {failed.size} draws failed to solve "
                         f"({failures[0]}); the scenario drives the model outside where it can be solved")
    return Forecast(scenario, scenario.output_times(), np.where(failed[:, None, None], np.nan, states),
                    np.where(failed[:, None, None], np.nan, observables), model.states, model.observable_names,
                    failed, failures, draws.source)


def initial_states(model: Model, theta: np.ndarray, given: Mapping[str, float], where: str) -> np.ndarray:
    """(S, n): ``given`` initial states, else the model's initial expressions at each parameter set in ``theta``.

    ``where`` names what asks (e.g. "scenario 'control'") in the error for a state with neither.
    """
    import jax
    import jax.numpy as jnp

    from biotwin import _jax  # noqa: F401
    from biotwin.likelihood import initial_function

    missing = [s for s in model.states if s not in given and s not in model.initial]
    if missing:
        raise ModelError(f"{where}: no initial value for state '{missing[0]}'; give it (under 'initial:' in a "
                         f"scenario file) or add '{missing[0]}(0) = ...' to the model")
    defaults = np.array(jax.vmap(initial_function(model))(jnp.asarray(theta)))
    for k, state in enumerate(model.states):
        if state in given:
            defaults[:, k] = given[state]
    return defaults


def forecast_all(model: Model, scenarios: Sequence[Scenario], draws: ParameterDraws | None = None,
                 **options: Any) -> dict[str, Forecast]:
    """Forecast several scenarios over the same draws (so that :func:`compare` pairs them)."""
    return {s.name: forecast(model, s, draws, **options) for s in scenarios}

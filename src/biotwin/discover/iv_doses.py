"""Doses given as amounts into the compartment whose concentration is measured (an IV bolus).

A pharmacologist injects 50 mg into the central compartment and measures the plasma
concentration C = central / V: the doses name a compartment no observable is called, but they
act on an observable at once, in other units. Taken for a hidden depot that empties at first
order (:mod:`biotwin.discover.depots`), such a dose leaves the first sample already at its
peak, which no absorption rate explains, and the regression reaches for look-alike terms.

The observable o is dosed intravenously, in units of a volume V, when at every bolus of amount
A into the compartment

* the first sample of o after the dose (a sample at the dose time counts as after it, as
  :mod:`biotwin.simulate` doses) is the highest (at least :data:`PEAK_SHARE` of it) of the
  interval up to the next dose, and it comes soon enough that o has not yet fallen by more than
  :data:`MAX_EXTRAPOLATION` from the dose: no absorption delay, nor room for one (an oral dose
  sampled first 3 h later, when C is already falling, stays a depot);
* o jumps by A / V: the level extrapolated back to the dose time (log-linear over the first
  :data:`EXTRAPOLATED_SAMPLES` samples after it) less the last level before it (0 before the
  first dose of an experiment that starts with it: an empty body, as for a depot), with one V
  for doses of different sizes (amounts spanning at least :data:`DISTINCT_AMOUNTS`, volumes
  within :data:`CONSISTENT_VOLUMES` of each other), which is what tells a dose apart from a
  large initial level that does not scale with it (a tumour's volume when a drug is given).

Discovery then runs on o itself (:func:`in_concentrations`): a dose at an experiment's start
sets o's initial level, which the trajectory refit estimates; a later one adds A / V to o;
an infusion into the compartment at rate r adds r / V to o's rate. The models it returns hold
the amount as their state (:func:`in_amounts`),

    d(amount)/dt = V f(amount / V, ...),    o = amount / V,    amount = 0 before the first dose,

with V from the refit's initial levels of the experiments dosed at their start (V = A / o(t0),
geometric mean), so that they take doses as the data give them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import sympy

from biotwin.data import Bolus, Dataset, Experiment
from biotwin.model import Model, Observable, Parameter

if TYPE_CHECKING:
    from biotwin.discover.select import Candidates

#: The first sample after a dose must be at least this share of the highest until the next dose.
PEAK_SHARE = 0.8
#: Samples after a dose whose log-linear fit is extrapolated back to the dose time.
EXTRAPOLATED_SAMPLES = 4
#: The level extrapolated back to the dose over the first sample after it: at most this.
MAX_EXTRAPOLATION = 1.25
#: The largest dose over the smallest: below this, a jump's proportionality to the dose is untestable.
DISTINCT_AMOUNTS = 1.5
#: The largest volume estimate over the smallest for one volume to explain every jump.
CONSISTENT_VOLUMES = 1.5


@dataclass(frozen=True)
class IntravenousDose:
    """Doses into ``compartment`` (an amount) raise ``observable`` by amount / ``volume``."""

    compartment: str
    observable: str
    volume: float

    @property
    def volume_parameter(self) -> str:
        return f"V_{self.compartment}"


def intravenous_doses(dataset: Dataset, states: Sequence[str], compartments: Sequence[str]) -> tuple[IntravenousDose, ...]:
    """The ``compartments`` (dosed, not observed) whose doses act on an observed state at once
    (see the module), each with the state its doses raise and the volume."""
    found = []
    for compartment in compartments:
        best: tuple[float, str, float] | None = None
        for state in states:
            jumps = _volumes(dataset, compartment, state)
            if not jumps:
                continue
            amounts, volumes = np.array(jumps).T
            spread = float(volumes.max() / volumes.min())
            if amounts.max() / amounts.min() >= DISTINCT_AMOUNTS and spread <= CONSISTENT_VOLUMES:
                if best is None or spread < best[0]:
                    best = (spread, state, float(np.exp(np.mean(np.log(volumes)))))
        if best is not None:
            found.append(IntravenousDose(compartment, best[1], best[2]))
    return tuple(found)


def _volumes(dataset: Dataset, compartment: str, state: str) -> list[tuple[float, float]]:
    """(amount A, volume A / jump) of every bolus into ``compartment`` as ``state`` shows it;
    [] when some dose does not raise ``state`` at once (or cannot be judged)."""
    jumps = []
    for experiment in dataset:
        if state not in experiment.observables:
            continue
        times, values = experiment.observed(state)
        doses = _merged_doses(experiment, compartment)
        for k, (time, amount) in enumerate(doses):
            until = doses[k + 1][0] if k + 1 < len(doses) else math.inf
            after = (times >= time) & (times < until)
            level_after = _level_after(times[after] - time, values[after])
            if level_after is None or amount <= 0:
                return []
            before = (times < time) & (times >= (doses[k - 1][0] if k else -math.inf))
            level_before = float(values[before][-1]) if before.any() else (0.0 if k == 0 else None)
            if level_before is None or level_after <= level_before:
                return []
            jumps.append((amount, amount / (level_after - level_before)))
    return jumps


def _merged_doses(experiment: Experiment, compartment: str) -> list[tuple[float, float]]:
    """(time, total amount) of the boluses into ``compartment``, in time order."""
    totals: dict[float, float] = {}
    for dose in experiment.doses:
        if dose.state == compartment:
            totals[dose.time] = totals.get(dose.time, 0.0) + dose.amount
    return sorted(totals.items())


def _level_after(elapsed: np.ndarray, values: np.ndarray) -> float | None:
    """The level right after a dose, extrapolated log-linearly from the samples that follow it;
    None unless the first of them is the interval's peak and near the dose (see the module)."""
    if elapsed.size < 2 or np.any(values <= 0) or values[0] < PEAK_SHARE * values.max():
        return None
    first = slice(0, EXTRAPOLATED_SAMPLES)
    _, intercept = np.polyfit(elapsed[first], np.log(values[first]), 1)
    # The level only falls after the dose, so it is at least the first sample: a fit that says
    # less (a fast distribution phase bending the line) or rises (noise over a flat start) yields to it.
    level = max(float(np.exp(intercept)), float(values[0]))
    return level if level <= MAX_EXTRAPOLATION * values[0] else None


def _at_start(experiment: Experiment, dose: IntravenousDose, time: float) -> bool:
    """Whether a dose at ``time`` comes at or before the experiment's first sample of the dosed
    observable, so that it sets the level the refit estimates (never when it is not measured)."""
    if dose.observable not in experiment.observables:
        return False
    times, _ = experiment.observed(dose.observable)
    return bool(times.size) and time <= times[0]


def in_concentrations(dataset: Dataset, doses: Sequence[IntravenousDose]) -> Dataset:
    """The dataset with each compartment's doses given to its observable, in its units: a dose at
    or before an experiment's first sample of the observable is dropped (the refit estimates the
    initial level it sets), any other becomes a bolus of amount / V, and an infusion into the
    compartment at rate r one into the observable at r / V."""
    by_compartment = {d.compartment: d for d in doses}
    experiments = []
    for experiment in dataset:
        boluses, inputs = [], []
        for bolus in experiment.doses:
            dose = by_compartment.get(bolus.state)
            if dose is None:
                boluses.append(bolus)
                continue
            if not _at_start(experiment, dose, bolus.time):
                boluses.append(Bolus(bolus.time, dose.observable, bolus.amount / dose.volume))
        for signal in experiment.inputs:
            dose = by_compartment.get(signal.name)
            inputs.append(signal if dose is None else
                          replace(signal, name=dose.observable, levels=tuple(v / dose.volume for v in signal.levels)))
        experiments.append(experiment.replace(doses=tuple(boluses), inputs=tuple(inputs)))
    return replace(dataset, experiments=tuple(experiments))


def fitted_volume(dataset: Dataset, dose: IntravenousDose, initial: Mapping[str, Mapping[str, float]]) -> float:
    """V = A / o(t0) (geometric mean) over the experiments dosed at their start, from the refit's
    initial levels ``initial`` (experiment -> state -> value); the detection's V without such."""
    volumes = []
    for experiment in dataset:
        amount = sum(d.amount for d in experiment.doses
                     if d.state == dose.compartment and _at_start(experiment, dose, d.time))
        level = initial.get(experiment.name, {}).get(dose.observable, math.nan)
        if amount > 0 and level > 0:
            volumes.append(amount / level)
    return float(np.exp(np.mean(np.log(volumes)))) if volumes else dose.volume


def in_amounts(model: Model, doses: Sequence[IntravenousDose], volumes: Mapping[str, float]) -> Model:
    """``model`` (discovered on the observables) with each dosed observable o replaced by its
    compartment's amount a = V o as the state: da/dt = V f(a / V, ...), o = a / V observed, a = 0
    at the start. ``volumes`` maps each compartment to V."""
    states, rhs = list(model.states), list(model.rhs)
    observables = {o.name: o.expr for o in model.observables}
    parameters, initial = list(model.parameters), dict(model.initial)
    for dose in doses:
        if dose.observable not in states:
            continue
        k = states.index(dose.observable)
        volume = sympy.Symbol(dose.volume_parameter)
        concentration = {sympy.Symbol(dose.observable): sympy.Symbol(dose.compartment) / volume}
        rhs = [e.xreplace(concentration) for e in rhs]
        rhs[k] = volume * rhs[k]
        states[k] = dose.compartment
        observables = {name: e.xreplace(concentration) for name, e in observables.items()}
        parameters.append(Parameter(dose.volume_parameter, volumes[dose.compartment], 0.0, math.inf))
        initial[dose.compartment] = sympy.Integer(0)
    return Model(tuple(states), tuple(rhs), parameters=tuple(parameters),
                 observables=tuple(Observable(n, e) for n, e in observables.items()), inputs=model.inputs,
                 initial=initial, name=model.name)


def candidates_in_amounts(candidates: Candidates, doses: Sequence[IntravenousDose], dataset: Dataset) -> Candidates:
    """Every candidate of :class:`~biotwin.discover.select.Candidates` in amounts (:func:`in_amounts`),
    with one V per compartment from the chosen candidate's initial levels, fitted on ``dataset``
    (the data as given, doses into the compartments)."""
    if not doses:
        return candidates
    volumes = {d.compartment: fitted_volume(dataset, d, candidates.chosen.fit.initial) for d in doses}
    start_dosed = {(e.name, d.compartment) for e in dataset for d in doses
                   if any(b.state == d.compartment and _at_start(e, d, b.time) for b in e.doses)}

    def amounts(experiment: str, levels: Mapping[str, float]) -> dict[str, float]:
        converted = dict(levels)
        for dose in doses:
            if dose.observable in converted:
                level = converted.pop(dose.observable)
                converted[dose.compartment] = (0.0 if (experiment, dose.compartment) in start_dosed
                                               else volumes[dose.compartment] * level)
        return converted

    converted = []
    for candidate in candidates.candidates:
        model = in_amounts(candidate.model, doses, volumes)
        fit = replace(candidate.fit, model=model,
                      parameters={**candidate.fit.parameters, **{d.volume_parameter: volumes[d.compartment] for d in doses}},
                      initial={e: amounts(e, levels) for e, levels in candidate.fit.initial.items()})
        converted.append(replace(candidate, model=model, fit=fit))
    return replace(candidates, candidates=tuple(converted))

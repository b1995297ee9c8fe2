"""What was done in each measured experiment: doses, infusions and input signals, from a YAML file.

A CSV holds measurements only. A *design file* says what each experiment of it received, by the
experiment names of the data::

    doses: [{state: gut, amount: 4}]                  # top level: every experiment
    experiments:
      low:  {doses: [{state: gut, amount: 2}]}        # an experiment's own list replaces it
      high: {doses: [{state: gut, amount: 6, start: 0, every: 12, count: 3}]}
      induced:
        inputs: [{name: IPTG, times: [0, 60], levels: [100, 0]}]
        infusions: [{state: E, rate: 0.5, start: 0, stop: 10}]

Items are written as in scenario files (:mod:`biotwin.experiment`): bolus doses (once, or every
T from a start), constant-rate infusions into a state, and piecewise-constant input signals.
Discovery reads an input that names no measured quantity as a known signal the rates may depend
on, and a dose into a name nothing measures as a hidden dosing compartment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from biotwin.data import Dataset
from biotwin.errors import DataError
from biotwin.experiment import ACTIONS, infusion_signals, records


def with_design(dataset: Dataset, source: str | Path | Mapping[str, Any]) -> Dataset:
    """``dataset`` with each experiment's doses and inputs from a design file (or its parsed content)."""
    from biotwin.io.files import read_yaml

    where = str(source) if not isinstance(source, Mapping) else "the design"
    content: Any = source if isinstance(source, Mapping) else read_yaml(source, "design file")
    if not isinstance(content, Mapping):
        raise DataError(f"{where}: a design file is a mapping with {', '.join(ACTIONS)} and/or 'experiments'")
    unknown = sorted(set(content) - {*ACTIONS, "experiments"})
    if unknown:
        raise DataError(f"{where}: unknown setting '{unknown[0]}'; use {', '.join(ACTIONS)} and 'experiments'")
    own = content.get("experiments") or {}
    if not isinstance(own, Mapping):
        raise DataError(f"{where}: 'experiments' must map experiment names to their doses, infusions and inputs")
    stray = [name for name in own if str(name) not in dataset.names]
    if stray:
        raise DataError(f"{where}: experiment '{stray[0]}' is not in the data (its experiments: {', '.join(dataset.names)})")
    experiments = []
    for experiment in dataset:
        entry = own.get(experiment.name) or {}
        if not isinstance(entry, Mapping) or set(entry) - set(ACTIONS):
            raise DataError(f"{where}: experiment '{experiment.name}' takes {', '.join(ACTIONS)}; got {entry!r}")
        merged = {**{k: v for k, v in content.items() if k in ACTIONS}, **entry}
        label = f"{where}, experiment '{experiment.name}'"
        doses = tuple(b for dosing in records(merged, "doses", label) for b in dosing.boluses())
        inputs = (*records(merged, "inputs", label), *infusion_signals(records(merged, "infusions", label)))
        experiments.append(experiment.replace(doses=(*experiment.doses, *doses), inputs=(*experiment.inputs, *inputs)))
    return replace(dataset, experiments=tuple(experiments))

"""Saving and loading a twin as a folder: ``twin.json``, ``model.txt`` and ``data.csv``.

Loading also reads what calibration added to the folder: the best fit (``fit.json``) and the
posterior draws (``posterior.parquet``).

The folder is written next to its destination and renamed into place, so a failure never leaves
a half-written twin; an existing twin folder is replaced as a whole.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from biotwin import __version__
from biotwin.data import Bolus, Dataset, Input
from biotwin.errors import DataError
from biotwin.io.csv import read_csv
from biotwin.io.results import load_fit_values, load_posterior
from biotwin.likelihood import NOISE_PREFIX
from biotwin.model import Model
from biotwin.twin import Twin

FORMAT = 1


def save_twin(twin: Twin, folder: str | Path) -> Path:
    """Write ``twin`` to ``folder`` (created, or replaced when it holds a twin)."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not (folder / "twin.json").exists())):
        raise DataError(f"{folder} exists and is not a twin folder; choose a new folder for -o")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model_text = twin.model.to_text()
        (staging / "model.txt").write_text(model_text + "\n", encoding="utf-8")
        twin.dataset.to_frame().to_csv(staging / "data.csv", index=False)
        record = {
            "format": FORMAT,
            "biotwin": __version__,
            "model": model_text,
            "states": list(twin.model.states),
            "parameters": {p.name: p.value for p in twin.model.parameters},
            "observables": {o.name: str(o.expr) for o in twin.model.observables},
            "initial": {name: dict(values) for name, values in twin.initial.items()},
            "data": {
                "source": twin.dataset.source, "time_unit": twin.dataset.time_unit,
                "observables": list(twin.dataset.observables),
                # What was done in each experiment: data.csv holds only the measurements.
                "experiments": {
                    e.name: {
                        "t0": e.start,
                        "doses": [[d.time, d.state, d.amount] for d in e.doses],
                        "inputs": [[u.name, list(u.times), list(u.levels)] for u in e.inputs],
                        "overrides": dict(e.overrides),
                    }
                    for e in twin.dataset
                },
            },
            "discovery": twin.discovery,
        }
        (staging / "twin.json").write_text(json.dumps(record, indent=2, default=float) + "\n", encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def load_twin(folder: str | Path) -> Twin:
    """Read a twin folder written by :func:`save_twin`."""
    folder = Path(folder)
    record_path = folder / "twin.json"
    if not record_path.is_file():
        raise DataError(f"{folder}: not a twin folder (no twin.json); create one with 'biotwin discover ... -o {folder}'")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{record_path}: not valid JSON ({error})") from None
    if record.get("format") != FORMAT:
        raise DataError(f"{record_path}: twin format {record.get('format')} is not {FORMAT}; rebuild the twin")
    model = Model.from_text(record["model"], name=folder.name)
    measured = read_csv(folder / "data.csv")
    designs = record["data"]["experiments"]
    dataset = Dataset(
        tuple(
            e.replace(
                t0=designs[e.name]["t0"],
                doses=tuple(Bolus(*d) for d in designs[e.name]["doses"]),
                inputs=tuple(Input(name, tuple(times), tuple(levels)) for name, times, levels in designs[e.name]["inputs"]),
                overrides=designs[e.name]["overrides"],
            )
            for e in measured
        ),
        source=record["data"]["source"], time_unit=record["data"]["time_unit"],
    )
    fit = load_fit_values(folder)
    posterior = load_posterior(folder)
    known = set(model.parameter_names)
    for what, names in (("fit.json", fit), ("posterior.parquet", posterior.names if posterior else ())):
        foreign = [n for n in names if n not in known and not n.startswith(NOISE_PREFIX)]
        if foreign:
            raise DataError(f"{folder / what} estimates '{foreign[0]}', which is not a parameter of the twin's model; "
                            f"it belongs to another model: delete it and calibrate again")
    return Twin(model=model, dataset=dataset, discovery=record.get("discovery", {}), initial=record.get("initial", {}),
                fit=fit, posterior=posterior)

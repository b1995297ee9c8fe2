"""What the calibration commands work on: a PEtab problem, or a model with measurements and a noise model.

``biotwin fit``, ``profile`` and ``infer`` take a *target*: a PEtab YAML file, a twin folder
(its ``model.txt`` and ``data.csv``), or a model file given with a CSV of measurements. A
:class:`Problem` names the files and the noise model and builds the compiled
:class:`~biotwin.objective.Objective` from them. It holds only paths and words, so it can be
sent to worker processes, which build their own objective (compiled JAX programs do not cross
processes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from biotwin.data import Dataset
from biotwin.errors import DataError
from biotwin.model import Model
from biotwin.objective import Objective

#: Suffixes of PEtab problem files.
PETAB_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Problem:
    """A calibration problem by its files: ``petab`` (a YAML file) or ``model`` + ``data`` (CSV).

    ``noise`` is the noise model of CSV data (``normal``, ``lognormal`` or ``proportional``,
    with one estimated noise scale per observable); a PEtab problem carries its own.
    """

    name: str
    petab: Path | None = None
    model_file: Path | None = None
    data: Path | None = None
    noise: str = "normal"
    twin: Path | None = None

    def model(self) -> Model:
        if self.petab is not None:
            from biotwin.io.petab import load_petab

            return load_petab(self.petab).model
        return Model.from_file(str(self.model_file))

    def dataset(self) -> Dataset:
        if self.petab is not None:
            from biotwin.io.petab import load_petab

            return load_petab(self.petab).dataset()
        if self.twin is not None:
            # The twin's record holds what was done in each experiment (doses, inputs, overrides).
            from biotwin.io.twin import load_twin

            return load_twin(self.twin).dataset
        from biotwin.io.csv import read_csv

        return read_csv(self.data)

    def objective(self) -> Objective:
        """The compiled negative log-likelihood of the problem."""
        if self.petab is not None:
            from biotwin.io.petab import load_petab

            return load_petab(self.petab).objective()
        from biotwin.likelihood import dataset_objective

        return dataset_objective(self.model(), self.dataset(), noise=self.noise)


def problem(target: str | Path, data: str | Path | None = None, *, noise: str = "normal") -> Problem:
    """The problem a command names: a PEtab YAML, a twin folder, or a model file with ``data``."""
    from biotwin.likelihood import NOISE_MODELS

    target = Path(target)
    if noise not in NOISE_MODELS:
        raise DataError(f"unknown noise model '{noise}'; use one of {', '.join(NOISE_MODELS)}")
    if not target.exists():
        raise DataError(f"{target}: no such file or folder; give a PEtab YAML, a twin folder, or a model file with a CSV")
    if target.is_dir():
        if data is not None:
            raise DataError(f"{target} is a twin folder, which holds its own data; leave out {data}")
        model_file, data_file = target / "model.txt", target / "data.csv"
        missing = [p.name for p in (model_file, data_file) if not p.is_file()]
        if missing:
            raise DataError(f"{target}: not a twin folder (no {missing[0]}); create one with 'biotwin discover DATA.csv -o {target}'")
        twin = target if (target / "twin.json").is_file() else None
        return Problem(target.name, model_file=model_file, data=data_file, noise=noise, twin=twin)
    if target.suffix.lower() in PETAB_SUFFIXES:
        if data is not None:
            raise DataError(f"{target} is a PEtab problem, which holds its own measurements; leave out {data}")
        return Problem(target.stem, petab=target)
    if data is None:
        raise DataError(f"{target} is a model file: give the measurements too, e.g. 'biotwin fit {target} data.csv'")
    data = Path(data)
    if not data.is_file():
        raise DataError(f"{data}: no such data file")
    return Problem(target.stem, model_file=target, data=data, noise=noise)

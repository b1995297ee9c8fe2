"""biotwin: digital twins of biological systems from time-course data.

The public API; everything else may change. Heavy modules (JAX, diffrax) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "BiotwinError": "biotwin.errors",
    "DataError": "biotwin.errors",
    "ModelError": "biotwin.errors",
    "SolverError": "biotwin.errors",
    "Dataset": "biotwin.data",
    "Experiment": "biotwin.data",
    "Bolus": "biotwin.data",
    "Input": "biotwin.data",
    "Model": "biotwin.model",
    "Parameter": "biotwin.model",
    "Observable": "biotwin.model",
    "Solution": "biotwin.simulate",
    "simulate": "biotwin.simulate",
    "simulate_dataset": "biotwin.simulate",
    "read_csv": "biotwin.io.csv",
    "agreement": "biotwin.compare",
    "fit": "biotwin.fit",
    "multistart": "biotwin.fit",
    "Calibration": "biotwin.fit",
    "profile": "biotwin.identify",
    "Profiles": "biotwin.identify",
    "Objective": "biotwin.objective",
    "dataset_objective": "biotwin.likelihood",
    "load_petab": "biotwin.io.petab",
    "write_petab": "biotwin.io.petab",
    "read_sbml": "biotwin.io.sbml",
    "write_sbml": "biotwin.io.sbml",
    "write_report": "biotwin.report.html",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from biotwin.compare import agreement
    from biotwin.data import Bolus, Dataset, Experiment, Input
    from biotwin.errors import BiotwinError, DataError, ModelError, SolverError
    from biotwin.fit import Calibration, fit, multistart
    from biotwin.identify import Profiles, profile
    from biotwin.io.petab import load_petab, write_petab
    from biotwin.io.sbml import read_sbml, write_sbml
    from biotwin.likelihood import dataset_objective
    from biotwin.objective import Objective
    from biotwin.io.csv import read_csv
    from biotwin.model import Model, Observable, Parameter
    from biotwin.report.html import write_report
    from biotwin.simulate import Solution, simulate, simulate_dataset


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'biotwin' has no attribute {name!r}")

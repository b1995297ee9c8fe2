"""What every benchmark shares: the machine it ran on (printed before its results: timings mean little
without it), its console, how it prints times and compares trajectories, and where the PEtab problems lie."""

from __future__ import annotations

import importlib
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: The shared PEtab problems (``../shared/data/petab``, or ``$BIOTWIN_SHARED_DATA/petab``).
PETAB = Path(os.environ.get("BIOTWIN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "petab"
PETAB_PROBLEMS = ("Boehm_JProteomeRes2014", "Crauste_CellSystems2017", "Elowitz_Nature2000", "Perelson_Science1996")


def machine_info(packages: Sequence[str] = ()) -> list[tuple[str, str]]:
    """Platform, processor, usable CPUs, load average, JAX's backend and the versions of ``packages``."""
    import jax

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    rows = [
        ("platform", platform.platform()),
        ("processor", platform.processor() or platform.machine()),
        ("python", platform.python_version()),
        ("cpu count", f"{os.cpu_count()} (usable by this process: {usable})"),
        ("load average (1, 5, 15 min)", load),
        ("jax default backend", f"{jax.default_backend()} ({', '.join(str(d) for d in jax.devices())})"),
    ]
    return rows + [(name, _version(name)) for name in ("jax", *packages)]


def _version(package: str) -> str:
    """A package's version: its ``__version__``, else its distribution's (pyoperon has no ``__version__``)."""
    from importlib.metadata import version

    return str(getattr(importlib.import_module(package), "__version__", None) or version(package))


def print_machine(console: Any, packages: Sequence[str] = ()) -> None:
    """Print :func:`machine_info` as a two-column Rich table."""
    from rich.table import Table

    info = Table(title="Machine", show_header=False)
    info.add_column(style="bold")
    info.add_column()
    for key, value in machine_info(packages):
        info.add_row(key, value)
    console.print(info)


def wide_console(width: int) -> Any:
    """A Rich console at least ``width`` columns wide when the output is not a terminal (a log file),
    so that a benchmark's table is not folded there."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, width))


def require_at_least_one(parser: Any, args: Any, names: Sequence[str]) -> None:
    """Stop with argparse's usage error when any of the options ``names`` is below 1."""
    for name in names:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")


def fmt_time(seconds: float) -> str:
    """A duration in s, ms or µs."""
    if seconds >= 1.0:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds * 1e6:.1f} µs"


def max_relative_error(values: Any, reference: Any) -> float:
    """max |values - reference| / |reference| over all entries."""
    import numpy as np

    values, reference = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    denominator = np.maximum(np.abs(reference), np.finfo(float).tiny)
    return float(np.max(np.abs(values - reference) / denominator))


#: The solver the calibration benchmarks fit with unless told otherwise: a stiff one for every start,
#: as AMICI's CVODES BDF, and the default of biotwin's PEtab objectives.
CALIBRATION_METHOD = "rodas5"


def import_petab_libraries() -> None:
    """Import everything biotwin's PEtab calibration loads on first use, so that a timed run starts
    after the imports, as the peer's clock starts after ``import pypesto.petab`` (which loads
    AMICI, PEtab and SymPy): biotwin imports PEtab, libsbml, SymPy, JAX and diffrax lazily, and
    without this the first problem of a run paid about 5 s of imports that no later one paid."""
    import diffrax  # noqa: F401
    import fides  # noqa: F401
    import jax  # noqa: F401
    import libsbml  # noqa: F401
    import pandas  # noqa: F401
    import petab.v1  # noqa: F401
    import petab.v1.math.printer  # noqa: F401
    import petab.v1.priors  # noqa: F401
    import yaml  # noqa: F401

    import biotwin._jax  # noqa: F401
    import biotwin.fit  # noqa: F401
    import biotwin.io.petab  # noqa: F401
    import biotwin.optimise  # noqa: F401


def petab_objective(name: str, method: str = CALIBRATION_METHOD) -> Any:
    """The objective of a shared PEtab problem as the calibration benchmarks fit it: a stiff solver for
    every start (the Rosenbrock method Rodas5 by default; ``kvaerno5`` for the implicit Runge-Kutta
    method), biotwin's default tolerances and step budget."""
    from biotwin.io.petab import load_petab

    return load_petab(PETAB / name / f"{name}.yaml").objective(method=method)

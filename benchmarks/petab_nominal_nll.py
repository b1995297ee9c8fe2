"""AMICI's negative log-likelihood at the nominal parameters of the shared PEtab problems.

Run with the peer virtual environment (AMICI and pyPESTO are not dependencies of biotwin)::

    python3.11 -m venv .peer-venv && .peer-venv/bin/pip install amici pypesto petab
    PATH=$PWD/.peer-venv/bin:$PATH .peer-venv/bin/python benchmarks/petab_nominal_nll.py [--time]

It writes ``tests/data/petab_amici_nll.json``: problem -> -llh from ``amici.simulate_petab`` at
the nominal values of the parameter table (rtol 1e-12, atol 1e-14, so that the reference is
accurate to far below the 1e-6 tests/test_petab.py asks of biotwin), with the AMICI version and
this command as provenance. With ``--time`` it also prints AMICI's time per NLL and per
gradient (forward sensitivities, AMICI's default tolerances rtol 1e-8, atol 1e-16), to compare
with ``benchmarks/petab_objective_speed.py``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PETAB = Path(os.environ.get("BIOTWIN_SHARED_DATA", ROOT.parent / "shared" / "data")) / "petab"
OUTPUT = ROOT / "tests" / "data" / "petab_amici_nll.json"
PROBLEMS = ("Boehm_JProteomeRes2014", "Crauste_CellSystems2017", "Elowitz_Nature2000", "Perelson_Science1996")
BUILD = Path(os.environ.get("AMICI_MODELS", "/tmp/amici_models"))


def amici_problem(name: str):
    import petab.v1 as petab
    from amici.importers.petab.v1 import import_petab_problem

    problem = petab.Problem.from_yaml(str(PETAB / name / f"{name}.yaml"))
    model = import_petab_problem(problem, output_dir=str(BUILD / name), model_name=name)
    return problem, model


def nominal_nll(problem, model, rtol: float, atol: float, sensitivities: bool = False) -> tuple[float, float]:
    """(-llh, seconds) at the nominal parameters."""
    import amici.sim.sundials as sundials
    from amici.sim.sundials.petab.v1 import LLH, simulate_petab

    solver = model.create_solver() if hasattr(model, "create_solver") else model.getSolver()
    _set(solver, "relative_tolerance", "setRelativeTolerance", rtol)
    _set(solver, "absolute_tolerance", "setAbsoluteTolerance", atol)
    _set(solver, "max_steps", "setMaxSteps", 10**6)
    if sensitivities:
        _set(solver, "sensitivity_order", "setSensitivityOrder", sundials.SensitivityOrder.first)
        _set(solver, "sensitivity_method", "setSensitivityMethod", sundials.SensitivityMethod.forward)
    start = time.perf_counter()
    result = simulate_petab(problem, amici_model=model, solver=solver)
    return -float(result[LLH]), time.perf_counter() - start


def _set(solver, attribute: str, setter: str, value) -> None:
    name = "set_" + attribute
    if hasattr(solver, name):
        getattr(solver, name)(value)
    else:
        getattr(solver, setter)(value)


def main() -> None:
    import amici

    timing = "--time" in sys.argv
    values: dict[str, float] = {}
    for name in PROBLEMS:
        problem, model = amici_problem(name)
        values[name], _ = nominal_nll(problem, model, 1e-12, 1e-14)
        line = f"{name:28s} nll {values[name]:.12g}"
        if timing:
            repeats = 20
            nll_time = min(nominal_nll(problem, model, 1e-8, 1e-16)[1] for _ in range(repeats))
            grad_time = min(nominal_nll(problem, model, 1e-8, 1e-16, sensitivities=True)[1] for _ in range(repeats))
            line += f"   {1e3 * nll_time:8.2f} ms/nll   {1e3 * grad_time:8.2f} ms/gradient"
        print(line, flush=True)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps({
        "description": "AMICI negative log-likelihood at the nominal parameters of each PEtab problem "
                       "(rtol 1e-12, atol 1e-14); reference for tests/test_petab.py",
        "amici_version": amici.__version__,
        "command": "PATH=$PWD/.peer-venv/bin:$PATH .peer-venv/bin/python benchmarks/petab_nominal_nll.py",
        "nll": values,
    }, indent=2) + "\n")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

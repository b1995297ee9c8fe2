"""The shared PEtab problems' NLL at the nominal parameters, and its cost, in AMICI and in biotwin.

AMICI and pyPESTO are not dependencies of biotwin and live in their own virtual environment::

    python3.11 -m venv .peer-venv && .peer-venv/bin/pip install amici pypesto petab
    PATH=$PWD/.peer-venv/bin:$PATH .peer-venv/bin/python benchmarks/petab_nominal_nll.py [--time]

Run that way, it writes ``tests/data/petab_amici_nll.json``: problem -> -llh from
``simulate_petab`` at the nominal values of the parameter table (rtol 1e-12, atol 1e-14, far
below the 1e-6 that tests/test_petab.py asks of biotwin), with the AMICI version and this
command as provenance. With ``--time`` it also prints the time per NLL and per gradient of
pyPESTO's AMICI objective (forward sensitivities; rtol 1e-8, atol 1e-10).

Run with biotwin's environment (``.venv/bin/python benchmarks/petab_nominal_nll.py``), it prints
biotwin's NLL at nominal (rtol 1e-10) against the stored AMICI values, then its compile times and
times per NLL and per gradient (rtol 1e-8, atol 1e-10), the best of 20 calls after compilation.
The two environments cannot share a process, so the two tables come from two runs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from machine import PETAB, PETAB_PROBLEMS

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "tests" / "data" / "petab_amici_nll.json"
BUILD = Path(os.environ.get("AMICI_MODELS", "/tmp/amici_models"))
REPEATS = 20
RTOL, ATOL = 1e-8, 1e-10


def _best(function, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


# ---------------------------------------------------------------------- AMICI (peer environment)
def _set(solver, attribute: str, setter: str, value) -> None:
    name = "set_" + attribute
    getattr(solver, name if hasattr(solver, name) else setter)(value)


def amici_reference(timing: bool) -> None:
    import amici
    import petab.v1 as petab
    from amici.importers.petab.v1 import import_petab_problem
    from amici.sim.sundials.petab.v1 import LLH, simulate_petab

    values: dict[str, float] = {}
    for name in PETAB_PROBLEMS:
        problem = petab.Problem.from_yaml(str(PETAB / name / f"{name}.yaml"))
        model = import_petab_problem(problem, output_dir=str(BUILD / name), model_name=name)
        solver = model.create_solver() if hasattr(model, "create_solver") else model.getSolver()
        _set(solver, "relative_tolerance", "setRelativeTolerance", 1e-12)
        _set(solver, "absolute_tolerance", "setAbsoluteTolerance", 1e-14)
        _set(solver, "max_steps", "setMaxSteps", 10**6)
        values[name] = -float(simulate_petab(problem, amici_model=model, solver=solver)[LLH])
        line = f"{name:28s} AMICI nll {values[name]:.12g}"
        if timing:
            line += "   " + pypesto_timing(problem, name)
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


def pypesto_timing(problem, name: str) -> str:
    import numpy as np
    from pypesto.petab import PetabImporter

    importer = PetabImporter(problem, output_folder=str(BUILD / f"{name}_pypesto"), model_name=f"{name}_pypesto")
    objective = importer.create_problem().objective
    solver = objective.amici_solver
    _set(solver, "relative_tolerance", "setRelativeTolerance", RTOL)
    _set(solver, "absolute_tolerance", "setAbsoluteTolerance", ATOL)
    x = np.asarray(problem.x_nominal_free_scaled)
    value = objective(x)
    nll = _best(lambda: objective(x))
    gradient = _best(lambda: objective(x, sensi_orders=(0, 1)))
    return f"pyPESTO+AMICI nll {value:.10g}  {1e3 * nll:8.3f} ms/nll  {1e3 * gradient:8.3f} ms/gradient"


# ---------------------------------------------------------------------- biotwin (main environment)
def biotwin_timing() -> None:
    import jax

    from biotwin.io.petab import load_petab

    reference = json.loads(OUTPUT.read_text())["nll"]
    for name in PETAB_PROBLEMS:
        problem = load_petab(PETAB / name / f"{name}.yaml")
        exact = problem.objective(rtol=1e-10, atol=1e-12)
        value = float(exact.nll(exact.nominal))
        difference = abs(value - reference[name]) / abs(reference[name])
        start = time.perf_counter()
        objective = problem.objective(rtol=RTOL, atol=ATOL)
        x = objective.nominal
        nll = objective.nll
        gradient = jax.jit(jax.value_and_grad(objective.nll))
        nll(x).block_until_ready()
        compiled_nll = time.perf_counter() - start
        jax.block_until_ready(gradient(x))
        compiled_gradient = time.perf_counter() - start - compiled_nll
        per_nll = _best(lambda: nll(x).block_until_ready())
        per_gradient = _best(lambda: jax.block_until_ready(gradient(x)))
        print(
            f"{name:28s} biotwin nll {value:.12g} (AMICI {reference[name]:.12g}, rel. diff {difference:.1e})  "
            f"compile {compiled_nll:5.1f} s + {compiled_gradient:5.1f} s  {1e3 * per_nll:8.3f} ms/nll  "
            f"{1e3 * per_gradient:8.3f} ms/gradient ({objective.size} parameters, {len(objective.measurements)} data)",
            flush=True,
        )


def main() -> None:
    try:
        import amici  # noqa: F401
    except ImportError:
        biotwin_timing()
    else:
        amici_reference("--time" in sys.argv)


if __name__ == "__main__":
    main()

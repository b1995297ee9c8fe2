"""Does biotwin's multi-start reach the NLL of the published (nominal) parameters of each PEtab problem?

The issue's target: "multi-start finds an NLL at least as good as the nominal one". With 20
starts (``calibrate_vs_pypesto.py``) neither biotwin nor pyPESTO + AMICI reaches it on Boehm,
Crauste or Elowitz: their nominal optima have few or narrow basins of attraction (Boehm's lies on
two parameter bounds). This benchmark runs :func:`biotwin.fit.multistart` with more Sobol starts
(``machine.petab_objective``, the objective of ``calibrate_vs_pypesto.py``,
seed 0, so its first 20 starts are that benchmark's) and prints, per problem, the nominal NLL,
the best NLL found, how many starts reached the nominal NLL (within 1e-3, the optimiser's
tolerance is 1e-6) and the index of the first one, and the time.

    .venv/bin/python benchmarks/multistart_nominal.py                          # 4 problems, 100 starts
    .venv/bin/python benchmarks/multistart_nominal.py --problems Boehm_JProteomeRes2014 --starts 50
    .venv/bin/python benchmarks/multistart_nominal.py --starts 20 --refine      # then kicks and profile walks (biotwin.refine)

Starts run one after another in this process; ``--time-limit`` seconds per problem (default
900) stops starting new ones, and the table says how many ran.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from machine import PETAB_PROBLEMS, import_petab_libraries, petab_objective, print_machine, wide_console

#: A start within this of the nominal NLL has reached it.
REACHED_WITHIN = 1e-3


def run(name: str, starts: int, time_limit: float, refine: bool = False) -> dict:
    from biotwin.fit import multistart
    from biotwin.refine import refine as kicked

    import_petab_libraries()  # the time is the fit's, not the imports'
    began = time.perf_counter()
    objective = petab_objective(name)
    calibration = multistart(objective, starts=starts, seed=0, time_limit=time_limit)
    nominal = calibration.nominal_nll  # by the fit's compiled program, not an uncompiled solve
    by_index = sorted(calibration.starts, key=lambda s: s.index)
    nll = np.array([s.nll for s in by_index])
    reached = np.flatnonzero(nll <= nominal + REACHED_WITHIN)
    refined = kicked(objective, calibration) if refine else calibration
    return {"name": name, "nominal": nominal, "best": calibration.best_nll, "ran": len(by_index),
            "reached": len(reached), "first": int(reached[0]) if reached.size else None,
            "first_at": float(by_index[reached[0]].finished) if reached.size else math.nan,
            "refined": refined.best_nll if refine else math.nan,
            "refine_seconds": refined.seconds - calibration.seconds, "seconds": time.perf_counter() - began}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=100)
    parser.add_argument("--problems", nargs="+", default=PETAB_PROBLEMS, choices=PETAB_PROBLEMS, metavar="NAME")
    parser.add_argument("--time-limit", type=float, default=900.0, help="seconds per problem (default 900)")
    parser.add_argument("--refine", action="store_true",
                        help="after the starts, refine the best fit by kicks to the bounds and profile walks (biotwin.refine)")
    args = parser.parse_args()

    from rich.table import Table

    console = wide_console(160)
    print_machine(console, ("fides", "diffrax"))
    table = Table(title=f"biotwin multi-start, up to {args.starts} Sobol starts (seed 0), against the nominal NLL")
    for column in ("problem", "nominal NLL", "best NLL", "best - nominal", "starts run", "reached nominal",
                   "first reaching (index)", "it finished at \\[s]", "refined NLL", "refined - nominal",
                   "refining \\[s]", "total \\[s]"):
        table.add_column(column, justify="left" if column == "problem" else "right")
    for name in args.problems:
        console.print(f"[bold]{name}[/]: {args.starts} starts ...")
        row = run(name, args.starts, args.time_limit, args.refine)
        table.add_row(name.split("_")[0], f"{row['nominal']:.4f}", f"{row['best']:.4f}",
                      f"{row['best'] - row['nominal']:+.2e}", str(row["ran"]), str(row["reached"]),
                      "-" if row["first"] is None else str(row["first"]), f"{row['first_at']:.1f}",
                      f"{row['refined']:.4f}", f"{row['refined'] - row['nominal']:+.2e}",
                      f"{row['refine_seconds']:.1f}", f"{row['seconds']:.1f}")
    console.print(table)
    console.print(f"Reached: NLL within {REACHED_WITHIN} of the nominal NLL. Times include compilation. Refined: "
                  "the best start after rounds of kicks to the bounds and profile walks (--refine; nan without).")


if __name__ == "__main__":
    main()

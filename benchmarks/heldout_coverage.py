"""Held-out interventions of the bio suite: do a twin's 90% predictive bands cover about 90% of the points?

For every system of the bio suite (:mod:`biotwin.bench.biology`), a twin is calibrated on the
training experiments only and then asked to predict the held-out intervention (a knock-out, a new
dose or schedule, a new input level) that it never saw:

1. data: the training and held-out experiments, simulated from the true parameters, with 5%
   log-normal noise (``lognormal=0.05``, seed 0); the initial states of the designed experiments
   are known (``reveal_initial``), as they are for a planned experiment;
2. the twin: the system's model *structure* with unknown parameters within the system's bounds,
   ``dataset_objective(noise="lognormal")`` (one estimated noise scale per observable),
   :func:`biotwin.fit.multistart` (``--starts`` Sobol starts), then :func:`biotwin.infer.infer`
   (4 chains from the best fits, ``--warmup`` and ``--samples`` draws per chain);
3. the forecast: posterior predictive replicates of every held-out measurement (parameters from
   the posterior, then log-normal observation noise with the sampled noise scale), and the share
   of held-out measurements inside their central 90% band.

A calibrated twin covers close to 90%; the issue's target is between 80% and 97% over all
systems. The model structure is the true one: this measures the uncertainty quantification, not
discovery (whose structural errors the bio-suite discovery benchmark measures). Results are
appended to ``--out`` (CSV, one row per system and seed) as they come, so an interrupted run resumes.

The held-out points of one system are not independent: they share the twin's parameter error
(the repressilator's cI knock-out is read almost entirely through the leak alpha0), so one
unlucky noise draw moves a whole system's coverage (39.7% with seed 0, where the truth lies
3.7 standard errors from the estimate of alpha0). ``--seeds 0,1,2`` draws several data sets per
system; the summary pools them.

    .venv/bin/python benchmarks/heldout_coverage.py                  # all systems
    .venv/bin/python benchmarks/heldout_coverage.py --systems sir_epidemic,michaelis_menten --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from machine import print_machine, wide_console

LEVEL = 0.9


def evaluate(system, *, starts: int, warmup: int, samples: int, draws: int, seed: int, max_tree_depth: int) -> dict:
    from biotwin.bench.corrupt import corrupt
    from biotwin.data import Dataset
    from biotwin.fit import multistart
    from biotwin.infer import infer, predictive
    from biotwin.likelihood import dataset_objective
    from biotwin.progress import rich_progress

    began = time.perf_counter()
    clean = system.dataset(system.designs, reveal_initial=True)
    noisy = corrupt(clean, "lognormal=0.05", seed=seed)
    # A value of exactly 0 (a product before the reaction starts) cannot carry log-normal noise;
    # it says nothing the known initial state does not, so it is left out.
    noisy = Dataset(tuple(e.replace(values=np.where(e.values > 0, e.values, np.nan)) for e in noisy),
                    source=noisy.source, time_unit=noisy.time_unit)
    held = {d.name for d in system.held_out}
    training = Dataset(tuple(e for e in noisy if e.name not in held), source=noisy.source, time_unit=noisy.time_unit)
    heldout = Dataset(tuple(e for e in noisy if e.name in held), source=noisy.source, time_unit=noisy.time_unit)
    objective = dataset_objective(system.model, training, noise="lognormal")
    with rich_progress(description=f"{system.name}: multi-start") as progress:
        calibration = multistart(objective, starts=starts, seed=seed, progress=progress)
    fitted = time.perf_counter() - began
    best = calibration.best_nll
    good = np.array([s.x for s in calibration.starts if np.isfinite(s.nll) and s.nll <= best + 1.0])
    # Sampling runs for hours on the Goodwin oscillator and the MAPK cascade: the bar shows the draws
    # and the leapfrog steps each takes.
    with rich_progress(description=f"{system.name}: NUTS") as progress:
        posterior = infer(objective, good[:8], chains=4, warmup=warmup, samples=samples, seed=seed,
                          max_tree_depth=max_tree_depth, progress=progress)
    forecast_objective = dataset_objective(system.model, heldout, noise="lognormal")
    bands = predictive(posterior, forecast_objective, draws=draws, seed=seed, level=LEVEL)
    return {
        "system": system.name,
        "seed": seed,
        "heldout_points": len(bands.measurements),
        "coverage": bands.coverage,
        "training_points": len(objective.measurements),
        "parameters": objective.size,
        "best_nll": best,
        "max_rhat": posterior.max_rhat,
        "min_ess": posterior.min_ess,
        "divergences": posterior.divergences,
        "max_tree_depth": posterior.max_tree_depth,
        "at_max_depth": posterior.at_max_depth,
        "fit_seconds": fitted,
        "seconds": time.perf_counter() - began,
    }


def main() -> None:
    from biotwin.bench.systems import suite
    from biotwin.infer import DEFAULT_MAX_TREE_DEPTH

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default="", help="comma-separated system names (default: all)")
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--max-tree-depth", type=int, default=DEFAULT_MAX_TREE_DEPTH,
                        help="NUTS tree depth cap (2^depth leapfrog steps per draw at most); a lower cap bounds the "
                        "cost on posteriors with long ridges (Goodwin, MAPK), at the price of slower mixing")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds of the noise (one data set each)")
    parser.add_argument("--out", type=Path, default=Path("bench-results/heldout_coverage.csv"))
    args = parser.parse_args()
    print_machine(wide_console(150))
    systems = suite("bio")
    if args.systems:
        wanted = args.systems.split(",")
        systems = tuple(s for s in systems if s.name in wanted)
    seeds = [int(s) for s in args.seeds.split(",")]
    done = pd.read_csv(args.out) if args.out.is_file() else pd.DataFrame(columns=["system", "seed"])
    # Rows written before seeds were recorded are seed 0.
    done["seed"] = done["seed"].fillna(0).astype(int) if "seed" in done else 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for system in systems:
        for seed in seeds:
            if ((done["system"] == system.name) & (done["seed"] == seed)).any():
                continue
            try:
                row = evaluate(system, starts=args.starts, warmup=args.warmup, samples=args.samples, draws=args.draws,
                               seed=seed, max_tree_depth=args.max_tree_depth)
            except Exception as error:  # a failure is a result too: record it and go on
                row = {"system": system.name, "seed": seed, "error": f"{type(error).__name__}: {error}"[:300]}
            print(row, flush=True)
            done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
            done.to_csv(args.out, index=False)
    table = done[done["system"].isin([s.name for s in systems]) & done["seed"].isin(seeds)]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False))
    if "coverage" in table:
        covered = table.dropna(subset=["coverage"])
        inside_points = covered["coverage"] * covered["heldout_points"]
        pooled = float(inside_points.sum() / covered["heldout_points"].sum())
        # Per system, its seeds pooled: the share of all its held-out points inside their bands.
        per_system = inside_points.groupby(covered["system"]).sum() / covered["heldout_points"].groupby(covered["system"]).sum()
        inside = int(np.sum((per_system >= 0.8) & (per_system <= 0.97)))
        print(f"\npooled coverage of the {LEVEL:.0%} bands over {len(per_system)} systems ({len(covered)} data sets): "
              f"{pooled:.1%} (target 80-97%); systems within 80-97%: {inside}/{len(per_system)}; "
              f"failed data sets: {len(table) - len(covered)}")


if __name__ == "__main__":
    main()

"""Running benchmark sweeps: every system x corruption x method x seed, resumable, in parallel.

A *cell* trains one method on one system's corrupted training data and scores what it found.
Each cell runs in its own Python process (``python -m biotwin.bench.runner``), so that a cell
that crashes (a segfault in a C++ extension) or runs past its time limit is killed and recorded
with its reason while the sweep goes on. Cells run on local threads that wait on those
processes (``jobs`` at a time), or on a Dask cluster when a scheduler address is given; either
way only this process writes to the results store.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np

from biotwin.bench.store import CellResult, ResultStore

DEFAULT_TIME_LIMIT = 300.0


@dataclass(frozen=True)
class Cell:
    """One benchmark cell: a method on a system's training data under a corruption and a seed."""

    suite: str
    system: str
    corruption: str
    method: str
    seed: int

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        return (self.suite, self.system, self.corruption, self.method, self.seed)


def grid(
    suite_name: str, systems: Sequence[str], corruptions: Sequence[str], methods: Sequence[str], seeds: Sequence[int]
) -> list[Cell]:
    """All cells of a sweep, after checking every name (an unknown one raises at once, not mid-sweep)."""
    from biotwin.bench.corrupt import Pipeline
    from biotwin.bench.methods import method
    from biotwin.bench.systems import suite, system

    chosen = [s.name for s in suite(suite_name)] if not systems else [system(suite_name, n).name for n in systems]
    labels = [Pipeline.parse(c).label for c in corruptions]
    for name in methods:
        method(name)
    return [Cell(suite_name, s, c, m, seed) for s in chosen for c in labels for m in methods for seed in seeds]


def run_cell(cell: Cell) -> CellResult:
    """Train and score one cell in this process."""
    from biotwin.bench import metrics
    from biotwin.bench.corrupt import corrupt
    from biotwin.bench.methods import method
    from biotwin.bench.systems import system
    from biotwin.errors import BiotwinError

    truth = system(cell.suite, cell.system)
    start = time.perf_counter()
    try:
        data = corrupt(truth.dataset(reveal_initial=False), cell.corruption, seed=cell.seed)
        peer = method(cell.method)
        # The method's own time: from the corrupted data to the model, imports and truth excluded.
        start = time.perf_counter()
        found = peer.discover(data, seed=cell.seed)
    except Exception as error:  # a peer's failure is a result, recorded with its reason
        kind = "" if isinstance(error, BiotwinError) else f"{type(error).__name__}: "
        return CellResult(*cell.key, status="failed", reason=f"{kind}{error}"[:500],
                          wall_time=time.perf_counter() - start)
    wall_time = time.perf_counter() - start
    model = found.model
    structure = metrics.structure_score(truth.model, model)
    recon = [metrics.design_r2(truth, model, d) for d in truth.training]
    held_out = truth.held_out
    gen = [metrics.design_r2(truth, model, d) for d in held_out]
    nrmse, coverage = [], []
    for design in held_out:
        clean = truth.experiment(design).values
        try:
            nrmse.append(metrics.forecast_nrmse(clean, metrics.simulate_design(truth, model, design)))
        except BiotwinError:
            nrmse.append(math.inf)
        if design.name in found.bands:
            lower, upper = found.bands[design.name]
            coverage.append(metrics.band_coverage(clean, lower, upper))
    return CellResult(
        *cell.key, status="ok",
        equations="\n".join(f"d{s}/dt = {e}" for s, e in zip(model.states, model.rhs)),
        recon_r2=_mean(recon), gen_r2=_mean(gen), precision=structure.precision, recall=structure.recall,
        exact=structure.exact, param_error=metrics.parameter_error(truth.model, model),
        forecast_nrmse=_mean(nrmse), coverage90=_mean(coverage), complexity=metrics.complexity(model),
        wall_time=wall_time,
    )


def _mean(values: list[float]) -> float:
    """Mean over designs; one failed design (R^2 = -inf, NRMSE = inf) makes the whole score fail."""
    return float(np.mean(values)) if values else math.nan


def run_cell_isolated(cell: Cell, time_limit: float = DEFAULT_TIME_LIMIT) -> CellResult:
    """Run one cell in a fresh Python process, killed after ``time_limit`` seconds."""
    environment = {
        **os.environ,
        # One thread per cell: the sweep's parallelism is across cells.
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
        "JAX_PLATFORMS": "cpu", "PYTHONWARNINGS": "ignore",
    }
    start = time.perf_counter()
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "biotwin.bench.runner"], input=json.dumps(cell.__dict__), capture_output=True,
            text=True, timeout=time_limit, env=environment,
        )
    except subprocess.TimeoutExpired:
        return CellResult(*cell.key, status="timeout", reason=f"no result within {time_limit:g} s",
                          wall_time=time.perf_counter() - start)
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        tail = (completed.stderr.strip().splitlines() or [f"exit code {completed.returncode}"])[-1]
        return CellResult(*cell.key, status="failed", reason=f"process died: {tail}"[:500],
                          wall_time=time.perf_counter() - start)
    return CellResult.from_dict(json.loads(lines[-1]))


def sweep(
    cells: Iterable[Cell],
    store: ResultStore,
    *,
    jobs: int = 1,
    time_limit: float = DEFAULT_TIME_LIMIT,
    scheduler: str | None = None,
    on_result: Callable[[CellResult, int, int], None] | None = None,
) -> list[CellResult]:
    """Run every cell not yet in ``store`` and record each result as it arrives.

    ``on_result(result, done, total)`` is called after each cell (for a progress bar).
    ``scheduler`` is a Dask scheduler address (``tcp://HOST:PORT``); without it, cells run on
    ``jobs`` local processes at a time.
    """
    finished = store.finished()
    todo = [c for c in cells if c.key not in finished]
    results: list[CellResult] = []

    def record(result: CellResult) -> None:
        store.add(result)
        results.append(result)
        if on_result is not None:
            on_result(result, len(results), len(todo))

    if not todo:
        return results
    if scheduler is not None:
        from distributed import Client, as_completed as dask_completed

        with Client(scheduler) as client:
            futures = client.map(run_cell_isolated, todo, time_limit=time_limit, pure=False)
            for future in dask_completed(futures):
                record(future.result())
        return results
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        pending: list[Future[CellResult]] = [pool.submit(run_cell_isolated, cell, time_limit) for cell in todo]
        for future in as_completed(pending):
            record(future.result())
    return results


def _main() -> None:
    """Worker entry point: a cell as JSON on stdin, its result as one JSON line on stdout."""
    import warnings

    warnings.filterwarnings("ignore")
    cell = Cell(**json.loads(sys.stdin.read()))
    result = run_cell(cell)
    sys.stdout.write(json.dumps(result.to_dict()) + "\n")


if __name__ == "__main__":
    _main()

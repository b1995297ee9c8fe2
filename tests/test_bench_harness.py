"""The benchmark harness: metrics on hand-made cases, the DuckDB store, resumable sweeps, Dask, errors."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from biotwin.bench import metrics
from biotwin.bench.leaderboard import summary, write_html
from biotwin.bench.runner import Cell, grid, run_cell_isolated, sweep
from biotwin.bench.store import CellResult, ResultStore
from biotwin.errors import DataError
from biotwin.model import Model

RC_CIRCUIT = "odebench_01_rc_circuit"


# ---------------------------------------------------------------------- metrics
def test_trajectory_r2_is_one_for_the_truth_and_minus_infinity_for_a_blow_up():
    truth = np.column_stack([np.linspace(0, 1, 20), np.linspace(1, 3, 20) ** 2])
    assert metrics.trajectory_r2(truth, truth) == 1.0
    shifted = truth + np.array([0.0, 0.1])
    assert 0.9 < metrics.trajectory_r2(truth, shifted) < 1.0
    assert metrics.trajectory_r2(truth, np.full_like(truth, np.inf)) == -math.inf


def test_structure_ignores_constants_and_names_of_parameters():
    truth = Model.from_text("dx/dt = a*x - b*x*y\ndy/dt = -c*y + d*x*y")
    found = Model.from_text("dx/dt = 0.98*x - 0.11*x*y\ndy/dt = -1.4*y + 0.07*y*x")
    score = metrics.structure_score(truth, found)
    assert (score.precision, score.recall, score.exact) == (1.0, 1.0, True)
    extra = Model.from_text("dx/dt = 0.98*x - 0.11*x*y + 0.01*x^2\ndy/dt = -1.4*y")
    score = metrics.structure_score(truth, extra)
    assert score.precision == pytest.approx(3 / 4) and score.recall == pytest.approx(3 / 4) and not score.exact


def test_structure_of_rational_kinetics():
    truth = Model.from_text("dS/dt = -Vmax*S/(Km + S)")
    assert metrics.structure_score(truth, Model.from_text("dS/dt = -0.5*S/(2.1 + S)")).exact
    assert not metrics.structure_score(truth, Model.from_text("dS/dt = -0.5*S^2/(2.1 + S^2)")).exact
    assert not metrics.structure_score(truth, Model.from_text("dS/dt = -0.5*S + 0.1*S^2")).exact


def test_parameter_error_of_shared_terms():
    truth = Model.from_text("dx/dt = a*x - b*x*y\ndy/dt = -c*y\na = 1\nb = 0.1\nc = 2")
    found = Model.from_text("dx/dt = 1.1*x - 0.1*x*y\ndy/dt = -1.0*y")
    assert metrics.parameter_error(truth, found) == pytest.approx((0.1 + 0.0 + 0.5) / 3)
    assert math.isnan(metrics.parameter_error(truth, Model.from_text("dz/dt = -z")))


def test_forecast_nrmse_coverage_and_complexity():
    truth = np.column_stack([np.linspace(0, 2, 11)])
    assert metrics.forecast_nrmse(truth, truth + 0.2) == pytest.approx(0.1)
    assert metrics.forecast_nrmse(truth, truth * np.nan) == math.inf
    assert metrics.band_coverage(truth, truth - 0.1, truth + 0.1) == 1.0
    lower = truth.copy()
    lower[:5] += 0.5
    assert metrics.band_coverage(truth, lower, truth + 1) == pytest.approx(6 / 11)
    assert metrics.complexity(Model.from_text("dx/dt = a*x")) == 3  # Mul(a, x): three nodes


# ---------------------------------------------------------------------- store, sweeps
def test_store_round_trip_and_replace(tmp_path: Path):
    with ResultStore(tmp_path / "r.duckdb") as store:
        store.add(CellResult("s", "sys", "clean", "m", 0, "ok", recon_r2=0.95, gen_r2=-math.inf, exact=True))
        store.add(CellResult("s", "sys", "clean", "m", 1, "failed", reason="boom"))
        store.add(CellResult("s", "sys", "clean", "m", 1, "ok", recon_r2=0.5))
        frame = store.frame()
        assert store.finished() == {("s", "sys", "clean", "m", 0), ("s", "sys", "clean", "m", 1)}
    assert len(frame) == 2 and frame.gen_r2.iloc[0] == -math.inf and frame.status.tolist() == ["ok", "ok"]
    table = summary(frame)
    assert table["recon %"].iloc[0] == 50.0 and table["cells"].iloc[0] == 2


def test_bad_names_fail_before_the_sweep(shared_data):
    with pytest.raises(DataError, match="unknown suite 'odebenc'"):
        grid("odebenc", [], ["clean"], ["pysindy"], [0])
    with pytest.raises(DataError, match=r"unknown method 'pysindi'; did you mean 'pysindy'\?"):
        grid("odebench", [], ["clean"], ["pysindi"], [0])
    with pytest.raises(DataError, match="no system 'rc' in suite 'odebench'"):
        grid("odebench", ["rc"], ["clean"], ["pysindy"], [0])
    with pytest.raises(DataError, match="unknown corruption"):
        grid("odebench", [RC_CIRCUIT], ["nosie=0.1"], ["pysindy"], [0])


def test_sweep_records_results_resumes_and_writes_the_leaderboard(shared_data, tmp_path: Path):
    db = tmp_path / "results.duckdb"
    cells = grid("odebench", [RC_CIRCUIT], ["clean", "noise=0.05"], ["pysindy-cv"], [0])
    seen = []
    with ResultStore(db) as store:
        results = sweep(cells, store, jobs=2, time_limit=240, on_result=lambda r, done, total: seen.append((done, total)))
    assert len(results) == 2 and seen[-1] == (2, 2)
    clean = next(r for r in results if r.corruption == "clean")
    assert clean.status == "ok", clean.reason
    # dx/dt = (c0 - x/c1)/c2 is linear in x: SINDy with a chosen threshold recovers it exactly.
    assert clean.exact and clean.recon_r2 > 0.999 and clean.gen_r2 > 0.999 and "x_0" in clean.equations
    with ResultStore(db) as store:
        assert sweep(cells, store, jobs=2) == []  # resumed: nothing left to run
        assert len(store.frame()) == 2
    page = write_html(db, tmp_path / "leaderboard.html")
    text = page.read_text()
    assert "Plotly.newPlot" in text and "pysindy-cv" in text and "ODEFormer + constant refit" in text


def test_a_cell_past_its_time_limit_is_recorded_as_a_timeout(shared_data):
    result = run_cell_isolated(Cell("odebench", RC_CIRCUIT, "clean", "operon", 0), time_limit=1.0)
    assert result.status == "timeout" and "1 s" in result.reason


def test_sweep_on_a_dask_cluster(shared_data, tmp_path: Path):
    from distributed import LocalCluster

    cells = grid("odebench", [RC_CIRCUIT], ["subsample=0.5"], ["pysindy"], [0, 1])
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster:
        with ResultStore(tmp_path / "dask.duckdb") as store:
            results = sweep(cells, store, scheduler=cluster.scheduler_address, time_limit=240)
            assert sorted(r.seed for r in results) == [0, 1] and all(r.status == "ok" for r in results)
            assert len(store.frame()) == 2


def test_cli_bench_errors_exit_2(tmp_path: Path):
    result = subprocess.run([sys.executable, "-m", "biotwin.cli", "bench", "run", "--suite", "nope", "--db", str(tmp_path / "x.duckdb")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "unknown suite 'nope'" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "-m", "biotwin.cli", "bench", "report", "--db", str(tmp_path / "none.duckdb")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no results database" in result.stderr


# ---------------------------------------------------------------------- ground-truth sanity
def _truth_scores(suite_name: str, names: list[str] | None) -> None:
    from biotwin.bench.systems import suite

    for system in suite(suite_name):
        if names is not None and system.name not in names:
            continue
        assert metrics.structure_score(system.model, system.model).exact, system.name
        for design in system.designs:
            score = metrics.design_r2(system, system.model, design)
            assert score > 0.999, f"{system.name}/{design.name}: truth scores R^2 = {score}"


# Slow (45-60 s): the sweep test below scores methods through the same metrics on every run;
# this one, and its every-system version, check the suites' definitions themselves.
@pytest.mark.slow
def test_the_truth_scores_itself_on_a_subset(shared_data):
    _truth_scores("odebench", [RC_CIRCUIT, "odebench_26_lotka_volterra_competition"])
    _truth_scores("bio", ["michaelis_menten", "pk_oral_one_compartment", "repressilator"])


@pytest.mark.slow
@pytest.mark.parametrize("suite_name", ["odebench", "bio"])
def test_the_truth_scores_itself_on_every_system(shared_data, suite_name: str):
    _truth_scores(suite_name, None)

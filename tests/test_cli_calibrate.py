"""``biotwin fit``, ``profile`` and ``infer`` through a real subprocess: results in the folder, reuse, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from tests.test_cli import assert_user_error, run

MODEL = "dx/dt = r*x*(1 - x/K)\nx(0) = 2\nr in [0.01, 10] log = 1\nK in [1, 1000] log = 10\n"


def logistic_files(folder: Path) -> tuple[Path, Path]:
    """Logistic growth (r = 0.8, K = 100) measured at 15 times with 5 % log-normal noise."""
    from biotwin.model import Model
    from biotwin.simulate import simulate

    times = np.linspace(0, 12, 15)
    clean = simulate(Model.from_text("dx/dt = r*x*(1 - x/K)\nx(0) = 2\nr = 0.8\nK = 100"), None, None, times).state("x")
    measured = clean * np.exp(0.05 * np.random.default_rng(0).standard_normal(times.size))
    model, data = folder / "logistic.txt", folder / "growth.csv"
    model.write_text(MODEL)
    pd.DataFrame({"time": times, "x": measured}).to_csv(data, index=False)
    return model, data


def test_fit_profile_infer_write_their_results_and_reuse_the_fit(tmp_path: Path):
    model, data = logistic_files(tmp_path)
    out = tmp_path / "twin"
    fitted = run("fit", str(model), str(data), "--noise", "lognormal", "--starts", "6", "--from-nominal", "--refine",
                 "-o", str(out))
    assert fitted.returncode == 0, fitted.stderr
    record = json.loads((out / "fit.json").read_text())
    assert record["names"] == ["r", "K", "sigma_x"] and record["converged"] >= 3
    # The model file's values (r = 1, K = 10) are scored and were a seventh start; the refinement is an eighth entry.
    assert record["starts"] == 8 and record["nominal_nll"] > record["nll"] + 10
    # Logistic starts converge within a few dozen evaluations: too soon for any to be abandoned.
    assert record["abandoned"] == 0 and record["waterfall_abandoned"] == [False] * 8
    # The seven starts were screened (the NLL at each start point, the nominal point's among them);
    # the refinement's entry was not.
    initial = [v for v in record["waterfall_initial_nll"] if v is not None]
    assert len(initial) == 7 and min(abs(v - record["nominal_nll"]) for v in initial) < 1e-9 * abs(record["nominal_nll"])
    assert f"-> {record['nll']:.6g}" in fitted.stderr and "refinement: NLL" in fitted.stderr
    assert f"nominal values: NLL {record['nominal_nll']:.6g}" in " ".join(fitted.stdout.split())
    assert abs(record["parameters"]["r"] - 0.8) < 0.05 and abs(record["parameters"]["K"] - 100) < 5
    assert "r" in fitted.stdout and (out / "waterfall.png").stat().st_size > 5000

    profiled = run("profile", str(model), str(data), "--noise", "lognormal", "-p", "r", "-o", str(out))
    assert profiled.returncode == 0, profiled.stderr
    assert "starting from the fit" in profiled.stderr and "identifiable" in profiled.stdout
    intervals = json.loads((out / "profiles.json").read_text())["parameters"]
    low, high = intervals["r"]["interval"]
    assert intervals["r"]["verdict"] == "identifiable" and low < 0.8 < high and high - low < 0.2
    assert (out / "profiles.png").stat().st_size > 5000

    sampled = run("infer", str(model), str(data), "--noise", "lognormal", "--warmup", "100", "--samples", "200",
                  "-o", str(out))
    assert sampled.returncode == 0, sampled.stderr
    draws = pd.read_parquet(out / "posterior.parquet")
    assert len(draws) == 4 * 200 and {"chain", "draw", "r", "K", "sigma_x", "log_density"} <= set(draws.columns)
    summary = json.loads((out / "posterior.json").read_text())
    assert summary["max_rhat"] < 1.05 and summary["divergences"] == 0
    assert abs(draws["r"].mean() - 0.8) < 0.05 and "inside their 90 % predictive band" in sampled.stderr
    assert (out / "posterior.png").stat().st_size > 5000 and (out / "predictive.png").stat().st_size > 5000


def test_calibration_commands_reject_bad_requests_in_one_line(tmp_path: Path):
    model, data = logistic_files(tmp_path)
    assert_user_error(run("fit", str(model), str(data), "--noise", "gaussian"), "unknown noise model 'gaussian'")
    assert_user_error(run("fit", str(model)), "give the measurements too")
    assert_user_error(run("fit", str(tmp_path / "missing.yaml")), "no such file or folder")
    assert_user_error(run("profile", str(model), str(data), "-p", "rr", "--starts", "2"), "did you mean 'r'")
    assert not list(tmp_path.glob("**/fit.json"))

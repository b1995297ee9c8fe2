"""Calibration results in a twin folder: ``fit.json`` and ``profiles.json``, with their figures.

``fit.json`` holds the problem it belongs to, the estimated parameters (names, scales, the best
point on the optimisation scale and the values on the linear scale), the best negative
log-likelihood and the waterfall of every start, so that ``biotwin profile`` and ``biotwin
infer`` can start from it without fitting again. Files are written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from biotwin.errors import DataError
from biotwin.io.files import atomic_write, atomic_write_text

FIT_FILE = "fit.json"
PROFILES_FILE = "profiles.json"


def _numbers(values: Any) -> list[float | None]:
    """JSON numbers, with null for a non-finite value (JSON has no inf)."""
    return [float(v) if np.isfinite(v) else None for v in np.asarray(values, dtype=float)]


def save_fit(folder: str | Path, problem: Any, calibration: Any) -> Path:
    """Write ``fit.json`` for a multi-start :class:`~biotwin.fit.Calibration` of ``problem``."""
    path = Path(folder) / FIT_FILE
    record = {
        "problem": problem.name,
        "source": str(problem.petab or problem.model_file),
        "noise": None if problem.petab else problem.noise,
        "names": list(calibration.names),
        "scales": list(calibration.scales),
        "best_x": _numbers(calibration.best_x),
        "parameters": calibration.parameters,
        "nll": calibration.best_nll,
        "nominal_nll": _numbers([calibration.nominal_nll])[0],
        "starts": len(calibration.starts),
        "converged": calibration.converged,
        "abandoned": calibration.abandoned,
        "waterfall": _numbers(calibration.waterfall),
        "waterfall_abandoned": [bool(s.abandoned) for s in calibration.starts],
        "waterfall_initial_nll": _numbers([s.initial_nll for s in calibration.starts]),
        "seconds": calibration.seconds,
        "compile_seconds": calibration.compile_seconds,
    }
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return path


def read_json(path: str | Path) -> Any:
    """A result file's JSON content, or None when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error.msg} at line {error.lineno}); "
                        "delete it and run the command that wrote it again") from None


def load_best_fit(folder: str | Path, objective: Any, problem: Any) -> np.ndarray | None:
    """The best point of ``fit.json`` in ``folder`` when it belongs to this problem and objective, else None."""
    record = read_json(Path(folder) / FIT_FILE)
    if record is None:
        return None
    same = (record.get("problem") == problem.name and record.get("names") == list(objective.names)
            and record.get("noise") == (None if problem.petab else problem.noise))
    if not same or any(v is None for v in record.get("best_x", [None])):
        return None
    return np.array(record["best_x"], dtype=float)


def save_profiles(folder: str | Path, profiles: Any) -> Path:
    """Write ``profiles.json``: per parameter the verdict, the interval, the Wald interval and the profile points."""
    path = Path(folder) / PROFILES_FILE
    record = {
        "confidence": profiles.confidence,
        "threshold": profiles.threshold,
        "best_nll": profiles.best_nll,
        "fisher_rank": profiles.fisher_rank,
        "improved": bool(profiles.improved),
        "parameters": {
            p.name: {
                "verdict": p.verdict,
                "interval": _numbers(p.interval),
                "wald": _numbers(p.wald),
                "ends": list(p.ends),
                "x": _numbers(p.x),
                "nll": _numbers(p.nll),
            }
            for p in profiles
        },
    }
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return path


POSTERIOR_FILE = "posterior.parquet"
POSTERIOR_SUMMARY_FILE = "posterior.json"


def save_posterior(folder: str | Path, posterior: Any) -> tuple[Path, Path]:
    """Write ``posterior.parquet`` (one row per draw: chain, draw, each parameter on the linear scale,
    log density) and ``posterior.json`` (summary and diagnostics: R-hat, bulk ESS, divergences, warnings)."""
    import pandas as pd

    folder = Path(folder)
    chains, draws = posterior.x.shape[:2]
    frame = pd.DataFrame({"chain": np.repeat(np.arange(chains), draws), "draw": np.tile(np.arange(draws), chains)})
    for name, values in posterior.samples.items():
        frame[name] = np.asarray(values).reshape(-1)
    frame["log_density"] = np.asarray(posterior.log_density).reshape(-1)
    table_path = atomic_write(folder / POSTERIOR_FILE, lambda temporary: frame.to_parquet(temporary, index=False))
    record = {
        "chains": chains, "draws": draws, "warmup": posterior.warmup, "divergences": posterior.divergences,
        "max_rhat": posterior.max_rhat, "min_ess_bulk": posterior.min_ess, "ess_per_second": posterior.ess_per_second,
        "wall_time": posterior.wall_time, "warnings": list(posterior.warnings), "summary": posterior.summary(),
    }
    summary_path = folder / POSTERIOR_SUMMARY_FILE
    atomic_write_text(summary_path, json.dumps(record, indent=2) + "\n")
    return table_path, summary_path


def load_fit_values(folder: str | Path) -> dict[str, float]:
    """The best-fit values on the linear scale from ``fit.json`` in ``folder`` ({} when there is none)."""
    record = read_json(Path(folder) / FIT_FILE) or {}
    return {str(k): float(v) for k, v in record.get("parameters", {}).items()}


def load_posterior(folder: str | Path) -> Any:
    """The draws of ``posterior.parquet`` in ``folder`` as :class:`~biotwin.experiment.ParameterDraws` (None when absent)."""
    import pandas as pd
    import pyarrow

    from biotwin.experiment import ParameterDraws

    path = Path(folder) / POSTERIOR_FILE
    if not path.is_file():
        return None
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError, pyarrow.ArrowException) as error:
        raise DataError(f"{path}: cannot be read ({type(error).__name__}); run 'biotwin infer' again") from None
    names = [c for c in frame.columns if c not in ("chain", "draw", "log_density")]
    return ParameterDraws(tuple(names), frame[names].to_numpy(dtype=float), "posterior")

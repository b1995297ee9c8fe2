"""The command line through a real subprocess: outputs, exit codes, one-line errors, nothing half-written."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import EXAMPLES

BIOTWIN = [sys.executable, "-m", "biotwin.cli"]
USER_ERROR = 2


#: A wide terminal and no inherited environment, for every child process of these tests.
CHILD_ENV = {"COLUMNS": "200", "PATH": "/usr/bin:/bin"}


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BIOTWIN, *args], capture_output=True, text=True, cwd=cwd, timeout=300, env=CHILD_ENV)


def assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == USER_ERROR, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    message = " ".join(result.stderr.split())
    for fragment in fragments:
        assert fragment in message, message


@pytest.fixture
def lotka_volterra(tmp_path: Path) -> Path:
    path = tmp_path / "lv.txt"
    path.write_text("dx/dt = a*x - b*x*y\ndy/dt = -c*y + d*x*y\na in [0, 5] = 1.0\n")
    return path


def test_version_from_the_installed_console_script():
    script = Path(sys.executable).parent / "biotwin"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip().startswith("biotwin 0.")


# A Typer application of two commands, with the same rich help: what any command line built on
# Typer and Rich pays for ``--help`` before a line of biotwin runs.
BARE_TYPER_HELP = """
import typer
app = typer.Typer(add_completion=False)
@app.command()
def simulate(model: str, rtol: float = 1e-8) -> None:
    \"\"\"Simulate a model.\"\"\"
@app.command()
def fit(model: str) -> None:
    \"\"\"Fit a model.\"\"\"
app()
"""


def _least_cpu_seconds(*commands: list[str], runs: int = 5) -> list[float]:
    """The least CPU time (user + system) of ``runs`` runs of each child process, run in turns; each must succeed."""
    least = [np.inf] * len(commands)
    for _ in range(runs):
        for k, command in enumerate(commands):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=CHILD_ENV)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            assert result.returncode == 0 and "simulate" in result.stdout, result.stderr
            least[k] = min(least[k], after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return least


def test_help_is_fast_and_does_not_import_the_numerics():
    probe = "import sys, biotwin.cli; print(any(m in sys.modules for m in ('jax', 'sympy', 'pandas', 'diffrax')))"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"
    # CPU time of the child, not wall time: the suite runs in parallel workers, and a busy machine
    # stretches the wall clock without making the command heavier. Measured against a bare Typer
    # application on the same machine, in the same moment, because the framework's own help
    # (Typer, Rich, Markdown) is nearly all of the cost, and it varies 2x between machines and with
    # the load (0.23-0.45 s). Ours took 1.1-1.5x the bare application's (the least of 5 runs each;
    # single runs vary by 30 %); importing pandas with NumPy alone adds 0.8 s of CPU time here.
    framework, ours = _least_cpu_seconds([sys.executable, "-c", BARE_TYPER_HELP, "--help"], [*BIOTWIN, "--help"])
    assert ours < 2 * framework, (ours, framework)


def test_data_check_summarises_the_file():
    result = run("data", "check", str(EXAMPLES / "data" / "hudson_bay_lynx_hare.csv"))
    assert result.returncode == 0, result.stderr
    assert "hare, lynx" in result.stdout and "1900 – 1920" in result.stdout and "42" in result.stdout


def test_data_check_reports_a_bad_file_in_one_line(tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text("time,x\n0,1\n1,oops\n2,3\n")
    assert_user_error(run("data", "check", str(bad)), "bad.csv, line 3, column 'x': 'oops' is not a number")
    assert_user_error(run("data", "check", str(tmp_path / "missing.csv")), "no such file")


def test_simulate_writes_the_trajectories(lotka_volterra: Path, tmp_path: Path):
    out = tmp_path / "out.csv"
    result = run("simulate", str(lotka_volterra), "--param", "b=0.1", "--param", "c=1.5", "--param", "d=0.075",
                 "--y0", "x=10", "--y0", "y=5", "--t", "0:20:201", "--dose", "10:y:2", "-o", str(out), "--png",
                 str(tmp_path / "lv.png"))
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["time", "x", "y"] and len(frame) == 201
    np.testing.assert_allclose(frame["time"].to_numpy(), np.linspace(0, 20, 201))
    assert frame["x"].iloc[0] == 10 and frame["y"].iloc[0] == 5
    assert (tmp_path / "lv.png").stat().st_size > 10_000


def test_simulate_against_data_scores_the_fit(tmp_path: Path):
    result = run("simulate", str(EXAMPLES / "models" / "lotka_volterra_lynx_hare.txt"),
                 "--data", str(EXAMPLES / "data" / "hudson_bay_lynx_hare.csv"), "-o", str(tmp_path / "fit.csv"))
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(tmp_path / "fit.csv")
    assert set(frame["observable"]) == {"hare", "lynx"} and len(frame) == 42
    r2 = 1 - ((frame.measured - frame.simulated) ** 2).sum() / ((frame.measured - frame.measured.mean()) ** 2).sum()
    assert r2 > 0.8
    assert "R²" in result.stdout and "hare" in result.stdout


def test_simulate_user_errors_exit_2_and_write_nothing(lotka_volterra: Path, tmp_path: Path):
    out = tmp_path / "out.csv"
    assert_user_error(run("simulate", str(lotka_volterra), "--param", "z=1", "--y0", "x=1", "--y0", "y=1", "-o", str(out)),
                      "unknown parameter 'z'")
    assert_user_error(run("simulate", str(lotka_volterra), "--y0", "x=1", "-o", str(out)), "no initial value for state 'y'")
    assert_user_error(run("simulate", str(lotka_volterra), "--t", "0:20", "--y0", "x=1", "--y0", "y=1"), "--t")
    assert_user_error(run("simulate", str(tmp_path / "none.txt")), "no such model file")
    blowup = tmp_path / "blowup.txt"
    blowup.write_text("dx/dt = x^2\n")
    assert_user_error(run("simulate", str(blowup), "--y0", "x=1", "--t", "0:2:11", "-o", str(out)), "blew up", "t=1")
    broken = tmp_path / "broken.txt"
    broken.write_text("dx/dt = -k*x\ndy/dt = (y +\n")
    assert_user_error(run("simulate", str(broken)), "broken.txt: line 2: syntax error")
    assert not out.exists() and not list(tmp_path.glob(".out.csv*"))

"""Shared fixtures: paths to the bundled examples and to ../shared/data (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def shared_data_dir() -> Path:
    configured = os.environ.get("BIOTWIN_SHARED_DATA")
    return Path(configured) if configured else ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} is absent (set BIOTWIN_SHARED_DATA to its location)")
    return path


@pytest.fixture
def write_csv(tmp_path: Path):
    """Write text to a CSV file in the test's folder and return its path."""

    def write(text: str, name: str = "data.csv") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


#: The files that take longest under `make test` (seconds of test time, measured on 2 cores):
#: test_discover 245, test_hybrid 196, test_experiment 128, test_likelihood 112, test_report 109,
#: test_bench_biology 97, test_cli_calibrate 90, test_bench_harness 90, test_identify 85,
#: test_simulate 84. `make test` hands whole files to the two workers in collection order
#: (`--dist loadfile --no-loadscope-reorder`). xdist's default order, most tests first, sent
#: test_hybrid (5 tests, 4-5 minutes) last, and one worker ran it alone after the other had
#: finished; longest first, both finish together.
LONGEST_FILES = (
    "test_discover.py", "test_hybrid.py", "test_experiment.py", "test_likelihood.py", "test_report.py",
    "test_bench_biology.py", "test_cli_calibrate.py", "test_bench_harness.py", "test_identify.py",
    "test_simulate.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Collect the longest files first (see LONGEST_FILES); the order within a file is kept."""
    rank = {name: k for k, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))

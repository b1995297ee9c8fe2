"""The machine a benchmark ran on, printed before its results: timings mean little without it."""

from __future__ import annotations

import importlib
import os
import platform
from collections.abc import Sequence
from typing import Any


def machine_info(packages: Sequence[str] = ()) -> list[tuple[str, str]]:
    """Platform, processor, usable CPUs, load average, JAX's backend and the versions of ``packages``."""
    import jax

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    rows = [
        ("platform", platform.platform()),
        ("processor", platform.processor() or platform.machine()),
        ("python", platform.python_version()),
        ("cpu count", f"{os.cpu_count()} (usable by this process: {usable})"),
        ("load average (1, 5, 15 min)", load),
        ("jax default backend", f"{jax.default_backend()} ({', '.join(str(d) for d in jax.devices())})"),
    ]
    return rows + [(name, str(importlib.import_module(name).__version__)) for name in ("jax", *packages)]


def print_machine(console: Any, packages: Sequence[str] = ()) -> None:
    """Print :func:`machine_info` as a two-column Rich table."""
    from rich.table import Table

    info = Table(title="Machine", show_header=False)
    info.add_column(style="bold")
    info.add_column()
    for key, value in machine_info(packages):
        info.add_row(key, value)
    console.print(info)


def wide_console(width: int) -> Any:
    """A Rich console at least ``width`` columns wide when the output is not a terminal (a log file),
    so that a benchmark's table is not folded there."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, width))


def require_at_least_one(parser: Any, args: Any, names: Sequence[str]) -> None:
    """Stop with argparse's usage error when any of the options ``names`` is below 1."""
    for name in names:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")

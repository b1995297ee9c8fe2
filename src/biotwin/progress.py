"""Progress of long computations: a callable they report to, and a Rich progress bar that listens.

Fitting, profiling and sampling never print; they call ``progress(done, total, label)`` when a
step (a start, a parameter, a chain) is done. The command line passes :func:`rich_progress`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: ``progress(done, total, label)``: ``done`` of ``total`` steps finished, the last one ``label``.
Progress = Callable[[int, int, str], None]


@contextmanager
def rich_progress(console: Any = None, description: str = "working") -> Iterator[Progress]:
    """A Rich progress bar; yields the ``progress(done, total, label)`` callable the long computations take."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

    with Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
             console=console) as bar:
        task = bar.add_task(description, total=None)

        def report(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, description=f"{description}: {name}")

        yield report

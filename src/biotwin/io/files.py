"""Writing files so that a failure never leaves one half-written, and reading the YAML files users write."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Let ``write`` fill a temporary file in the same folder as ``path``, then rename it to ``path``.

    The rename is atomic on POSIX file systems: readers see the old file or the whole new one,
    and an error while writing leaves no partial file behind. The temporary file keeps the
    suffix of ``path``, so writers that pick the format by suffix (matplotlib) still can.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8", newline=""))


def parse_file(path: str | Path, what: str, parse: Callable[[str], T]) -> T:
    """``parse`` applied to the text of ``path`` (``what`` it is, e.g. "model file", names it in errors).

    A missing file raises :class:`~biotwin.errors.ModelError`, and so does a mistake ``parse``
    finds, with the file's path in front of its message.
    """
    from biotwin.errors import ModelError

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such {what}")
    try:
        return parse(path.read_text(encoding="utf-8"))
    except ModelError as error:
        raise ModelError(f"{path}: {error}") from None


def read_yaml(path: str | Path, what: str) -> Any:
    """The parsed content of the YAML file ``path`` (``what`` it is, e.g. "scenario file", names it in errors).

    A missing file or invalid YAML raises :class:`~biotwin.errors.DataError` with the line of the mistake.
    """
    import yaml

    from biotwin.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such {what}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise DataError(f"{path}: not valid YAML{line}; check the indentation and the colons") from None

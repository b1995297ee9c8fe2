"""What a twin folder holds, read once for the reports: the twin and whichever results were made.

A twin folder always holds ``twin.json`` (with ``model.txt`` and ``data.csv``); the commands add
``fit.json`` (``biotwin fit``), ``profiles.json`` (``biotwin profile``), ``posterior.parquet``
and ``posterior.json`` (``biotwin infer``) and ``forecasts.json`` (``biotwin predict``). A
:class:`TwinResults` holds each as plain data, or None where its file is absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from biotwin.twin import Twin

if TYPE_CHECKING:
    from biotwin.experiment import ParameterDraws

FORECASTS_FILE = "forecasts.json"

#: The command that writes each result, for the lines that say what a report leaves out.
PRODUCED_BY = {
    "fit": "biotwin fit TWIN_DIR",
    "profiles": "biotwin profile TWIN_DIR",
    "posterior": "biotwin infer TWIN_DIR",
    "forecasts": "biotwin predict TWIN_DIR",
    "discovery": "biotwin discover DATA.csv -o TWIN_DIR",
}


@dataclass(frozen=True, eq=False)
class TwinResults:
    """A twin and the results saved next to it (None where a command has not been run).

    ``fit``, ``profiles``, ``posterior_summary`` and ``forecasts`` are the JSON records as
    written; the posterior draws are the twin's own (``twin.posterior``, read by
    :func:`~biotwin.io.twin.load_twin`).
    """

    twin: Twin
    folder: Path | None = None
    fit: Mapping[str, Any] | None = None
    profiles: Mapping[str, Any] | None = None
    posterior_summary: Mapping[str, Any] | None = None
    forecasts: Mapping[str, Any] | None = None

    @property
    def posterior(self) -> ParameterDraws | None:
        return self.twin.posterior

    @property
    def name(self) -> str:
        return self.twin.model.name or (self.folder.name if self.folder is not None else "twin")

    @property
    def estimated(self) -> dict[str, float]:
        """The best estimates: the fit's values where there is a fit, else the model's defaults."""
        return dict(self.twin.fit) or {p.name: p.value for p in self.twin.model.parameters}

    @property
    def noise(self) -> str | None:
        """The noise model of the fit (normal, lognormal or proportional), when known."""
        return None if self.fit is None else self.fit.get("noise")

    def draws(self, count: int, seed: int = 0) -> ParameterDraws | None:
        """At most ``count`` posterior draws, chosen at random over all chains without repetition."""
        return None if self.posterior is None else self.posterior.subsample(count, seed)

    def missing(self) -> dict[str, str]:
        """Each absent result with the command that produces it."""
        present = {"fit": self.fit, "profiles": self.profiles, "posterior": self.posterior,
                   "forecasts": self.forecasts, "discovery": self.twin.discovery or None}
        return {key: PRODUCED_BY[key] for key, value in present.items() if value is None}


def read_results(folder: str | Path) -> TwinResults:
    """Read a twin folder and every result file in it."""
    from biotwin.io.results import (
        FIT_FILE,
        POSTERIOR_SUMMARY_FILE,
        PROFILES_FILE,
        read_json,
    )
    from biotwin.io.twin import load_twin

    folder = Path(folder)
    return TwinResults(
        twin=load_twin(folder),
        folder=folder,
        fit=read_json(folder / FIT_FILE),
        profiles=read_json(folder / PROFILES_FILE),
        posterior_summary=read_json(folder / POSTERIOR_SUMMARY_FILE),
        forecasts=read_json(folder / FORECASTS_FILE),
    )


def results_of(source: str | Path | Twin | TwinResults) -> TwinResults:
    """A twin folder's results, a twin without results, or results as they are."""
    if isinstance(source, TwinResults):
        return source
    if isinstance(source, Twin):
        return TwinResults(twin=source)
    return read_results(source)

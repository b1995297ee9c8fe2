"""The twin: a model with the data it was built from, and what discovery and calibration found.

A :class:`Twin` is what biotwin hands on to virtual experiments and reports. It is saved as a
folder (see :mod:`biotwin.io.twin`): ``twin.json`` (everything, readable), ``model.txt`` (the
chosen model in the model language) and ``data.csv`` (the measurements, long form).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from biotwin.data import Dataset
from biotwin.model import Model

if TYPE_CHECKING:
    from biotwin.experiment import Forecast, ParameterDraws, Scenario


@dataclass(frozen=True, eq=False)
class Twin:
    """A model (its parameter defaults at the fitted values), its data, and the discovery record.

    ``discovery`` holds the Pareto front and inclusion probabilities as plain data (see
    :func:`discovery_record`); ``initial`` each experiment's fitted initial state; ``fit`` the
    maximum-likelihood values of a calibration (``fit.json``), and ``posterior`` the posterior
    draws of ``biotwin infer`` (``posterior.parquet``), when the twin has them.
    """

    model: Model
    dataset: Dataset
    discovery: Mapping[str, Any] = field(default_factory=dict)
    initial: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def _repr_html_(self) -> str:
        """The model and a table of the experiments, for notebooks."""
        from biotwin.report.tables import html_table

        columns = ("experiment", "t_first", "t_last", "points", "observables")
        rows = [[row[c] for c in columns] for row in self.dataset.summary()]
        return self.model._repr_html_() + html_table(columns, rows, caption=f"data: {self.dataset.source or 'given'}")
    fit: Mapping[str, float] = field(default_factory=dict)
    posterior: ParameterDraws | None = None

    def draws(self, count: int | None = 1000, seed: int = 0) -> ParameterDraws:
        """The parameter sets forecasts run over: up to ``count`` posterior draws, else the best fit, else the model's values."""
        from biotwin.experiment import ParameterDraws

        if self.posterior is not None:
            return self.posterior.subsample(count, seed)
        if self.fit:
            return ParameterDraws.point(dict(self.fit), "best fit")
        return ParameterDraws.of_model(self.model)

    def simulate(self, scenario: Scenario, *, draws: int | None = 1000, seed: int = 0, method: str = "auto") -> Forecast:
        """Forecast a virtual experiment over the twin's uncertainty (see :func:`biotwin.experiment.forecast`).

        The same ``draws`` and ``seed`` give the same parameter sets for every scenario, so that
        forecasts pair up in :func:`biotwin.experiment.compare`.
        """
        from biotwin.experiment import forecast

        return forecast(self.model, scenario, self.draws(draws, seed), method=method)


def discovery_record(candidates: Any) -> dict[str, Any]:
    """The Pareto front, the chosen model and the inclusion probabilities of discovery as plain data.

    Equations are {state: right-hand side} with the fitted numbers written out, in text SymPy
    parses.
    """
    chosen = candidates.chosen

    def row(candidate: Any) -> dict[str, Any]:
        return {
            "equations": candidate.equations(),
            "complexity": candidate.complexity,
            "terms": candidate.n_terms,
            "error": candidate.error,
            "aicc": candidate.aicc,
            "bic": candidate.bic,
            "origin": candidate.origin,
            "chosen": candidate is chosen,
        }

    return {
        "criterion": candidates.criterion,
        "chosen": row(chosen),
        "pareto": [row(c) for c in candidates.pareto],
        "inclusion": {state: dict(terms) for state, terms in candidates.inclusion.items()},
        "candidates_refitted": len(candidates.candidates),
    }


#: A discovered coefficient c may be calibrated within [c / SPAN, c * SPAN], keeping its sign.
SPAN = 100.0


def bounded(model: Model) -> Model:
    """``model`` with every unbounded parameter given sign-keeping bounds around its value, so it can be calibrated.

    A positive coefficient c gets [c / SPAN, c SPAN] on the log scale (rates span decades), a
    negative one [c SPAN, c / SPAN]; a zero one [-1, 1]. Bounded and fixed parameters are kept as they are.
    """
    import math
    from dataclasses import replace

    from biotwin.model import Parameter

    def box(p: Parameter) -> Parameter:
        if p.fixed or (math.isfinite(p.lower) and math.isfinite(p.upper)):
            return p
        if p.value > 0:
            return Parameter(p.name, p.value, p.value / SPAN, p.value * SPAN, "log10")
        if p.value < 0:
            return Parameter(p.name, p.value, p.value * SPAN, p.value / SPAN)
        return Parameter(p.name, 0.0, -1.0, 1.0)

    return replace(model, parameters=tuple(box(p) for p in model.parameters))


def twin_from_discovery(candidates: Any, dataset: Dataset) -> Twin:
    """The twin of the chosen discovered model, its coefficients bounded (see :func:`bounded`) for calibration."""
    chosen = candidates.chosen
    return Twin(
        model=bounded(chosen.model),
        dataset=dataset,
        discovery=discovery_record(candidates),
        initial={name: dict(values) for name, values in chosen.fit.initial.items()},
    )


def twin_from_hybrid(hybrid: Any, distilled: Any, dataset: Dataset) -> Twin:
    """The twin of a distilled hybrid model (see :mod:`biotwin.discover.hybrid`), its coefficients
    bounded for calibration, with the hybrid's record (:func:`~biotwin.discover.hybrid.hybrid_record`)."""
    from biotwin.discover.hybrid import hybrid_record

    return Twin(
        model=bounded(distilled.model),
        dataset=dataset,
        discovery={"hybrid": hybrid_record(hybrid, distilled, dataset)},
        initial={name: dict(values) for name, values in distilled.fit.initial.items()},
    )

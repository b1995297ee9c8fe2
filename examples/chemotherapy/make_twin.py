"""Build the chemotherapy twin of this example: synthetic measurements, multi-start fit, NUTS posterior.

Three past experiments (treatment arms) are simulated from ``model.txt`` at its parameter
values: no treatment, 50 mg once at day 0, and 20 mg every 5 days; tumour volume and neutrophils
are measured every 2 days with 10% log-normal noise (seed 0). The twin is calibrated on them
(log-normal noise, 10 starts) and its posterior sampled (4 chains x 500 draws), then saved to
``twin/`` for ``biotwin optimize twin design.yaml``.

    .venv/bin/python examples/chemotherapy/make_twin.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from biotwin.bench.corrupt import corrupt
from biotwin.data import Bolus, Dataset, Experiment
from biotwin.fit import multistart
from biotwin.infer import infer
from biotwin.io.results import save_posterior
from biotwin.io.twin import save_twin
from biotwin.likelihood import dataset_objective
from biotwin.model import Model
from biotwin.simulate import simulate_dataset
from biotwin.twin import Twin

HERE = Path(__file__).parent


def main() -> None:
    model = Model.from_file(str(HERE / "model.txt"))
    times = np.arange(0.0, 31.0, 2.0)
    arms = {
        "untreated": (),
        "single_50mg": (Bolus(0.0, "C", 50.0),),
        "every_5_days_20mg": tuple(Bolus(t, "C", 20.0) for t in (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)),
    }
    design = Dataset(tuple(Experiment(name, times, ("T", "N"), np.ones((times.size, 2)), doses=doses)
                           for name, doses in arms.items()))
    solutions = simulate_dataset(model, None, design, rtol=1e-10, atol=1e-12)
    clean = Dataset(tuple(e.replace(values=np.column_stack([solutions[e.name].state("T"), solutions[e.name].state("N")]))
                          for e in design), time_unit="day")
    data = corrupt(clean, "lognormal=0.1", seed=0)
    # T and N are observed; C (the drug) is not: the observables are T and N.
    model_fit = Model(model.states, model.rhs, model.parameters,
                      tuple(o for o in model.observables if o.name in ("T", "N")), model.inputs, model.initial,
                      "chemotherapy")
    objective = dataset_objective(model_fit, data, noise="lognormal")
    calibration = multistart(objective, starts=10, seed=0)
    print(f"best NLL {calibration.best_nll:.3f}; {calibration.converged}/10 starts; {calibration.seconds:.0f} s")
    best = {name: calibration.parameters[name] for name in model.parameter_names}
    twin_model = Model(model_fit.states, model_fit.rhs,
                       tuple(p.__class__(p.name, best[p.name], p.lower, p.upper, p.scale) for p in model_fit.parameters),
                       model_fit.observables, model_fit.inputs, model_fit.initial, "chemotherapy")
    folder = save_twin(Twin(twin_model, data), HERE / "twin")
    posterior = infer(objective, calibration.best_x, chains=4, warmup=300, samples=500, seed=0)
    print(f"posterior: max R-hat {posterior.max_rhat:.4f}, min ESS {posterior.min_ess:.0f}, {posterior.wall_time:.0f} s")
    save_posterior(folder, posterior)
    print(f"wrote the twin to {folder}")


if __name__ == "__main__":
    main()

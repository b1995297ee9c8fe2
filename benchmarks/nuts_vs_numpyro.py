"""Benchmark biotwin's NUTS (:func:`biotwin.infer.infer`) against plain numpyro NUTS, in one process.

Problem: the Hudson Bay Company lynx and hare pelts, 1900-1920 (``examples/data``), and the
Lotka-Volterra model of Carpenter (2018), "Predator-Prey Population Dynamics: the Lotka-Volterra
model in Stan"::

    dhare/dt = alpha*hare - beta*hare*lynx,    dlynx/dt = -gamma*lynx + delta*hare*lynx,

with log-normal noise, log y = log z(t) + sigma_species e. Eight unknowns: alpha, beta, gamma,
delta, the two initial populations and the two noise scales; 42 measurements. Both contenders
sample the same posterior, with Carpenter's priors::

    alpha, gamma ~ N(1, 0.5),  beta, delta ~ N(0.05, 0.05)   (all truncated at 0)
    hare(1900), lynx(1900) ~ LogNormal(log 10, 1),  sigma ~ LogNormal(-1, 1)

and the same ODE tolerances, Carpenter's rtol = 1e-5, atol = 1e-3 (the noise is ~25 %).

1. **numpyro** as a typical user writes it: a numpyro model with ``diffrax.diffeqsolve`` inside
   (Dopri5, ``PIDController(rtol, atol)``, diffrax's default adjoint
   ``RecursiveCheckpointAdjoint``, default ``max_steps``; ``throw=False``, without which the
   first wild proposal of warm-up stops the run with "maximum number of solver steps"), ``NUTS``
   with its defaults (diagonal mass matrix adapted in windows, target acceptance 0.8, tree depth
   10), ``init_strategy=init_to_median`` (the prior median), numpyro's default-sized run of
   1000 warm-up and 1000 kept draws per chain, ``--chains`` chains (default 4) run one after the
   other (numpyro's ``chain_method="parallel"`` falls back to this on one CPU device). Its wall
   time includes its compilation.
2. **biotwin**: ``dataset_objective(model, data, noise="lognormal")`` with the same priors
   (:func:`biotwin.infer.linear_scale_prior`) and ``infer(objective, starts, chains=4)`` with its
   defaults (200 warm-up and 1000 kept draws per chain), two ways, timed from building the
   objective to the last draw:

   * *from prior draws*: ``starts`` are ``--starts`` points drawn from the prior (seeded), and
     infer's own damped Newton steps take each to its mode before sampling (this replaces the
     fit: a multi-start Newton optimisation of the posterior, run by the compiled sampler);
   * *after multistart*: ``biotwin.fit.multistart`` from the same prior draws first, then infer
     from the starts that reached the best fit (the calibration path of the data flow).

   The first way is shown with and without building the objective (about a second).

For each: wall time and CPU time of this process, the smallest bulk ESS over the eight unknowns (rank-normalised split
chains, the same estimator for both), ESS per second, the largest R-hat, divergent transitions
after warm-up, and the posterior means of the four rates beside Carpenter's Stan estimates
(alpha 0.55, beta 0.028, gamma 0.80, delta 0.024). The issue's target: 4 chains, R-hat < 1.01,
and at least 20x the ESS per second of plain numpyro NUTS started at the prior median.

Run it from the repository root::

    .venv/bin/python benchmarks/nuts_vs_numpyro.py
    .venv/bin/python benchmarks/nuts_vs_numpyro.py --chains 1      # the issue's one-chain baseline

Timings are wall-clock on whatever else runs on the machine; the load average is printed. On a
shared machine the CPU time of this process (all its threads) is the steadier measure, so the
ratio of ESS per CPU second is printed beside the wall-clock ratio. The contenders run in the
order of the table; the later ones find JAX started and its tracing caches of shared library
code (diffrax, equinox) warm, which saves them a second or two.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from machine import print_machine, require_at_least_one, wide_console

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "hudson_bay_lynx_hare.csv"
MODEL_TEXT = """
dhare/dt = alpha*hare - beta*hare*lynx
dlynx/dt = -gamma*lynx + delta*hare*lynx
alpha in [0, 5] = 1.0
beta in [0, 1] = 0.05
gamma in [0, 5] = 1.0
delta in [0, 1] = 0.05
hare0 in [0.1, 1000] log = 10
lynx0 in [0.1, 1000] log = 10
hare(0) = hare0
lynx(0) = lynx0
"""
RATES = ("alpha", "beta", "gamma", "delta")
#: Posterior means of Carpenter (2018), Stan.
STAN = {"alpha": 0.55, "beta": 0.028, "gamma": 0.80, "delta": 0.024}
RTOL, ATOL = 1e-5, 1e-3
TARGET_RATIO = 20.0


def priors() -> dict[str, Any]:
    """Carpenter's priors as numpyro distributions of the linear-scale values, by biotwin name."""
    import numpyro.distributions as dist

    return {
        "alpha": dist.TruncatedNormal(1.0, 0.5, low=0.0), "gamma": dist.TruncatedNormal(1.0, 0.5, low=0.0),
        "beta": dist.TruncatedNormal(0.05, 0.05, low=0.0), "delta": dist.TruncatedNormal(0.05, 0.05, low=0.0),
        "hare0": dist.LogNormal(np.log(10.0), 1.0), "lynx0": dist.LogNormal(np.log(10.0), 1.0),
        "sigma_hare": dist.LogNormal(-1.0, 1.0), "sigma_lynx": dist.LogNormal(-1.0, 1.0),
    }


def diagnostics(draws: dict[str, np.ndarray]) -> tuple[float, float]:
    """The smallest bulk ESS and the largest R-hat over (chains, draws) arrays."""
    from biotwin.infer import ess_bulk, rhat

    return min(ess_bulk(v) for v in draws.values()), max(rhat(v) for v in draws.values())


# ---------------------------------------------------------------------- 1. plain numpyro
def run_numpyro(times: np.ndarray, values: np.ndarray, chains: int, seed: int) -> dict[str, Any]:
    """Carpenter's model in numpyro with a diffrax solve inside, NUTS from the prior median."""
    import diffrax
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS, init_to_median

    def dz_dt(t: Any, z: Any, theta: Any) -> Any:
        hare, lynx = z
        alpha, beta, gamma, delta = theta
        return jnp.stack([(alpha - beta * lynx) * hare, (-gamma + delta * hare) * lynx])

    def model(ts: Any, y: Any = None) -> None:
        z_init = numpyro.sample("z_init", dist.LogNormal(jnp.log(10.0), 1.0).expand([2]))
        theta = numpyro.sample("theta", dist.TruncatedNormal(jnp.array([1.0, 0.05, 1.0, 0.05]),
                                                              jnp.array([0.5, 0.05, 0.5, 0.05]), low=0.0))
        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(dz_dt), diffrax.Dopri5(), ts[0], ts[-1], 0.1, z_init, args=theta,
            saveat=diffrax.SaveAt(ts=ts), stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL), throw=False,
        )
        sigma = numpyro.sample("sigma", dist.LogNormal(-1.0, 1.0).expand([2]))
        numpyro.sample("y", dist.LogNormal(jnp.log(solution.ys), sigma), obs=y)

    mcmc = MCMC(NUTS(model, init_strategy=init_to_median), num_warmup=1000, num_samples=1000, num_chains=chains,
                chain_method="sequential", progress_bar=False)
    began, cpu = time.perf_counter(), time.process_time()
    mcmc.run(jax.random.PRNGKey(seed), jnp.asarray(times), y=jnp.asarray(values), extra_fields=("diverging",))
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    grouped = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    draws = {name: grouped["theta"][..., k] for k, name in enumerate(RATES)}
    draws.update({"hare0": grouped["z_init"][..., 0], "lynx0": grouped["z_init"][..., 1],
                  "sigma_hare": grouped["sigma"][..., 0], "sigma_lynx": grouped["sigma"][..., 1]})
    ess, worst = diagnostics(draws)
    return {"wall": wall, "cpu": cpu, "ess": ess, "rhat": worst, "divergences": int(np.sum(mcmc.get_extra_fields()["diverging"])),
            "means": {k: float(np.mean(v)) for k, v in draws.items()}, "draws": f"{chains} x 1000"}


# ---------------------------------------------------------------------- 2. biotwin
def prior_starts(objective: Any, count: int, seed: int) -> np.ndarray:
    """``count`` points drawn from the priors (NumPy), on the objective's optimisation scale, inside its bounds."""
    from scipy.stats import truncnorm

    from biotwin.objective import to_scale

    rng = np.random.default_rng(seed)
    rates = {"alpha": (1.0, 0.5), "gamma": (1.0, 0.5), "beta": (0.05, 0.05), "delta": (0.05, 0.05)}
    columns = []
    for name, scale in zip(objective.names, objective.scales):
        if name in rates:
            loc, sd = rates[name]
            values = truncnorm.rvs(-loc / sd, np.inf, loc=loc, scale=sd, size=count, random_state=rng)
        else:
            values = rng.lognormal(np.log(10.0) if name in ("hare0", "lynx0") else -1.0, 1.0, size=count)
        columns.append(to_scale(values, scale))
    return np.clip(np.stack(columns, axis=1), objective.lower, objective.upper)


def lynx_hare_objective() -> Any:
    """The objective: the model text above, the CSV, log-normal noise, Carpenter's priors and tolerances."""
    from biotwin.infer import linear_scale_prior
    from biotwin.io.csv import read_csv
    from biotwin.likelihood import dataset_objective
    from biotwin.model import Model

    model = Model.from_text(MODEL_TEXT, name="lotka-volterra")
    objective = dataset_objective(model, read_csv(DATA), noise="lognormal", rtol=RTOL, atol=ATOL)
    return dataclasses.replace(objective, log_prior=linear_scale_prior(objective, priors()))


def run_biotwin_direct(starts: int, seed: int) -> dict[str, Any]:
    """Objective, then ``infer`` from prior draws: infer's Newton steps find the modes itself."""
    from biotwin.infer import infer

    began, cpu = time.perf_counter(), time.process_time()
    objective = lynx_hare_objective()
    points = prior_starts(objective, starts, seed)
    sampling, sampling_cpu = time.perf_counter(), time.process_time()
    posterior = infer(objective, points, chains=4, seed=seed)
    return {"posterior": posterior, "total": time.perf_counter() - began, "cpu": time.process_time() - cpu,
            "infer": time.perf_counter() - sampling, "infer_cpu": time.process_time() - sampling_cpu}


def run_biotwin_multistart(starts: int, seed: int) -> dict[str, Any]:
    """Objective, ``biotwin.fit.multistart`` from prior draws, then ``infer`` from the starts that reached the best fit."""
    from biotwin.fit import CONVERGED_WITHIN, multistart
    from biotwin.infer import infer

    began, cpu = time.perf_counter(), time.process_time()
    objective = lynx_hare_objective()
    calibration = multistart(objective, starts=prior_starts(objective, starts, seed), seed=seed)
    fitted = time.perf_counter()
    best = np.array([s.x for s in calibration.starts if s.nll <= calibration.best_nll + CONVERGED_WITHIN])
    posterior = infer(objective, best[:4], chains=4, seed=seed)
    return {"posterior": posterior, "total": time.perf_counter() - began, "cpu": time.process_time() - cpu, "fit": fitted - began,
            "converged": len(best), "best_nll": calibration.best_nll}


# ---------------------------------------------------------------------- report
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--chains", type=int, default=4, help="numpyro chains (run one after the other)")
    parser.add_argument("--starts", type=int, default=8, help="points drawn from the prior where biotwin starts")
    parser.add_argument("--seed", type=int, default=0, help="seed of both samplers and of the fit's starts")
    args = parser.parse_args(argv)
    require_at_least_one(parser, args, ("chains", "starts"))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    from biotwin import _jax  # noqa: F401
    from rich.table import Table

    from biotwin.io.csv import read_csv

    console = wide_console(190)
    print_machine(console, ("numpyro", "diffrax"))

    data = read_csv(DATA)
    experiment = next(iter(data))
    times = experiment.times - experiment.times[0]
    values = experiment.values[:, [experiment.observables.index("hare"), experiment.observables.index("lynx")]]

    console.print(f"[bold]numpyro[/]: NUTS from the prior median, {args.chains} chain(s) x (1000 warm-up + 1000 draws) ...")
    baseline = run_numpyro(times, values, args.chains, args.seed)
    console.print(f"[bold]biotwin[/]: infer from {args.starts} prior draws (it finds the modes), 4 chains ...")
    direct = run_biotwin_direct(args.starts, args.seed)
    console.print(f"[bold]biotwin[/]: multistart fit from {args.starts} prior draws, then infer from its best fits ...")
    fitted = run_biotwin_multistart(args.starts, args.seed)

    base_rate = baseline["ess"] / baseline["wall"]
    base_cpu_rate = baseline["ess"] / baseline["cpu"]
    table = Table(title="Lynx-hare, Lotka-Volterra with log-normal noise: 8 unknowns, 42 measurements, "
                        f"rtol={RTOL:g}, atol={ATOL:g}")
    for column in ("contender", "chains x draws", "wall s", "min bulk ESS", "ESS/s", "max R-hat", "diverg.",
                   *RATES, "ESS/s ratio", "CPU s", "ESS/CPU-s ratio"):
        table.add_column(column, justify="left" if column == "contender" else "right")

    def row(name: str, draws: str, wall: float, cpu: float, ess: float, worst: float, divergences: int,
            means: dict[str, float]) -> float:
        rate = ess / wall
        table.add_row(name, draws, f"{wall:.1f}", f"{ess:,.0f}", f"{rate:,.1f}", f"{worst:.4f}", str(divergences),
                      *(f"{means[k]:.4g}" for k in RATES), f"{rate / base_rate:,.1f}x", f"{cpu:.1f}",
                      f"{ess / cpu / base_cpu_rate:,.1f}x")
        return rate / base_rate

    def posterior_row(name: str, posterior: Any, wall: float, cpu: float) -> float:
        means = {k: float(np.mean(v)) for k, v in posterior.samples.items()}
        return row(name, f"{posterior.chains} x {posterior.draws}", wall, cpu, posterior.min_ess, posterior.max_rhat,
                   posterior.divergences, means)

    row("numpyro NUTS, prior median", baseline["draws"], baseline["wall"], baseline["cpu"], baseline["ess"],
        baseline["rhat"], baseline["divergences"], baseline["means"])
    ours = direct["posterior"]
    sampler_ratio = posterior_row(f"biotwin infer ({args.starts} prior draws)", ours, direct["infer"], direct["infer_cpu"])
    direct_ratio = posterior_row("  the same + objective", ours, direct["total"], direct["cpu"])
    fitted_ratio = posterior_row("biotwin objective+multistart+infer", fitted["posterior"], fitted["total"], fitted["cpu"])
    table.add_row("Stan (Carpenter 2018)", "", "", "", "", "", "", *(f"{STAN[k]:.4g}" for k in RATES), "", "", "")
    console.print(table)

    depth = np.bincount(ours.tree_depth.ravel())
    console.print(
        f"biotwin infer from prior draws: {ours.wall_time:.1f} s = compile {ours.compile_time:.1f} s + modes "
        f"{ours.mode_time:.1f} s + sampling {ours.sampling_time:.1f} s ({ours.iterations:,} batched gradients of 4 chains, "
        f"{1e3 * ours.sampling_time / ours.iterations:.2f} ms each) + the rest; objective {direct['total'] - ours.wall_time:.1f} s; "
        f"{len(ours.modes)} start(s) at the best mode; gradient in {ours.gradient} mode; step sizes "
        f"{', '.join(f'{s:.3f}' for s in ours.step_size)}; tree depths " + ", ".join(f"{d}: {c}" for d, c in enumerate(depth) if c)
    )
    console.print(
        f"biotwin multistart path: objective + multistart {fitted['fit']:.1f} s ({fitted['converged']} of {args.starts} "
        f"starts at the best NLL {fitted['best_nll']:.2f}), infer {fitted['posterior'].wall_time:.1f} s"
    )
    for message in (*ours.warnings, *fitted["posterior"].warnings):
        console.print(f"[yellow]warning[/]: {message}")
    passed = ours.chains >= 4 and ours.max_rhat < 1.01 and direct_ratio >= TARGET_RATIO
    verdict = "[bold green]PASS[/]" if passed else "[bold red]FAIL[/]"
    console.print(
        f"Target (4 chains, R-hat < 1.01, >= {TARGET_RATIO:g}x numpyro's ESS/s, finding the modes included): {verdict} - "
        f"{direct_ratio:.1f}x objective + infer from prior draws ({sampler_ratio:.1f}x infer alone), "
        f"{fitted_ratio:.1f}x with biotwin's multistart fit first; R-hat {ours.max_rhat:.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``biotwin`` command line: every command is a thin wrapper over the library.

Heavy modules (JAX, SymPy, pandas) are imported inside the commands, so that ``biotwin --help``
answers at once. A user error prints one or two lines and exits with code 2.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from biotwin import __version__
from biotwin.errors import BiotwinError

F = TypeVar("F", bound=Callable[..., Any])
USER_ERROR = 2

console = Console()
errors = Console(stderr=True)

app = typer.Typer(
    name="biotwin",
    help="Digital twins of biological systems from time-course data: discover an ODE model, "
    "calibrate it, quantify its uncertainty and run virtual experiments on it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect and validate measurement files.", no_args_is_help=True)
app.add_typer(data_app, name="data")
bench_app = typer.Typer(
    help="Benchmark discovery methods side by side on ODEBench and the biology suite.", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")
DEFAULT_DB = Path("bench-results") / "results.duckdb"


def user_errors(command: F) -> F:
    """Report a :class:`BiotwinError` as one line on stderr and exit with code 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BiotwinError as error:
            errors.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(USER_ERROR) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        console.print(f"biotwin {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """biotwin: discover, calibrate and use digital twins of biological systems."""


# ---------------------------------------------------------------------- biotwin data check
@data_app.command("check")
@user_errors
def data_check(
    file: Annotated[Path, typer.Argument(help="A long CSV (experiment,time,observable,value[,sigma]) or a wide one.")],
    time: Annotated[str | None, typer.Option("--time", help="Name of the time column of a wide file.")] = None,
    delimiter: Annotated[str, typer.Option("--delimiter", help="Field separator.")] = ",",
) -> None:
    """Validate a measurement file and summarise its experiments, observables and missing values."""
    from biotwin.io.csv import read_csv

    dataset = read_csv(file, time_column=time, delimiter=delimiter)
    unit = f" ({dataset.time_unit})" if dataset.time_unit else ""
    table = Table(title=f"{file}: {len(dataset)} experiment(s), observables {', '.join(dataset.observables)}")
    for column in ("experiment", f"time span{unit}", "times", "observables", "points", "missing", "doses"):
        table.add_column(column, justify="left" if column in ("experiment", "observables") else "right")
    for row in dataset.summary():
        table.add_row(
            row["experiment"], f"{row['t_first']:g} – {row['t_last']:g}", str(row["times"]), row["observables"],
            str(row["points"]), str(row["missing"]), str(row["doses"]),
        )
    console.print(table)


# ---------------------------------------------------------------------- biotwin simulate
def _assignments(pairs: list[str], what: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            values[name.strip()] = float(text)
        except ValueError:
            raise typer.BadParameter(f"'{pair}' is not NAME=NUMBER", param_hint=f"--{what}") from None
    return values


def _time_grid(text: str) -> list[float]:
    from biotwin.experiment import parse_times

    try:
        return list(parse_times(text, "--t"))
    except BiotwinError:
        raise typer.BadParameter(
            f"'{text}' is neither START:STOP:COUNT (e.g. 0:20:201) nor a comma-separated list of times", param_hint="--t"
        ) from None


def _fields(text: str, count: int, option: str, form: str) -> list[str]:
    parts = text.split(":")
    if len(parts) != count:
        raise typer.BadParameter(f"'{text}' is not {form}", param_hint=option)
    return parts


@app.command()
@user_errors
def simulate(
    model_file: Annotated[Path, typer.Argument(metavar="MODEL", help="Model text file (dx/dt = ... lines).")],
    param: Annotated[list[str], typer.Option("--param", "-p", help="Parameter value NAME=VALUE (repeatable).")] = [],  # noqa: B006
    y0: Annotated[list[str], typer.Option("--y0", help="Initial state NAME=VALUE (repeatable).")] = [],  # noqa: B006
    t: Annotated[str, typer.Option("--t", help="Output times: START:STOP:COUNT or a comma-separated list.")] = "0:10:101",
    dose: Annotated[list[str], typer.Option("--dose", help="Bolus TIME:STATE:AMOUNT (repeatable).")] = [],  # noqa: B006
    infusion: Annotated[
        list[str], typer.Option("--infusion", help="Constant infusion STATE:START:STOP:RATE (repeatable).")
    ] = [],  # noqa: B006
    method: Annotated[str, typer.Option(help="Solver: auto, tsit5, dopri5, dopri8, kvaerno5, kencarp4, rodas5, rodas4.")] = "auto",
    rtol: Annotated[float, typer.Option(help="Relative tolerance.")] = 1e-6,
    atol: Annotated[float, typer.Option(help="Absolute tolerance.")] = 1e-9,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Simulate each experiment of this CSV at its measurement times and score the fit."),
    ] = None,
    time: Annotated[str | None, typer.Option("--time", help="Time column of a wide --data file.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the trajectories to this CSV.")] = None,
    png: Annotated[Path | None, typer.Option("--png", help="Also plot the trajectories (and data) to this PNG/SVG.")] = None,
) -> None:
    """Simulate a model and print or save the trajectories of its states and observables.

    With --data, every experiment of the file is simulated with its own doses and start time,
    and the agreement (RMSE, R^2) of each observable is printed.
    """
    from biotwin.data import Bolus, Input
    from biotwin.io.files import atomic_write_text
    from biotwin.model import Model
    from biotwin.simulate import simulate as run

    if data is not None:
        _simulate_data(Model.from_file(str(model_file)), data, time, param, y0, method, rtol, atol, output, png)
        return

    times = _time_grid(t)
    doses = []
    for text in dose:
        when, state, amount = _fields(text, 3, "--dose", "TIME:STATE:AMOUNT")
        doses.append(Bolus(_float(when, "--dose"), state, _float(amount, "--dose")))
    infusions = []
    for text in infusion:
        state, start, stop, rate = _fields(text, 4, "--infusion", "STATE:START:STOP:RATE")
        infusions.append(Input.infusion(state, _float(start, "--infusion"), _float(stop, "--infusion"), _float(rate, "--infusion")))
    model = Model.from_file(str(model_file))
    with errors.status("solving (the first solve of a model compiles it)…"):
        solution = run(
            model, _assignments(param, "param"), _assignments(y0, "y0") or None, times, infusions,
            doses=doses, method=method, rtol=rtol, atol=atol,  # type: ignore[arg-type]
        )
    frame = solution.to_frame()
    if png is not None:
        from biotwin.report.plots import plot_fit

        errors.print(f"plotted to {plot_fit({model.name or 'simulation': solution}, png, title=model.name)}")
    if output is not None:
        atomic_write_text(output, frame.to_csv(index=False))
        errors.print(f"wrote {len(frame)} rows × {frame.shape[1]} columns to {output}")
        return
    table = Table(title=f"{model.name}: {', '.join(model.states)}")
    for column in frame.columns:
        table.add_column(str(column), justify="right")
    shown = frame if len(frame) <= 20 else frame.iloc[list(range(10)) + list(range(len(frame) - 5, len(frame)))]
    for i, (_, row) in enumerate(shown.iterrows()):
        if len(frame) > 20 and i == 10:
            table.add_row(*["⋮"] * frame.shape[1])
        table.add_row(*(f"{v:.6g}" for v in row))
    console.print(table)


def _simulate_data(
    model: Any, data: Path, time: str | None, param: list[str], y0: list[str], method: str, rtol: float, atol: float,
    output: Path | None, png: Path | None,
) -> None:
    import pandas as pd

    from biotwin.compare import agreement
    from biotwin.io.csv import read_csv
    from biotwin.io.files import atomic_write_text
    from biotwin.simulate import simulate_dataset

    dataset = read_csv(data, time_column=time)
    shared = [o for o in dataset.observables if o in model.observable_names]
    if not shared:
        from biotwin.errors import DataError

        raise DataError(
            f"{data}: no observable of the data ({', '.join(dataset.observables)}) is an observable of the model "
            f"({', '.join(model.observable_names)}); name the model's observables after the data's columns"
        )
    options = dict(method=method, rtol=rtol, atol=atol)
    with errors.status("solving every experiment (the first solve of a model compiles it)…"):
        at_data = simulate_dataset(model, _assignments(param, "param"), dataset, _assignments(y0, "y0") or None, **options)
        curves = simulate_dataset(model, _assignments(param, "param"), dataset, _assignments(y0, "y0") or None, grid=300, **options) if png else None
    table = Table(title=f"{model.name} against {data}")
    for column in ("experiment", "observable", "points", "RMSE", "R²"):
        table.add_column(column, justify="left" if column in ("experiment", "observable") else "right")
    for row in agreement(dataset, at_data):
        table.add_row(row.experiment, row.observable, str(row.points), f"{row.rmse:.4g}", f"{row.r_squared:.3f}")
    console.print(table)
    if png is not None and curves is not None:
        from biotwin.report.plots import plot_fit

        errors.print(f"plotted to {plot_fit(curves, png, dataset, title=f'{model.name}: {data.name}')}")
    if output is not None:
        frames = []
        for experiment in dataset:
            solution = at_data[experiment.name]
            for j, name in enumerate(experiment.observables):
                if name in shared:
                    frames.append(pd.DataFrame({
                        "experiment": experiment.name, "time": experiment.times, "observable": name,
                        "measured": experiment.values[:, j], "simulated": solution.observable(name),
                    }))
        frame = pd.concat(frames, ignore_index=True)
        atomic_write_text(output, frame.to_csv(index=False))
        errors.print(f"wrote {len(frame)} rows (measured beside simulated) to {output}")


def _float(text: str, option: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise typer.BadParameter(f"'{text}' is not a number", param_hint=option) from None


# ---------------------------------------------------------------------- biotwin discover
@app.command()
@user_errors
def discover(
    data: Annotated[Path, typer.Argument(help="Measurements: a long or wide CSV; every observable is a state.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Twin folder to write (twin.json, model.txt, data.csv).")] = None,
    time: Annotated[str | None, typer.Option("--time", help="Time column of a wide file.")] = None,
    prior: Annotated[
        Path | None,
        typer.Option("--prior", help="Prior knowledge: required/forbidden/signed terms, known equations, conservation laws."),
    ] = None,
    design: Annotated[
        Path | None,
        typer.Option("--design", help="What each experiment received (YAML): doses, infusions, input signals."),
    ] = None,
    criterion: Annotated[str, typer.Option(help="Model choice on the trajectory fit: bic or aicc.")] = "bic",
    symbolic: Annotated[bool, typer.Option("--symbolic/--no-symbolic", help="Add Operon's symbolic-regression terms.")] = True,
    term: Annotated[list[str], typer.Option("--term", help="Extra library term in the states, e.g. 'x/(1 + y)' (repeatable).")] = [],  # noqa: B006
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout (tables go to stderr).")] = False,
    skeleton: Annotated[
        Path | None,
        typer.Option("--skeleton", help="Hybrid twin: a model file whose unknown parts are neural terms, "
                     "e.g. 'dx/dt = a*x + NN1(x, y)' (with --hybrid)."),
    ] = None,
    hybrid: Annotated[bool, typer.Option("--hybrid", help="Train the skeleton's neural terms, then distill them into equations.")] = False,
    steps: Annotated[int, typer.Option(help="Hybrid training: Adam steps per stage of the time-span curriculum.")] = 600,
) -> None:
    """Discover an ODE model from time-course data, refitted on whole trajectories.

    Prints the Pareto front (complexity against trajectory error) with the chosen model, and the
    inclusion probability of each of its terms. With --design, the experiments' doses, infusions
    and input signals enter the model: an input as a variable of the rates, a dose into a
    compartment nothing measures as a hidden depot. With --skeleton and --hybrid, trains the
    skeleton's neural terms on the trajectories instead (hidden states allowed), distills them
    into closed forms and prints those.
    """
    import json

    from biotwin.discover.pipeline import discover as run
    from biotwin.io.csv import read_csv
    from biotwin.twin import discovery_record, twin_from_discovery

    if criterion not in ("bic", "aicc"):
        raise typer.BadParameter(f"'{criterion}' is neither bic nor aicc", param_hint="--criterion")
    if (skeleton is None) != (not hybrid):
        raise typer.BadParameter("a hybrid twin needs both --skeleton FILE and --hybrid", param_hint="--skeleton/--hybrid")
    if steps < 1:
        raise typer.BadParameter(f"{steps} steps; train at least 1", param_hint="--steps")
    from biotwin.discover.prior import read_prior

    dataset = read_csv(data, time_column=time)
    if design is not None:
        from biotwin.io.design import with_design

        dataset = with_design(dataset, design)
    if skeleton is not None:
        _discover_hybrid(skeleton, dataset, output, criterion, steps, seed, as_json)
        return
    hints = read_prior(prior) if prior is not None else None
    out = errors if as_json else console
    with errors.status("discovering…") as status:
        candidates = run(dataset, prior=hints, criterion=criterion, symbolic=symbolic, user_terms=tuple(term), seed=seed,
                         progress=lambda message: status.update(f"discovering: {message}…"))
    table = Table(title=f"Pareto front ({len(candidates.candidates)} structures refitted on the trajectories)")
    for column in ("", "complexity", "error", criterion.upper(), "equations"):
        table.add_column(column, justify="left" if column in ("", "equations") else "right")
    for candidate in candidates.pareto:
        mark = "→" if candidate is candidates.chosen else ""
        score = candidate.score(criterion)
        text = "\n".join(f"d{k}/dt = {v}" for k, v in candidate.equations().items())
        table.add_row(mark, str(candidate.complexity), f"{candidate.error:.4g}", f"{score:.1f}", text)
    out.print(table)
    out.print("chosen model:")
    for state, rhs in candidates.chosen.equations().items():
        probabilities = candidates.inclusion.get(state, {})
        out.print(f"  d{state}/dt = {rhs}", highlight=False)
        if probabilities:
            shown = ", ".join(f"{label}: {p:.2f}" for label, p in sorted(probabilities.items(), key=lambda i: -i[1])[:8])
            out.print(f"      term inclusion: {shown}", highlight=False)
    if output is not None:
        from biotwin.io.twin import save_twin

        errors.print(f"wrote the twin to {save_twin(twin_from_discovery(candidates, dataset), output)}")
    if as_json:
        sys.stdout.write(json.dumps(discovery_record(candidates), default=float) + "\n")


def _discover_hybrid(path: Path, dataset: Any, output: Path | None, criterion: str, steps: int, seed: int,
                     as_json: bool) -> None:
    """Train a skeleton's neural terms, distill them, print the closed forms and save the twin."""
    import json

    from biotwin.discover.hybrid import Skeleton, distill, hybrid_record, train_hybrid
    from biotwin.progress import rich_progress
    from biotwin.twin import twin_from_hybrid

    skeleton = Skeleton.from_file(str(path))
    with rich_progress(errors, "training the hybrid model") as progress:
        trained = train_hybrid(skeleton, dataset, steps=steps, seed=seed, progress=progress)
    with errors.status("distilling the neural terms into equations…"):
        distilled = distill(trained, dataset, criterion=criterion)
    out = errors if as_json else console
    table = Table(title=f"Hybrid twin of {path.name}: trained in {trained.seconds:.1f} s, loss {trained.loss:.4g}")
    for column in ("neural term", "reads", "distilled closed form"):
        table.add_column(column)
    for term in skeleton.terms:
        table.add_row(term.name, ", ".join(term.inputs), distilled.text(term.name))
    out.print(table)
    out.print("distilled model, refitted on the trajectories:")
    for state, rhs in zip(distilled.model.states, distilled.model.rhs):
        out.print(f"  d{state}/dt = {rhs}", highlight=False)
    out.print("  " + ", ".join(f"{p.name} = {p.value:.4g}" for p in distilled.model.parameters), highlight=False)
    if output is not None:
        from biotwin.io.twin import save_twin

        errors.print(f"wrote the twin to {save_twin(twin_from_hybrid(trained, distilled, dataset), output)}")
    if as_json:
        record = hybrid_record(trained, distilled, dataset)
        record.pop("curves")
        record["model"] = distilled.model.to_text()
        sys.stdout.write(json.dumps(record, default=float) + "\n")


# ---------------------------------------------------------------------- calibration
Target = Annotated[Path, typer.Argument(help="A PEtab problem (.yaml), a twin folder, or a model file given with DATA.")]
DataFile = Annotated[Path | None, typer.Argument(help="Measurements (CSV) for a model file.")]
Noise = Annotated[str, typer.Option(help="Noise model of CSV data: normal, lognormal or proportional (sigma estimated).")]
Output = Annotated[Path | None, typer.Option("--output", "-o", help="Folder for the results (default: the twin folder given).")]
Starts = Annotated[int, typer.Option(help="Multi-start: local fits from this many points spread over the bounds.")]
Seed = Annotated[int, typer.Option(help="Seed of the start points and of the sampler.")]
Processes = Annotated[int, typer.Option(help="Worker processes for the starts (each compiles the model once).")]
Refine = Annotated[bool, typer.Option("--refine", help="After the starts, kick each parameter of the best fit to its bounds and re-optimise, then walk its profiles, in rounds, while that gains (biotwin.refine).")]
Abandon = Annotated[bool, typer.Option("--abandon/--no-abandon", help="Stop a start that, at its recent rate of progress, cannot reach the best NLL already found within its evaluation budget.")]
Screen = Annotated[bool, typer.Option("--screen/--no-screen", help="Evaluate the NLL at every start point first and run the starts lowest NLL first (--no-screen: in the order drawn).")]
FromNominal = Annotated[bool, typer.Option("--from-nominal", help="Also start from the nominal values (the PEtab parameter table's or the model file's), first.")]


def _calibrated(target: Path, data: Path | None, noise: str, output: Path | None, starts: int, seed: int,
                processes: int, reuse: bool, from_nominal: bool = False,
                refine: bool = False, abandon: bool = True, screen: bool = True) -> tuple[Any, Any, Any, Path | None]:
    """The problem, its objective, its best point (from fit.json when ``reuse`` and present, else a multi-start fit) and the output folder."""
    from biotwin.fit import multistart
    from biotwin.io.results import load_best_fit, save_fit
    from biotwin.problem import problem as named
    from biotwin.progress import rich_progress
    from biotwin.report.plots import plot_waterfall

    problem = named(target, data, noise=noise)
    folder = output if output is not None else (target if target.is_dir() else None)
    if folder is not None and problem.petab is None and not (folder / "twin.json").exists() and (
            not folder.exists() or not any(folder.iterdir())):
        # A model file with its data becomes a twin folder, which virtual experiments and reports read.
        from biotwin.io.twin import save_twin
        from biotwin.twin import Twin

        save_twin(Twin(problem.model(), problem.dataset()), folder)
    with errors.status(f"compiling {problem.name}…"):
        objective = problem.objective()
    best = load_best_fit(folder, objective, problem) if reuse and folder is not None else None
    if best is not None:
        errors.print(f"starting from the fit in {folder / 'fit.json'}")
        return problem, objective, best, folder
    with rich_progress(errors, f"multi-start fit ({starts} starts)") as progress:
        calibration = multistart(objective, starts=starts, seed=seed, processes=processes,
                                 rebuild=problem.objective if processes > 1 else None, progress=progress,
                                 from_nominal=from_nominal, abandon=abandon, screen=screen)
    if refine:
        from biotwin.refine import refine as kicked

        before = calibration.best_nll
        with rich_progress(errors, "refining the best fit") as progress:
            calibration = kicked(objective, calibration, progress=progress)
        entry = max(calibration.starts, key=lambda s: s.index)
        errors.print(f"refinement: NLL {before:.6g} -> {entry.nll:.6g} ({entry.evaluations} evaluations, {entry.seconds:.1f} s)")
    table = Table(title=f"{problem.name}: maximum-likelihood fit",
                  caption=f"best NLL {calibration.best_nll:.6g}; {calibration.converged} of {len(calibration.starts)} "
                          f"starts reached it{_abandoned(calibration)}; nominal values: NLL {calibration.nominal_nll:.6g}; "
                          f"{calibration.seconds:.1f} s ({calibration.compile_seconds:.1f} s compiling)")
    for column in ("parameter", "scale", "value"):
        table.add_column(column, justify="left" if column != "value" else "right")
    for row in calibration.summary():
        table.add_row(row["parameter"], row["scale"], f"{row['value']:.6g}")
    console.print(table)
    if (missed := calibration.missed_nominal()) is not None:
        errors.print(f"[yellow]warning:[/] {missed}")
    if folder is not None:
        save_fit(folder, problem, calibration)
        plot_waterfall(calibration, folder / "waterfall.png", title=None)
        errors.print(f"wrote {folder / 'fit.json'} and {folder / 'waterfall.png'}")
    return problem, objective, calibration.best_x, folder


def _abandoned(calibration: Any) -> str:
    """The fit table's note of the starts abandoned, if any."""
    count = calibration.abandoned
    return f" ({count} abandoned: they could not catch up)" if count else ""


@app.command()
@user_errors
def fit(target: Target, data: DataFile = None, noise: Noise = "normal", starts: Starts = 20, seed: Seed = 0,
        processes: Processes = 1, output: Output = None, from_nominal: FromNominal = False,
        refine: Refine = False, abandon: Abandon = True, screen: Screen = True) -> None:
    """Calibrate a model on whole trajectories by multi-start maximum likelihood.

    Works on a PEtab problem (its own observables, noise and parameter table; the NLL is PEtab's,
    so it compares with AMICI and pyPESTO), on a twin folder, or on a model file with a CSV.
    Prints the best parameters and how many starts reached them; writes fit.json and the
    waterfall plot. Warns when the nominal parameter values fit better than every start.
    """
    _calibrated(target, data, noise, output, starts, seed, processes, reuse=False, from_nominal=from_nominal,
                refine=refine, abandon=abandon, screen=screen)


@app.command()
@user_errors
def profile(
    target: Target, data: DataFile = None, noise: Noise = "normal",
    parameter: Annotated[list[str], typer.Option("--parameter", "-p", help="Profile only this parameter (repeatable).")] = [],  # noqa: B006
    confidence: Annotated[float, typer.Option(help="Confidence level of the likelihood-ratio intervals.")] = 0.95,
    starts: Starts = 20, seed: Seed = 0, processes: Processes = 1, output: Output = None,
) -> None:
    """Profile likelihoods: a confidence interval and an identifiability verdict per parameter.

    Starts from fit.json in the output folder when it belongs to the same problem, else fits first.
    """
    import math

    from biotwin.identify import profile as run
    from biotwin.io.results import save_profiles
    from biotwin.objective import from_scale
    from biotwin.progress import rich_progress
    from biotwin.report.profiles import plot_profiles

    problem, objective, best, folder = _calibrated(target, data, noise, output, starts, seed, processes, reuse=True)
    with rich_progress(errors, "profile likelihood") as progress:
        profiles = run(objective, best, parameters=parameter or None, confidence=confidence, progress=progress)
    table = Table(title=f"{problem.name}: profile likelihood, {100 * confidence:g} % intervals",
                  caption=f"Fisher information rank {profiles.fisher_rank} of {objective.size}")
    for column in ("parameter", "estimate", "lower", "upper", "verdict"):
        table.add_column(column, justify="left" if column in ("parameter", "verdict") else "right")
    for p in profiles:
        low, high = p.interval
        value = float(from_scale(p.optimum, p.scale))
        table.add_row(p.name, f"{value:.4g}", "open" if math.isinf(p.lower) else f"{low:.4g}",
                      "open" if math.isinf(p.upper) else f"{high:.4g}", p.verdict)
    console.print(table)
    if profiles.improved:
        errors.print(f"[yellow]warning:[/] a profile reached NLL {profiles.better_nll:.6g} below the fit's "
                     f"{profiles.best_nll:.6g}: fit again with more starts", highlight=False)
    if folder is not None:
        save_profiles(folder, profiles)
        plot_profiles(profiles, folder / "profiles.png", title=problem.name)
        errors.print(f"wrote {folder / 'profiles.json'} and {folder / 'profiles.png'}")


@app.command()
@user_errors
def infer(
    target: Target, data: DataFile = None, noise: Noise = "normal",
    chains: Annotated[int, typer.Option(help="NUTS chains, started from the best fits.")] = 4,
    warmup: Annotated[int, typer.Option(help="Warm-up draws per chain (step-size adaptation).")] = 200,
    samples: Annotated[int, typer.Option(help="Draws kept per chain.")] = 1000,
    starts: Starts = 20, seed: Seed = 0, processes: Processes = 1, output: Output = None,
) -> None:
    """Bayesian posterior by NUTS: chains from the best fits, R-hat, ESS, divergences, predictive bands.

    Starts from fit.json in the output folder when it belongs to the same problem, else fits
    first; the chains start at the best fit's posterior mode, with the Laplace covariance there
    as their mass matrix. Writes posterior.parquet, posterior.json and the plots.
    """
    from biotwin.infer import infer as run
    from biotwin.io.results import save_posterior
    from biotwin.progress import rich_progress
    from biotwin.report.posterior import plot_posterior, plot_predictive

    problem, objective, best, folder = _calibrated(target, data, noise, output, starts, seed, processes, reuse=True)
    with rich_progress(errors, f"NUTS, {chains} chains") as progress:
        posterior = run(objective, best, chains=chains, warmup=warmup, samples=samples, seed=seed, progress=progress)
    table = Table(title=f"{problem.name}: posterior ({posterior.chains} chains x {posterior.draws} draws)",
                  caption=f"{posterior.divergences} divergences; min bulk ESS {posterior.min_ess:.0f} "
                          f"({posterior.ess_per_second:.1f}/s); {posterior.wall_time:.1f} s")
    for column in ("parameter", "mean", "5 %", "median", "95 %", "R-hat", "ESS"):
        table.add_column(column, justify="left" if column == "parameter" else "right")
    for row in posterior.summary(level=0.9):
        rhat = f"{row['rhat']:.3f}"
        table.add_row(str(row["name"]), f"{row['mean']:.4g}", f"{row['lower']:.4g}", f"{row['median']:.4g}",
                      f"{row['upper']:.4g}", rhat if row["rhat"] <= 1.01 else f"[red]{rhat}[/]", f"{row['ess_bulk']:.0f}")
    console.print(table)
    for warning in posterior.warnings:
        errors.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if folder is not None:
        written = [*save_posterior(folder, posterior), plot_posterior(posterior, folder / "posterior.png", title=problem.name)]
        bands = posterior.predictive(objective, seed=seed)
        written.append(plot_predictive(bands, folder / "predictive.png", title=problem.name))
        errors.print(f"{100 * bands.coverage:.0f} % of the measurements lie inside their 90 % predictive band")
        errors.print("wrote " + ", ".join(str(p) for p in written))


# ---------------------------------------------------------------------- virtual experiments
TwinFolder = Annotated[Path, typer.Argument(metavar="TWIN", help="A twin folder (from discover, or fit/infer with -o).")]


@app.command()
@user_errors
def predict(
    twin_folder: TwinFolder,
    scenarios: Annotated[Path, typer.Argument(help="Scenario file (YAML): horizon, doses, knock-outs, ... per scenario.")],
    draws: Annotated[int, typer.Option(help="Posterior draws to forecast over (all when the posterior has fewer).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the choice of draws.")] = 0,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Folder for forecasts.json/.csv and the plot (default: the twin folder).")] = None,
    png: Annotated[bool, typer.Option("--png/--no-png", help="Plot the forecasts to forecasts.png.")] = True,
) -> None:
    """Virtual experiments: forecast each scenario over the twin's posterior, with 50% and 90% bands.

    Every scenario runs over the same posterior draws (or the best fit when the twin has no
    posterior), so the comparisons the file asks for are effects with their own uncertainty.
    Writes forecasts.json (read by 'biotwin report'), forecasts.csv and forecasts.png.
    """
    import json

    from biotwin.experiment import compare, read_scenarios
    from biotwin.io.files import atomic_write_text
    from biotwin.io.twin import load_twin
    from biotwin.progress import rich_progress

    twin = load_twin(twin_folder)
    plan = read_scenarios(scenarios)
    for scenario in plan.scenarios:
        scenario.check(twin.model)
    forecasts = {}
    with rich_progress(errors, f"forecasting {len(plan.scenarios)} scenario(s)") as progress:
        for k, scenario in enumerate(plan.scenarios):
            forecasts[scenario.name] = twin.simulate(scenario, draws=draws, seed=seed)
            progress(k + 1, len(plan.scenarios), scenario.name)
    first = next(iter(forecasts.values()))
    table = Table(title=f"{twin_folder.name}: forecasts over {first.draws} {first.source} draw(s)",
                  caption="median [5 %, 95 %] at the horizon")
    quantities = first.quantities
    for column in ("scenario", *quantities, "failed draws"):
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for name, forecast in forecasts.items():
        cells = []
        for quantity in quantities:
            bands = forecast.bands(quantity)
            cells.append(f"{bands['median'][-1]:.4g} [{bands['q05'][-1]:.4g}, {bands['q95'][-1]:.4g}]")
        failed = f"[red]{forecast.n_failed}[/]" if forecast.n_failed else "0"
        table.add_row(name, *cells, failed)
    console.print(table)
    differences = [compare(forecasts[c.scenario], forecasts[c.baseline], c.quantity, c.time) for c in plan.comparisons]
    for difference in differences:
        console.print(f"  {difference.scenario}: {difference.text} (90 % interval over {difference.draws} paired draws)", highlight=False)
    for forecast in forecasts.values():
        if forecast.n_failed:
            errors.print(f"[yellow]warning:[/] scenario '{forecast.scenario.name}': {forecast.n_failed} of "
                         f"{forecast.draws} draws failed ({forecast.failures[0]}); bands use the rest", highlight=False)
    folder = output or twin_folder
    record = {"scenarios": {name: f.to_record() for name, f in forecasts.items()},
              "comparisons": [d.to_record() for d in differences]}
    import pandas as pd

    written = [atomic_write_text(folder / "forecasts.json", json.dumps(record, indent=1) + "\n"),
               atomic_write_text(folder / "forecasts.csv",
                                 pd.concat([f.to_frame() for f in forecasts.values()]).to_csv(index=False))]
    if png:
        from biotwin.report.forecasts import plot_forecasts

        written.append(plot_forecasts(forecasts, folder / "forecasts.png", time_unit=twin.dataset.time_unit))
    errors.print("wrote " + ", ".join(str(p) for p in written))


@app.command()
@user_errors
def optimize(
    twin_folder: TwinFolder,
    design_file: Annotated[Path, typer.Argument(metavar="DESIGN", help="Design file (YAML): scenario, bolus or infusion, goal, bounds, standard.")],
    seed: Annotated[int, typer.Option(help="Seed of the choice of draws.")] = 0,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Folder for schedule.json and the plot (default: the twin folder).")] = None,
) -> None:
    """Optimise dose amounts and times (or an infusion profile) on the twin, robustly over its posterior.

    Minimises the goal (a quantity at the horizon, its area, or the time above a threshold) under
    dose limits and bounds on other quantities (toxicity), by gradients through the solver; then
    forecasts the optimum, the standard regimen of the file and no treatment over up to 1,000
    posterior draws and compares them draw by draw. With 'feedback:' in the design file, a
    neural-network rule that doses from the observed state is trained too and compared.
    """
    import json

    import numpy as np

    from dataclasses import replace

    from biotwin.control import BolusDesign, goal_values, optimise_schedule, read_design
    from biotwin.experiment import compare, forecast
    from biotwin.feedback import train_feedback
    from biotwin.io.files import atomic_write_text
    from biotwin.io.twin import load_twin
    from biotwin.progress import rich_progress
    from biotwin.report.forecasts import plot_forecasts

    twin = load_twin(twin_folder)
    plan = read_design(design_file)
    base = plan.scenario
    # Optimise over some draws, test on others: an optimum fitted to its draws looks better on them.
    posterior = twin.draws(None)
    training, testing = posterior.split(plan.draws, seed)
    with rich_progress(errors, f"optimising over {len(training)} draws") as progress:
        schedule = optimise_schedule(twin.model, base, plan.design, plan.goal, bounds=plan.bounds,
                                     draws=training, robust=plan.robust,
                                     confidence=plan.confidence, progress=progress)
    rule = None
    if plan.feedback is not None:
        with rich_progress(errors, f"training the feedback rule over {len(training)} draws") as progress:
            # The rule starts from the open-loop optimum's doses where it decides at the same times.
            same_times = np.array_equal(np.asarray(plan.feedback.doses.times, dtype=float), schedule.times)
            rule = train_feedback(twin.model, base, plan.feedback, plan.goal, bounds=plan.bounds,
                                  draws=training, robust=plan.robust,
                                  confidence=plan.confidence, progress=progress,
                                  start_from=schedule.amounts if same_times else None)
    regimens = {"no treatment": replace(base, name="no treatment"), "optimised": schedule.scenario(base, "optimised")}
    if plan.standard:
        regimens["standard"] = replace(base, name="standard", doses=plan.standard)
    draws = testing.subsample(1000, seed)
    forecasts = {name: forecast(twin.model, scenario, draws) for name, scenario in regimens.items()}
    totals = {"no treatment": 0.0, "optimised": schedule.total, "standard": float(sum(d.amount * d.count for d in plan.standard))}
    if rule is not None:
        forecasts["feedback"], given = rule.forecast(twin.model, base, draws)
        totals["feedback"] = float(np.median(given.sum(axis=1)))
    schedule_table = Table(title=f"{plan.goal.text}: optimised schedule ({'converged' if schedule.converged else schedule.message}, "
                                 f"{schedule.iterations} iterations, {schedule.seconds:.0f} s)")
    for column in ("time", "amount" if isinstance(plan.design, BolusDesign) else "rate"):
        schedule_table.add_column(column, justify="right")
    for t, a, given in zip(schedule.times, schedule.amounts, schedule.given):
        if given:
            schedule_table.add_row(f"{t:.4g}", f"{a:.4g}")
    console.print(schedule_table)
    held_out = " not optimised over" if len(testing) < len(posterior) else ""
    table = Table(title=f"goal per regimen over {len(draws)} {draws.source} draw(s){held_out}",
                  caption="median [5 %, 95 %]")
    for column in ("regimen", "total dose" + (" (median)" if rule else ""), "goal",
                   *(f"{b.quantity} worst" for b in plan.bounds), "failed"):
        table.add_column(column, justify="left" if column == "regimen" else "right")
    summary = {}
    for name, result in forecasts.items():
        values = goal_values(result, plan.goal)
        low, mid, high = np.nanquantile(values, [0.05, 0.5, 0.95])
        cells = [f"{mid:.4g} [{low:.4g}, {high:.4g}]"]
        for bound in plan.bounds:
            q = result.trajectories(bound.quantity)
            worst = np.nanmin(q, axis=1) if bound.lower is not None else np.nanmax(q, axis=1)
            cells.append(f"{np.nanquantile(worst, 0.5):.4g} [{np.nanquantile(worst, 0.05):.4g}, {np.nanquantile(worst, 0.95):.4g}]")
        table.add_row(name, f"{totals[name]:.4g}", *cells, str(result.n_failed))
        summary[name] = {"total": totals[name], "goal_median": float(mid), "goal_q05": float(low), "goal_q95": float(high)}
    console.print(table)
    differences = []
    for scenario, reference in (("optimised", "standard"), ("optimised", "no treatment"), ("feedback", "optimised")):
        if scenario in forecasts and reference in forecasts and plan.goal.kind == "final":
            differences.append(compare(forecasts[scenario], forecasts[reference], plan.goal.quantity, base.horizon))
    for difference in differences:
        console.print(f"  {difference.scenario}: {difference.text} (90 % interval, paired draws)", highlight=False)
    folder = output or twin_folder
    record = {"goal": plan.goal.text, "times": schedule.times.tolist(), "amounts": schedule.amounts.tolist(),
              "total": schedule.total, "value": schedule.value, "start_value": schedule.start_value,
              "converged": schedule.converged, "message": schedule.message, "iterations": schedule.iterations,
              "seconds": schedule.seconds, "regimens": summary, "comparisons": [d.to_record() for d in differences],
              "feedback": rule.to_record() if rule is not None else None}
    written = [atomic_write_text(folder / "schedule.json", json.dumps(record, indent=1) + "\n"),
               plot_forecasts(forecasts, folder / "schedule.png", time_unit=twin.dataset.time_unit)]
    errors.print("wrote " + ", ".join(str(p) for p in written))


# ---------------------------------------------------------------------- report and export
@app.command()
@user_errors
def report(
    twin_folder: TwinFolder,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="The HTML file (default: TWIN/report.html).")] = None,
    png: Annotated[Path | None, typer.Option("--png", help="Also write the static fit figure (PNG or SVG) here.")] = None,
    draws: Annotated[int, typer.Option(help="Posterior draws simulated for the predictive bands.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the choice of draws.")] = 0,
) -> None:
    """Write one self-contained HTML report of a twin: fits with bands, equations, Pareto front,
    parameters with intervals and verdicts, posterior pairs, scenario forecasts. Opens offline."""
    from biotwin.report.html import write_report

    with errors.status("writing the report…"):
        path = write_report(twin_folder, output, draws=draws, seed=seed)
    if png is not None:
        from biotwin.report.plots import plot_twin

        plot_twin(twin_folder, png, draws=draws, seed=seed)
        errors.print(f"wrote {png}")
    console.print(f"report: {path.resolve()} ({path.stat().st_size / 1e6:.1f} MB)")


@app.command()
@user_errors
def export(
    twin_folder: TwinFolder,
    sbml: Annotated[Path | None, typer.Option("--sbml", help="Write the model as SBML Level 3 here (parameters at the fit).")] = None,
    petab: Annotated[Path | None, typer.Option("--petab", help="Write the twin as a PEtab problem into this folder.")] = None,
    noise: Noise = "normal",
) -> None:
    """Export a twin for other tools: SBML (libRoadRunner, COPASI, AMICI) and PEtab (pyPESTO, AMICI, Data2Dynamics)."""
    from biotwin.io.petab import write_petab
    from biotwin.io.sbml import write_sbml
    from biotwin.io.twin import load_twin

    if sbml is None and petab is None:
        raise typer.BadParameter("say what to write: --sbml FILE and/or --petab FOLDER")
    twin = load_twin(twin_folder)
    values = {k: v for k, v in twin.fit.items() if k in twin.model.parameter_names}
    if sbml is not None:
        write_sbml(twin.model, sbml, parameters=values)
        errors.print(f"wrote {sbml}")
    if petab is not None:
        errors.print(f"wrote {write_petab(twin.model, twin.dataset, petab, noise=noise, parameters=values)}")


# ---------------------------------------------------------------------- biotwin bench ...
def _numbers(text: str, option: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"'{text}' is not a comma-separated list of numbers", param_hint=option) from None


@bench_app.command("list")
@user_errors
def bench_list(suite: Annotated[str, typer.Option(help="odebench or bio.")] = "bio") -> None:
    """List the systems of a suite with their sources."""
    from biotwin.bench.systems import suite as load

    table = Table(title=f"suite '{suite}'")
    for column in ("system", "states", "experiments", "held out", "description"):
        table.add_column(column)
    for system in load(suite):
        table.add_row(system.name, ", ".join(system.model.states), str(len(system.training)),
                      ", ".join(d.name for d in system.held_out), system.description[:60])
    console.print(table)


@bench_app.command("run")
@user_errors
def bench_run(
    suite: Annotated[str, typer.Option(help="Suite: odebench or bio.")] = "odebench",
    method: Annotated[list[str], typer.Option("--method", "-m", help="Method (repeatable): biotwin, pysindy, pysindy-cv, operon.")] = ["pysindy"],  # noqa: B006
    noise: Annotated[str | None, typer.Option(help="Multiplicative noise levels sigma, comma-separated (default 0, or none with --corrupt).")] = None,
    subsample: Annotated[str, typer.Option(help="Fractions rho of points dropped, comma-separated.")] = "0",
    corrupt: Annotated[list[str], typer.Option("--corrupt", help="Further corruption spec (repeatable), e.g. 'lognormal=0.1,hide=x'.")] = [],  # noqa: B006
    seeds: Annotated[str, typer.Option(help="Seeds, comma-separated.")] = "0",
    system: Annotated[list[str], typer.Option("--system", help="Only these systems (repeatable).")] = [],  # noqa: B006
    jobs: Annotated[int, typer.Option(help="Cells run at a time on this machine.")] = 1,
    time_limit: Annotated[float, typer.Option(help="Seconds per cell before it is stopped.")] = 300.0,
    db: Annotated[Path, typer.Option(help="DuckDB results file (finished cells are skipped).")] = DEFAULT_DB,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address tcp://HOST:PORT.")] = None,
) -> None:
    """Run a sweep: every system x corruption x method x seed, resumable, stored in DuckDB."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from biotwin.bench.runner import grid, sweep
    from biotwin.bench.store import ResultStore

    # --corrupt alone runs only those corruptions; --noise/--subsample add their grid to them.
    levels = [] if noise is None and corrupt and subsample == "0" else _numbers(noise or "0", "--noise")
    corruptions = [
        ",".join(p for p in (f"noise={s:g}" if s else "", f"subsample={r:g}" if r else "") if p) or "clean"
        for s in levels for r in _numbers(subsample, "--subsample")
    ] + list(corrupt)
    cells = grid(suite, system, corruptions, method, [int(v) for v in _numbers(seeds, "--seeds")])
    with ResultStore(db) as store:
        already = sum(1 for c in cells if c.key in store.finished())
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn())
        failures = 0
        with Progress(*columns, console=errors) as progress:
            task = progress.add_task(f"{suite}: {len(cells) - already} cells to run", total=len(cells) - already)

            def advance(result: Any, done: int, total: int) -> None:
                nonlocal failures
                failures += result.status != "ok"
                progress.update(task, advance=1, description=f"{result.system[:28]:28s} {result.method}")
                if not errors.is_terminal:
                    # A log file gets no live bar: one line per finished cell instead.
                    errors.print(
                        f"[{done}/{total}] {result.system} {result.corruption} {result.method} seed {result.seed}: "
                        f"{result.status} recon R²={result.recon_r2:.3f} gen R²={result.gen_r2:.3f} "
                        f"({result.wall_time:.1f} s)", highlight=False, soft_wrap=True,
                    )

            results = sweep(cells, store, jobs=jobs, time_limit=time_limit, scheduler=scheduler, on_result=advance)
    errors.print(f"{len(results)} cells run ({already} already in {db}), {failures} failed or timed out")
    _leaderboard_table(db)


@bench_app.command("report")
@user_errors
def bench_report(
    db: Annotated[Path, typer.Option(help="DuckDB results file.")] = DEFAULT_DB,
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML leaderboard to write.")] = Path("bench-results") / "leaderboard.html",
) -> None:
    """Print the leaderboard and write it as a self-contained HTML page beside the published ODEBench scores."""
    from biotwin.bench.leaderboard import write_html

    if not db.exists():
        from biotwin.errors import DataError

        raise DataError(f"{db}: no results database; run 'biotwin bench run' first or pass --db")
    _leaderboard_table(db)
    errors.print(f"wrote {write_html(db, output)}")


def _leaderboard_table(db: Path) -> None:
    from biotwin.bench.leaderboard import summary
    from biotwin.bench.store import ResultStore

    with ResultStore(db) as store:
        frame = summary(store.frame())[
            ["suite", "corruption", "method", "cells", "failed", "recon %", "gen %", "exact %", "param err", "time s"]
        ]
    table = Table(title=f"leaderboard ({db}); share of systems with R² > 0.9")
    for column in frame.columns:
        table.add_column(str(column), justify="left" if frame[column].dtype == object else "right")
    for _, row in frame.iterrows():
        table.add_row(*(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)


def main() -> None:
    """Entry point of the ``biotwin`` console script."""
    app(prog_name="biotwin")


if __name__ == "__main__":
    sys.exit(main())

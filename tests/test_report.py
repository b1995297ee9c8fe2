"""The HTML report of a twin folder, opened in a real headless Chromium, and the static figure.

The twin folder is built once per module the way the commands build it: a twin (the
Lotka-Volterra model with the Hudson Bay data and three more experiments from other starts),
a multi-start fit, profiles, a NUTS posterior of 1,000 draws, discovery's record of a real
``biotwin discover`` run on the same data, and forecasts in the format of ``biotwin predict``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from biotwin.report.browser import CHROMIUM, drawing_time
from tests.conftest import EXAMPLES

SCREENSHOTS = Path("/tmp/report_screenshots")
#: A report of 4 experiments and 1,000 posterior draws must open within this time and size.
MAX_LOAD_SECONDS, MAX_BYTES = 2.0, 10_000_000

MODEL = """\
dhare/dt = alpha*hare - beta*hare*lynx      # prey grow, are eaten
dlynx/dt = -gamma*lynx + delta*hare*lynx    # predators die, grow by eating
alpha in [0.1, 2] = 0.55
beta in [0.001, 0.2] = 0.028
gamma in [0.1, 3] = 0.80
delta in [0.001, 0.2] = 0.024
"""


def _forecasts(model, best: dict[str, float]) -> dict:
    """Forecasts in the format ``biotwin predict`` writes: two scenarios and one comparison."""
    from biotwin.data import Bolus
    from biotwin.simulate import simulate

    times = np.linspace(0.0, 30.0, 61)
    scenarios = {}
    for name, doses in (("no harvest", ()), ("lynx release", (Bolus(10.0, "lynx", 20.0),))):
        solution = simulate(model, best, {"hare": 30.0, "lynx": 4.0}, times, doses=doses)

        def spread(values: np.ndarray) -> dict[str, list[float]]:
            return {"median": list(values), **{q: list(values * f) for q, f in
                                                (("q05", 0.6), ("q25", 0.85), ("q75", 1.15), ("q95", 1.5))}}

        scenarios[name] = {
            "times": list(times), "samples": 200, "failed": 0,
            "observables": {o: spread(solution.observable(o)) for o in model.observable_names},
            "states": {s: spread(solution.state(s)) for s in model.states},
        }
    text = "hare at t=30: -42% [-55%, -28%] vs. no harvest"
    comparisons = [{"scenario": "lynx release", "baseline": "no harvest", "quantity": "hare", "time": 30.0,
                    "median": -0.42, "low": -0.55, "high": -0.28, "text": text}]
    return {"scenarios": scenarios, "comparisons": comparisons}


@pytest.fixture(scope="module")
def twin_folder(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from biotwin.data import Dataset, Experiment
    from biotwin.fit import multistart, start_points
    from biotwin.identify import profile
    from biotwin.infer import infer
    from biotwin.io.csv import read_csv
    from biotwin.io.results import save_fit, save_posterior, save_profiles
    from biotwin.io.twin import save_twin
    from biotwin.model import Model
    from biotwin.problem import problem
    from biotwin.simulate import simulate
    from biotwin.twin import Twin

    folder = tmp_path_factory.mktemp("report") / "lynx_hare"
    model = Model.from_text(MODEL, name="lynx_hare")
    hudson = next(iter(read_csv(EXAMPLES / "data" / "hudson_bay_lynx_hare.csv")))
    experiments = [hudson.replace(name="hudson_bay")]
    rng = np.random.default_rng(1)
    for k, start in enumerate([(20.0, 10.0), (50.0, 4.0), (10.0, 20.0)], 1):
        # Without initial expressions in the model, each experiment starts at its first measurement.
        solution = simulate(model, y0=dict(zip(("hare", "lynx"), start)), times=hudson.times, start=float(hudson.times[0]))
        values = solution.states * np.exp(0.1 * rng.standard_normal(solution.states.shape))
        values[0] = start
        experiments.append(Experiment(f"start_{k}", hudson.times, ("hare", "lynx"), values))
    dataset = Dataset(tuple(experiments), source="hudson_bay_lynx_hare.csv + 3 simulated", time_unit="year")
    discovery = json.loads((Path(__file__).parent / "data" / "lynx_hare_discovery.json").read_text())
    save_twin(Twin(model, dataset, discovery=discovery), folder)

    calibration_problem = problem(folder, noise="lognormal")
    objective = calibration_problem.objective()
    calibration = multistart(objective, starts=np.vstack([objective.nominal, start_points(objective, 3)]))
    save_fit(folder, calibration_problem, calibration)
    save_profiles(folder, profile(objective, calibration.best_x, max_points=10))
    posterior = infer(objective, calibration.best_x, chains=2, warmup=150, samples=500)
    save_posterior(folder, posterior)
    best = {k: v for k, v in calibration.parameters.items() if k in model.parameter_names}
    (folder / "forecasts.json").write_text(json.dumps(_forecasts(model, best)))
    return {"folder": folder, "calibration": calibration, "posterior": posterior}


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}; install it with 'make chromium'")
def test_report_renders_every_section_in_chromium(twin_folder: dict, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from biotwin.report.html import write_report

    report = write_report(twin_folder["folder"], tmp_path / "report.html")
    size = report.stat().st_size
    assert size < MAX_BYTES
    html = report.read_text(encoding="utf-8")
    assert "<script src=" not in html  # self-contained: every script inline, and no request below leaves the file
    assert "hare at t=30: -42% [-55%, -28%] vs. no harvest" in html

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
        try:
            loads: list[tuple[float, float]] = []
            problems: list[str] = []
            for attempt in range(3):
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                problems.clear()
                page.on("console", lambda message: message.type == "error" and problems.append(message.text))
                page.on("pageerror", lambda error: problems.append(str(error)))
                page.on("request", lambda request: request.url.startswith("http") and problems.append(request.url))
                loads.append(drawing_time(page, report.as_uri()))
                if loads[-1][0] < MAX_LOAD_SECONDS or attempt == 2:
                    break
                page.close()
            plots = page.eval_on_selector_all(
                "div.plot", "divs => divs.map(d => [d.id, d.querySelectorAll('.main-svg').length])")
            sections = {plot_id.split("-")[1] for plot_id, _ in plots}
            assert sections == {"fits", "discovery", "posterior", "forecasts"}
            assert len(plots) == 4 + 2 + 1 + 2
            assert all(count > 0 for _, count in plots), plots
            assert page.locator("math").count() >= 1
            assert page.locator("math mfrac").count() == 2  # dhare/dt and dlynx/dt
            assert page.locator("table.biotwin td", has_text="identifiable").count() >= 4
            assert problems == []
            screenshot = page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "report.png", SCREENSHOTS / "report.png")
    assert len(screenshot) > 50_000
    wall, cpu = min(w for w, _ in loads), min(c for _, c in loads)
    busy = os.getloadavg()[0] / (os.cpu_count() or 1)
    print(f"\nreport: {size / 1e6:.2f} MB; drawn in {wall:.2f} s wall-clock (best of {len(loads)}), "
          f"{cpu:.2f} s of the page's CPU time; machine load {busy:.1f} per core")
    assert cpu < MAX_LOAD_SECONDS
    # Wall-clock time is the user's wait only on a machine not busy with other processes.
    if busy <= 1.0:
        assert wall < MAX_LOAD_SECONDS


def test_report_names_the_command_for_each_missing_result(twin_folder: dict, tmp_path: Path) -> None:
    from biotwin.io.twin import load_twin, save_twin
    from biotwin.report.html import write_report

    bare = save_twin(load_twin(twin_folder["folder"]), tmp_path / "bare")
    html = write_report(bare).read_text(encoding="utf-8")
    for command in ("biotwin fit TWIN_DIR", "biotwin profile TWIN_DIR", "biotwin infer TWIN_DIR", "biotwin predict TWIN_DIR"):
        assert command in html
    assert "plot-posterior" not in html and "plot-forecasts" not in html and "plot-fits-3" in html


def test_plot_twin_draws_the_bands_of_every_experiment(twin_folder: dict, tmp_path: Path) -> None:
    from matplotlib.collections import PolyCollection

    from biotwin.report.plots import plot_twin

    figure = plot_twin(twin_folder["folder"], tmp_path / "twin.png")
    panels = [axis for axis in figure.axes if axis.get_visible()]
    assert len(panels) == 4
    # Per panel: two observables, each with a 90 % and a 50 % band.
    assert all(sum(isinstance(c, PolyCollection) for c in axis.collections) == 4 for axis in panels)
    assert (tmp_path / "twin.png").stat().st_size > 10_000


def test_predictive_bands_cover_most_of_the_data(twin_folder: dict) -> None:
    from biotwin.report.folder import read_results
    from biotwin.report.trajectories import trajectories

    results = read_results(twin_folder["folder"])
    curves = trajectories(results, draws=200)
    inside = total = 0
    for experiment in results.twin.dataset:
        curve = curves[experiment.name]
        assert curve.noisy and curve.draws == 200
        for name in experiment.observables:
            times, values = experiment.observed(name)
            lower, upper = (np.interp(times, curve.times, edge) for edge in curve.band(name, 0.9))
            inside += int(np.sum((values >= lower) & (values <= upper)))
            total += values.size
    assert inside / total > 0.75


def test_plot_data_keep_six_significant_digits() -> None:
    from biotwin.report.html import compact

    assert compact({"y": np.array([1.23456789, np.nan, 1e-12 / 3]), "n": np.int64(3), "ok": True}) == {
        "y": [1.23457, None, 3.33333e-13], "n": 3, "ok": True}


def test_notebook_views_are_tables(twin_folder: dict) -> None:
    from biotwin.io.twin import load_twin

    twin = load_twin(twin_folder["folder"])
    for value, expected in ((twin.model, "alpha"), (twin, "start_3"), (twin_folder["calibration"], "sigma_hare"),
                            (twin_folder["posterior"], "max R-hat")):
        html = value._repr_html_()
        assert html.count("<table") >= 1 and expected in html

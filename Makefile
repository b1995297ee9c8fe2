# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO := demo

.PHONY: install demo test test-all bench clean chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The main job, end to end, on the bundled real data.
demo: $(STAMP)
	mkdir -p $(DEMO)
	$(BIN)/biotwin data check examples/data/hudson_bay_lynx_hare.csv
	$(BIN)/biotwin simulate examples/models/lotka_volterra_lynx_hare.txt \
		--data examples/data/hudson_bay_lynx_hare.csv \
		--png $(DEMO)/lynx_hare.png -o $(DEMO)/lynx_hare_fit.csv
	$(BIN)/biotwin data check examples/data/influenza_1978_boarding_school.csv
	$(BIN)/biotwin simulate examples/models/sir_influenza.txt \
		--data examples/data/influenza_1978_boarding_school.csv \
		--png $(DEMO)/influenza.png -o $(DEMO)/influenza_fit.csv
	$(BIN)/biotwin simulate examples/models/lotka_volterra_lynx_hare.txt --t 0:40:401 \
		--dose 10:lynx:20 --png $(DEMO)/lynx_release.png -o $(DEMO)/lynx_release.csv
	$(BIN)/biotwin discover examples/data/hudson_bay_lynx_hare.csv -o $(DEMO)/lynx_hare_discovered
	rm -rf $(DEMO)/lynx_hare_twin
	$(BIN)/biotwin fit examples/models/lotka_volterra_lynx_hare.txt examples/data/hudson_bay_lynx_hare.csv \
		--noise lognormal --starts 8 -o $(DEMO)/lynx_hare_twin
	$(BIN)/biotwin profile $(DEMO)/lynx_hare_twin --noise lognormal
	$(BIN)/biotwin infer $(DEMO)/lynx_hare_twin --noise lognormal --samples 500
	$(BIN)/biotwin predict $(DEMO)/lynx_hare_twin examples/scenarios/lynx_hare.yaml
	$(BIN)/biotwin report $(DEMO)/lynx_hare_twin -o $(DEMO)/report.html
	$(BIN)/biotwin report $(DEMO)/lynx_hare_discovered -o $(DEMO)/discovered_report.html
	rm -rf $(DEMO)/influenza_twin
	$(BIN)/biotwin fit examples/models/sir_influenza.txt examples/data/influenza_1978_boarding_school.csv \
		--noise proportional --starts 8 -o $(DEMO)/influenza_twin
	$(BIN)/biotwin profile $(DEMO)/influenza_twin --noise proportional
	$(BIN)/biotwin infer $(DEMO)/influenza_twin --noise proportional --samples 500
	$(BIN)/biotwin predict $(DEMO)/influenza_twin examples/scenarios/influenza.yaml
	$(BIN)/biotwin report $(DEMO)/influenza_twin -o $(DEMO)/influenza_report.html
	@echo "demo outputs are in $(DEMO)/:"
	@echo "  $(DEMO)/report.html            the lynx-hare twin: fit, posterior, profiles, virtual experiments"
	@echo "  $(DEMO)/discovered_report.html the lynx-hare model discovered from the data alone"
	@echo "  $(DEMO)/influenza_report.html  the influenza twin: fit, posterior, profiles, interventions"
	@echo "  lynx_hare.png, influenza.png, lynx_release.png and the CSV tables"

# Debian's Chromium for the report's browser test; without root (and sudo) the test is skipped.
chromium:
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; else SUDO=none; fi; \
		if [ "$$SUDO" != none ] && $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; then :; \
		else echo "chromium could not be installed (no root or no network): the browser test will be skipped"; fi; }

# Tests run in two worker processes, one per core, each taking whole files: a module-scoped
# fixture (a fitted twin with its posterior) is then built once, not once per worker. Files go
# out in collection order, longest first (tests/conftest.py), not xdist's default of most tests
# first, which left the few minute-long hybrid tests for one worker at the end.
test: $(STAMP) chromium
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=25

test-all: $(STAMP)
	$(BIN)/python -m pytest -m ''

bench: $(STAMP)
	$(BIN)/python benchmarks/simulate_vs_scipy.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache build src/*.egg-info

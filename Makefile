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
	$(BIN)/biotwin discover examples/data/hudson_bay_lynx_hare.csv -o $(DEMO)/lynx_hare_twin
	@echo "demo outputs are in $(DEMO)/: lynx_hare.png, influenza.png, lynx_release.png, the CSV tables,"
	@echo "and the discovered lynx-hare twin in $(DEMO)/lynx_hare_twin/"

# Debian's Chromium for the report's browser test; without root (and sudo) the test is skipped.
chromium:
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; else SUDO=none; fi; \
		if [ "$$SUDO" != none ] && $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; then :; \
		else echo "chromium could not be installed (no root or no network): the browser test will be skipped"; fi; }

test: $(STAMP) chromium
	$(BIN)/python -m pytest

test-all: $(STAMP)
	$(BIN)/python -m pytest -m ''

bench: $(STAMP)
	$(BIN)/python benchmarks/simulate_vs_scipy.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache build src/*.egg-info

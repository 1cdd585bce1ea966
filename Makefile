# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench bench-quality bench-cdnow bench-cadence airflow-ui clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@# The UI test drives Debian's chromium (Playwright's own browser download needs the open internet).
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || \
		echo "chromium is missing: install Debian's chromium package for the Model Health UI test"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The main job: a drifting world's timeline replayed through real Airflow DAG runs.
demo: install
	PYTHONPATH=plugins $(BIN)/python -u -m demo.replay

# The Airflow UI (http://localhost:8080) on the demo's databases; login: see README.
airflow-ui: install
	PYTHONPATH=plugins $(BIN)/python -u -m demo.standalone

# Two workers; a test file stays on one worker (its module fixtures are built once). TEST_WORKERS=0: serial.
# One OpenMP thread per worker (boosting's): two workers of two threads each on two cores spin against
# each other: the two longest tests, side by side, took 759 s and 687 s in one run (the second alone: 204 s).
TEST_WORKERS ?= 2
TEST_THREADS ?= 1
test: install
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Scale benchmark (10k, 100k, 1M clients): table on stdout, figures in bench/results/suite.json.
bench: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/suite.py

bench-quality: install
	$(BIN)/python bench/quality.py

# Real data: CDNOW through `mlcore ingest transactions`; the published BG/NBD and Gamma-Gamma estimates
# reproduced; Fast, Elite and BG/NBD x GG on the 90 days after the calibration period.
bench-cdnow: install
	$(BIN)/python bench/cdnow.py

# The monitoring loop in the production cadence (H = 90, weekly retraining, daily checks) on a stable,
# a drifting and a covariate-shifted world: timeline and counts on stdout, bench/results/cadence.json.
bench-cadence: install
	$(BIN)/python -u bench/cadence.py

clean:
	rm -rf $(VENV) var

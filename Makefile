# The two commands of the README. Each creates .venv and installs what it needs on first use
# (requirements.txt; the tests also requirements-test.txt), again whenever those files change;
# later runs reuse it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WORKDIR ?= workdirs/tiny
DATA_DIR ?= .cache/medpalm_m/tensorflow_datasets
# Two pytest workers: the suite is mostly many small XLA programs, which one core compiles
# while the other runs.
TEST_WORKERS ?= 2

.PHONY: run test

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $@

# Train the tiny default on the synthetic MultiMedBench-mini (built on first use), then evaluate.
run: $(VENV)/.installed
	$(PY) -m medpalm_m.train --config=configs/tiny.py --workdir=$(WORKDIR) --config.data.data_dir=$(DATA_DIR)
	$(PY) -m medpalm_m.evaluate --config=configs/tiny.py --workdir=$(WORKDIR) --config.data.data_dir=$(DATA_DIR)

# The real-BAM pileup test reads Debian's python-pysam-tests (installed where apt and root allow;
# the test says why it skips elsewhere).
test: $(VENV)/.installed-test
	sh tests/data/fetch_pysam_test_data.sh
	sh tests/rating/install_chromium.sh
	$(PY) -m pytest -n $(TEST_WORKERS) -q --durations=15

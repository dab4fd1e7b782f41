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

# uv installs requirements.txt: it downloads in parallel and took 25 s where pip took 182 s on
# a fresh 2-core VM (the download is ~400 MB; editable install included). Where uv
# cannot (no PyPI, only a mirror that pip.conf names), pip does the same install.
UV_VERSION := 0.13.9

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION) \
	  && $(PY) -m uv pip install --quiet --python $(PY) -r requirements.txt \
	  && $(PY) -m uv pip install --quiet --python $(PY) --no-deps -e . \
	  || { $(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt \
	       && $(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e . ; }
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

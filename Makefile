# The two commands of the README. Each creates .venv and installs what it needs on first use
# (requirements.txt; the tests also requirements-test.txt), again whenever those files change;
# later runs reuse it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WORKDIR ?= workdirs/tiny
DATA_DIR ?= .cache/medpalm_m/tensorflow_datasets
# Two pytest workers: the suite is mostly many small XLA programs, which one core compiles
# while the other runs. Work stealing: the slow training tests cluster in a few files, and
# an idle worker takes queued tests from the busy one instead of waiting at the end.
TEST_WORKERS ?= 2

.PHONY: run test

# Python writes each module's bytecode once, into .venv and __pycache__/ (both ignored by git):
# where the environment sets PYTHONDONTWRITEBYTECODE, every process recompiled the source of
# the modules it imports: 6.3 s of an 8-step training run's 22 s went to compiling 2,255 modules
# (cProfile, 2-core AMD EPYC), paid by both steps of `make run` and by every training subprocess
# of the tests.
unexport PYTHONDONTWRITEBYTECODE

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
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal -q --durations=15

import os
import sys

import pytest

# Tests run on the host CPU; tests that need several simulated devices run a subprocess.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# scikit-learn fits in the data tests are ~20x slower with OpenBLAS's default threading here.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# One XLA compilation cache for the whole session: the pytest workers and every `medpalm_m.train`
# subprocess the tests start inherit it, so a program compiled once (most tests train
# tests/small_config.py) is loaded from disk afterwards. On a 2-core AMD EPYC an 8-step
# small_config run took 42 s compiling and 21.5 s loading. The controller creates the directory
# before its workers start, and removes it at exit.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ and not os.environ.get("PYTEST_XDIST_WORKER"):
  import atexit
  import shutil
  import tempfile
  _cache = tempfile.mkdtemp(prefix="medpalm_m_test_xla_cache_")
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
  # Programs that compile in under a second are cheaper to compile than to look up and write.
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")


def shared_directory(tmp_path_factory):
  """This test run's directory, the same for all its pytest-xdist workers."""
  root = tmp_path_factory.getbasetemp()
  return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


@pytest.fixture(autouse=True)
def _exclusive_tests_run_alone(request, tmp_path_factory):
  """A test marked `exclusive` runs with no other test beside it; under pytest-xdist the others
  wait. Its simulated devices or processes wait on each other at every collective, so a core
  taken by another worker stalls them all: on a 2-core AMD EPYC, within one hour, the two-process
  resume test took 58 s alone and 112 s beside the other worker, the planner's 8-device check 21 s
  and 53 s.

  A readers-writer lock over the workers' shared directory: every test holds `machine` shared,
  an exclusive test holds it exclusively. flock does not queue a waiting writer ahead of new
  readers, so each test first passes a turnstile that the waiting writer holds."""
  if not os.environ.get("PYTEST_XDIST_WORKER"):
    yield
    return
  import fcntl
  root = shared_directory(tmp_path_factory)
  mode = fcntl.LOCK_EX if request.node.get_closest_marker("exclusive") else fcntl.LOCK_SH
  with open(root / "machine.turnstile", "a") as turnstile, open(root / "machine.lock", "a") as machine:
    fcntl.flock(turnstile, fcntl.LOCK_EX)
    try:
      fcntl.flock(machine, mode)
    finally:
      fcntl.flock(turnstile, fcntl.LOCK_UN)
    try:
      yield
    finally:
      fcntl.flock(machine, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory):
  """MultiMedBench-mini built once per test session, shared by pytest-xdist workers."""
  import fcntl

  from medpalm_m.data import build
  root = shared_directory(tmp_path_factory)
  data_dir = root / "synthetic_tfds"
  with open(root / "synthetic_tfds.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # one worker builds, the others wait and reuse it
    build.build_synthetic(str(data_dir), verbose=False)
  return str(data_dir)


@pytest.fixture(scope="session")
def evaluated_workdir(tmp_path_factory, synthetic_data_dir):
  """A workdir such as `make run` leaves, in miniature, for tests that only read one (the notebooks
  and medpalm_m.inspection): tests/small_config.py trained 4 steps with metrics logged at every
  step and evaluated at steps 2 and 4 (eval/step_N.json). Built once per session, shared by
  pytest-xdist workers."""
  import fcntl

  from medpalm_m import trainer
  from tests import small_config
  root = shared_directory(tmp_path_factory)
  workdir = root / "evaluated_workdir"
  with open(root / "evaluated_workdir.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not (workdir / "eval" / "step_4.json").exists():
      cfg = small_config.get_config()
      cfg.data.update(data_dir=synthetic_data_dir, build_synthetic=False)  # built above
      cfg.train.update(num_steps=4, eval_every=2, checkpoint_every=4)  # one checkpoint: step 4
      cfg.eval.max_examples_per_task = 4
      trainer.train(cfg, str(workdir))
  return str(workdir)

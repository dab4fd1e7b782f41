import os
import sys

import pytest

# Tests run on the host CPU; tests that need several simulated devices run a subprocess.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# scikit-learn fits in the data tests are ~20x slower with OpenBLAS's default threading here.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory):
  """MultiMedBench-mini built once per test session, shared by pytest-xdist workers."""
  import fcntl

  from medpalm_m.data import synthetic
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent  # this run's directory, shared by its xdist workers
  data_dir = root / "synthetic_tfds"
  with open(root / "synthetic_tfds.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # one worker builds, the others wait and reuse it
    synthetic.build(str(data_dir), verbose=False)
  return str(data_dir)

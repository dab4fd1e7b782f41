"""Every entry point answers a user's mistake with one `error:` line, exit code 2, and creates
nothing (medpalm_m.user_errors)."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# (name, module and arguments with {tmp} for the test's folder, words the error line must name)
CASES = [
    ("config file that does not exist", ["medpalm_m.train", "--config=configs/nope.py",
                                         "--workdir={tmp}/w"], ["--config=configs/nope.py"]),
    ("misspelt config key", ["medpalm_m.train", "--config=tests/small_config.py", "--workdir={tmp}/w",
                             "--config.train.num_stepz=3"], ["num_stepz", "'num_steps'"]),
    ("unknown task in the mixture", ["medpalm_m.train", "--config=configs/tiny.py", "--workdir={tmp}/w",
                                     "--config.data.mixture.synthetic_medqz=1"],
     ["synthetic_medqz", "'synthetic_medqa'"]),
    ("negative mixture weight", ["medpalm_m.train", "--config=configs/tiny.py", "--workdir={tmp}/w",
                                 "--config.data.mixture.synthetic_medqa=-1"],
     ["config.data.mixture", "synthetic_medqa"]),
    ("workdir that cannot be created", ["medpalm_m.train", "--config=tests/small_config.py",
                                        "--workdir={tmp}/a_file/w"], ["a_file"]),
    ("flag value of the wrong type", ["medpalm_m.train", "--config=tests/small_config.py",
                                      "--workdir={tmp}/w", "--config.train.num_steps=many"],
     ["--config.train.num_steps=many"]),
    ("data show with a wrong data directory", ["medpalm_m.data", "show", "--data_dir={tmp}/no_data",
                                               "--out={tmp}/w"], ["no_data", "medpalm_m.data build"]),
    ("data show with an unknown mixture", ["medpalm_m.data", "show", "--mixture=synthetik",
                                           "--out={tmp}/w"], ["--mixture=synthetik"]),
    ("evaluate without data", ["medpalm_m.evaluate", "--config=tests/small_config.py",
                               "--workdir={tmp}/w", "--config.data.data_dir={tmp}/no_data",
                               "--config.data.build_synthetic=False"], ["no_data"]),
    ("generate without a workdir config", ["medpalm_m.generate", "--workdir={tmp}/w", "--prompt=Q"],
     ["config.json"]),
    ("plan with a misspelt key", ["medpalm_m.plan", "--config=configs/medpalm_m_12b.py",
                                  "--config.mesh.fsdq=2"], ["fsdq", "'fsdp'"]),
    ("convert import of a folder that is not there", ["medpalm_m.convert", "import",
                                                      "--hf_dir={tmp}/no_hf", "--workdir={tmp}/w"],
     ["no_hf"]),
]


@pytest.mark.parametrize("name,args,named", CASES, ids=[c[0] for c in CASES])
def test_a_user_error_is_one_line_exit_2_and_creates_nothing(tmp_path, name, args, named):
  (tmp_path / "a_file").write_text("not a folder")
  before = sorted(os.listdir(tmp_path))
  out = subprocess.run([sys.executable, "-m", *[a.format(tmp=tmp_path) for a in args]], cwd=ROOT,
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu"))
  lines = [line for line in out.stderr.splitlines() if line.strip()]
  assert out.returncode == 2, (name, out.returncode, out.stderr[-3000:])
  assert len(lines) == 1 and lines[0].startswith("error: "), (name, out.stderr[-3000:])
  assert all(word in lines[0] for word in named), (name, lines[0])
  assert sorted(os.listdir(tmp_path)) == before, name  # nothing created

import os
import subprocess
import sys

import pytest

# transformers (with CPU torch) is the reference these tests compare with: a test-only dependency.
pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests.conftest import ROOT  # noqa: E402
from tests.convert import reference  # noqa: E402  (needs torch and transformers)

FAMILIES = ("paligemma", "paligemma2", "gemma3")


def run_from_elsewhere(cwd, module: str, *args: str) -> subprocess.CompletedProcess:
  """`python -m module args` run from `cwd`, with the package importable as an installed one is
  (a folder on the path holding only `medpalm_m`) and nothing of the repository on the path:
  what a user outside the repository root runs."""
  site = os.path.join(str(cwd), "site")
  if not os.path.exists(site):
    os.makedirs(site)
    os.symlink(os.path.join(ROOT, "medpalm_m"), os.path.join(site, "medpalm_m"))
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=site)
  return subprocess.run([sys.executable, "-m", module, *args], cwd=str(cwd), env=env,
                        capture_output=True, text=True, timeout=300)


def small_base_config():
  """The fine-tune config's sections, on this machine's one CPU device and a short sequence."""
  from configs import paligemma_multimedbench
  cfg = paligemma_multimedbench.get_config()
  cfg.mesh = dict(data=-1, fsdp=1, tensor=1)
  cfg.data.max_prompt_tokens = 24
  cfg.data.max_target_tokens = 8
  cfg.train.batch_size = 2
  cfg.eval.batch_size = 2
  return cfg


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
  """{family: (transformers model, its save_pretrained folder, our imported workdir, summary)}."""
  from medpalm_m.convert import import_checkpoint
  root = tmp_path_factory.mktemp("convert")
  out = {}
  for i, name in enumerate(FAMILIES):
    model = reference.build(name, seed=i)
    hf_dir = str(root / f"{name}_hf")
    model.save_pretrained(hf_dir)
    reference.gemma_tokenizer(os.path.join(hf_dir, "tokenizer.model"))
    workdir = str(root / f"{name}_imported")
    summary = import_checkpoint(hf_dir, workdir, small_base_config())
    out[name] = (model, hf_dir, workdir, summary)
  return out


@pytest.fixture(scope="session")
def imported_models(checkpoints):
  """{family: (our model bound to the imported parameters, its ModelConfig)} via evaluate's loader."""
  from medpalm_m.runtime import Runtime, load_config
  out = {}
  for name, (_, _, workdir, _) in checkpoints.items():
    runtime = Runtime(load_config(workdir))
    params, _ = runtime.restore_params(workdir)
    out[name] = (runtime.template.bind(params), runtime.model_cfg)
  return out

"""Multi-host training on one machine: processes joined by jax.distributed over gloo (CPU).

Every run goes through medpalm_m.launch_local, the launcher a user runs, with real processes,
real orbax checkpoints and a real SIGKILL. All runs share one compilation cache, so the resumed
run does not compile again.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from medpalm_m import checkpoint as ckpt_lib
from tests import small_config
from tests.conftest import ROOT

# Processes that meet at every collective: alone on the machine (tests/conftest.py).
pytestmark = pytest.mark.exclusive

# FSDP over all 4 devices: every parameter is split across both processes, so each step
# gathers weights and reduces gradients across processes, and each checkpoint holds shards
# written by both. One decoder layer: less to compile, the same code paths.
OVERRIDES = ("--config.mesh.data=1", "--config.mesh.fsdp=4", "--config.mesh.tensor=1",
             "--config.model.decoder.depth=1", "--config.data.build_synthetic=False")
# 2x2 and 1x4 may sum the same numbers in a different order (seen: identical, or 6e-8 apart).
RTOL = 1e-6


def launch(workdir, data_dir, cache_dir, *overrides, processes, devices, wait=True):
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_COMPILATION_CACHE_DIR=str(cache_dir))
  cmd = [sys.executable, "-m", "medpalm_m.launch_local", f"--num_processes={processes}",
         f"--devices_per_process={devices}", "--", "-m", "medpalm_m.train",
         "--config=tests/small_config.py", f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
         *OVERRIDES, *overrides]
  proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, start_new_session=True)  # its own group: killed as a whole
  if not wait:
    return proc
  out, _ = proc.communicate(timeout=600)
  return proc.returncode, out


def logged(workdir) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow
def test_two_processes_reproduce_one_and_resume_after_kill(tmp_path, synthetic_data_dir):
  cache = tmp_path / "xla_cache"
  workdir = tmp_path / "two"
  # Killed long before its 1000 steps, as soon as its first checkpoint is committed.
  proc = launch(workdir, synthetic_data_dir, cache, "--config.train.num_steps=1000",
                "--config.train.checkpoint_every=2", processes=2, devices=2, wait=False)
  committed = workdir / "checkpoints" / "2" / "_CHECKPOINT_METADATA"
  deadline = time.time() + 400
  while not committed.exists():
    assert proc.poll() is None, proc.stdout.read()[-3000:]
    assert time.time() < deadline, "no checkpoint within 400 s"
    time.sleep(0.05)
  os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both training processes at once
  first_output = proc.communicate()[0]
  before = logged(workdir)
  # Metrics come from process 0 alone: one line per step, one progress line per step.
  assert [r["step"] for r in before] == list(range(1, len(before) + 1)), before
  assert first_output.count("step 1/1000 ") == 1, first_output[-3000:]

  resume_from = ckpt_lib.Checkpointer(str(workdir / "checkpoints"), async_save=False).latest_step()
  assert resume_from is not None and resume_from % 2 == 0
  last = resume_from + 2
  # The resumed run evaluates at its last step, data-parallel over both processes.
  code, out = launch(workdir, synthetic_data_dir, cache, f"--config.train.num_steps={last}",
                     "--config.train.checkpoint_every=2", "--config.train.eval_every=2",
                     processes=2, devices=2)
  assert code == 0, out[-3000:]
  assert f"resumed from {workdir / 'checkpoints'} step {resume_from}" in out, out[-3000:]
  with open(workdir / "eval" / f"step_{last}.json") as f:
    report = json.load(f)
  assert report["runtime"]["processes"] == 2 and set(report["tasks"]) == set(small_config.TASKS)
  assert out.count(f"step {last}: evaluation above the baseline on") == 1, out[-3000:]

  code, out = launch(tmp_path / "one", synthetic_data_dir, cache, f"--config.train.num_steps={last}",
                     "--config.train.checkpoint_every=1000", processes=1, devices=4)
  assert code == 0, out[-3000:]
  two = {r["step"]: r["loss"] for r in logged(workdir) if "loss" in r}  # a step logged twice: its last
  one = {r["step"]: r["loss"] for r in logged(tmp_path / "one")}
  assert sorted(one) == sorted(two) == list(range(1, last + 1))
  np.testing.assert_allclose([two[s] for s in one], [one[s] for s in one], rtol=RTOL)


BATCH_PARTS = """
import json, sys
import jax, numpy as np
from jax.experimental import multihost_utils
from medpalm_m.runtime import initialize_distributed
from medpalm_m.trainer import Trainer
from tests import small_config
initialize_distributed()
results = {}
for name, mesh in {"data": dict(data=2, fsdp=2), "fsdp": dict(fsdp=4), "tensor": dict(tensor=4),
                   "fsdp_tensor": dict(fsdp=2, tensor=2)}.items():
  cfg = small_config.get_config()
  cfg.mesh = dict(dict(data=1, fsdp=1, tensor=1), **mesh)
  trainer = Trainer(cfg, num_tasks=3)
  index, count = trainer.data_shard
  rows = np.arange(8).reshape(count, -1)[index]  # the rows this process feeds: global row ids
  batch = trainer.global_batch({"row": rows})["row"]
  results[name] = [index, count, multihost_utils.process_allgather(batch, tiled=True).tolist()]
# One write per line: both processes share the pipe, and with PYTHONUNBUFFERED print() writes each
# argument separately, so two processes' lines could interleave mid-line.
sys.stdout.write(f"RESULT {jax.process_index()} {json.dumps(results)}\\n")
sys.stdout.flush()
"""


def test_each_process_feeds_its_part_of_the_batch_and_replicas_feed_the_same(tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, "-m", "medpalm_m.launch_local", "--num_processes=2",
                        "--devices_per_process=2", "--", "-c", BATCH_PARTS], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  # Searched for, not read from line starts: both processes share the pipe, and Gloo's C++ logging
  # writes its lines in pieces, so "[Gloo] Rank " can land just before a RESULT line. Each RESULT
  # line is one write(), under the pipe's atomic size, so it arrives whole.
  results = {int(process): json.loads(payload)
             for process, payload in re.findall(r"RESULT (\d+) ([^\n]*)", out.stdout)}
  assert sorted(results) == [0, 1], out.stdout
  everything = list(range(8))
  for process, result in results.items():
    # Batch axes within a process ('data' = the process, or fsdp over both processes): halves.
    assert result["data"] == [process, 2, everything]
    assert result["fsdp"] == [process, 2, everything]
    assert result["fsdp_tensor"] == [process, 2, everything]
    # 'tensor' spans both processes: they are replicas and both feed the whole batch.
    assert result["tensor"] == [0, 1, everything]

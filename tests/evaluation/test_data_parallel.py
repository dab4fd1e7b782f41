"""Evaluation is data-parallel and gives the same report on any mesh and any number of processes.

One briefly trained checkpoint is evaluated three ways: in this process on one device, by the
`evaluate` command line on 8 simulated devices (data=2, fsdp=4: the batch split 8 ways, the
parameters 4 ways), and by 2 processes of 2 devices joined by jax.distributed (the local
launcher). The reports must agree metric for metric, baselines and counts included.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from medpalm_m import evaluation, trainer
from tests import small_config
from tests.conftest import ROOT

# 8 rows: one row per device on 8 devices, two per device on 2 x 2.
EVAL_BATCH = 8
OVERRIDES = ("--config.data.build_synthetic=False", f"--config.eval.batch_size={EVAL_BATCH}",
             "--config.eval.max_examples_per_task=11")  # 11: the last batch is partly padding


def comparable(report: dict) -> dict:
  """What must not depend on where evaluation ran: every task's metrics, baselines and n."""
  return report["tasks"]


@pytest.fixture(scope="module")
def one_device_report(tmp_path_factory, synthetic_data_dir):
  cfg = small_config.get_config()
  cfg.data.update(data_dir=synthetic_data_dir, build_synthetic=False)
  cfg.train.update(num_steps=4, checkpoint_every=4)
  cfg.eval.update(batch_size=EVAL_BATCH, max_examples_per_task=11)
  workdir = str(tmp_path_factory.mktemp("data_parallel") / "run")
  trainer.train(cfg, workdir)
  report = evaluation.evaluate(cfg, workdir)
  return workdir, report


def copy_checkpoint(workdir: str, destination: str) -> str:
  shutil.copytree(workdir, destination, ignore=shutil.ignore_patterns("eval"))
  return destination


def test_the_report_says_where_it_ran(one_device_report):
  _, report = one_device_report
  assert report["runtime"]["devices"] == 1 and report["runtime"]["processes"] == 1
  assert report["runtime"]["mesh"] == {"data": 1, "fsdp": 1, "tensor": 1}
  assert all(result["n"] == 11 for result in report["tasks"].values())


@pytest.mark.slow
@pytest.mark.exclusive
def test_eight_devices_give_the_one_device_report(one_device_report, synthetic_data_dir, tmp_path):
  workdir, report = one_device_report
  copy = copy_checkpoint(workdir, str(tmp_path / "eight"))
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
             PYTHONPATH=ROOT)
  run = subprocess.run([sys.executable, "-m", "medpalm_m.evaluate", "--config=tests/small_config.py",
                        f"--workdir={copy}", f"--config.data.data_dir={synthetic_data_dir}",
                        "--config.mesh.data=2", "--config.mesh.fsdp=4", *OVERRIDES],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  with open(os.path.join(copy, "eval", "step_4.json")) as f:
    eight = json.load(f)
  assert eight["runtime"]["devices"] == 8 and eight["runtime"]["mesh"] == {"data": 2, "fsdp": 4, "tensor": 1}
  assert comparable(eight) == comparable(report)


TWO_PROCESSES = """
import json, os, sys
sys.path.insert(0, {root!r})
import jax
from medpalm_m import evaluation, runtime
from tests import small_config
runtime.initialize_distributed()
cfg = small_config.get_config()
cfg.data.update(data_dir={data_dir!r}, build_synthetic=False)
cfg.eval.update(batch_size={batch}, max_examples_per_task=11)
cfg.mesh = dict(data=1, fsdp=-1, tensor=1)
# Each process gets its own copy of the checkpoint's workdir, so that what each one writes shows.
workdir = {workdir!r} + str(jax.process_index())
rt = runtime.Runtime(cfg)
evaluator = evaluation.Evaluator(rt, runtime.prepare_data(cfg)[1])
report = evaluation.evaluate(cfg, workdir, runtime=rt, evaluator=evaluator)
print("RESULT", json.dumps({{"process": jax.process_index(), "decoded": evaluator.examples_decoded,
                             "returned": report is not None}}), flush=True)
"""


@pytest.mark.slow
@pytest.mark.exclusive
def test_two_processes_decode_each_example_once_and_only_process_0_writes(
    one_device_report, synthetic_data_dir, tmp_path):
  workdir, report = one_device_report
  copies = [copy_checkpoint(workdir, str(tmp_path / f"copy{p}")) for p in (0, 1)]
  script = TWO_PROCESSES.format(root=ROOT, data_dir=synthetic_data_dir, batch=EVAL_BATCH,
                                workdir=str(tmp_path / "copy"))
  run = subprocess.run([sys.executable, "-m", "medpalm_m.launch_local", "--num_processes=2",
                        "--devices_per_process=2", "--", "-c", script],
                       cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                       text=True, timeout=600)
  assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
  results = sorted((json.loads(line.split("RESULT ", 1)[1]) for line in run.stdout.splitlines()
                    if "RESULT " in line), key=lambda r: r["process"])
  assert [r["process"] for r in results] == [0, 1], run.stdout[-3000:]
  total = sum(result["n"] for result in report["tasks"].values())
  # Rows are split evenly; padding rows of the last batch are not counted as decoded examples.
  assert sum(r["decoded"] for r in results) == total and all(r["decoded"] > 0 for r in results)
  assert [r["returned"] for r in results] == [True, False]
  with open(os.path.join(copies[0], "eval", "step_4.json")) as f:
    two = json.load(f)
  assert not os.path.exists(os.path.join(copies[1], "eval"))
  assert two["runtime"]["processes"] == 2 and two["runtime"]["devices"] == 4
  assert comparable(two) == comparable(report)

"""The trainer: sharding, exact resume, preemption, NaN stop, gradient accumulation, learning."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from medpalm_m import allocator
from medpalm_m import checkpoint as ckpt_lib
from medpalm_m.data import pipeline, preprocess
from medpalm_m.runtime import prepare_data, sequence_spec
from medpalm_m.trainer import Trainer
from tests import small_config
from tests.conftest import ROOT


def run_train(workdir, data_dir, *overrides, devices=1, wait=True, config="tests/small_config.py"):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  cmd = [sys.executable, "-m", "medpalm_m.train", f"--config={config}", f"--workdir={workdir}",
         f"--config.data.data_dir={data_dir}", *overrides]
  if not wait:
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def losses(workdir) -> dict[int, float]:
  """Loss per step from metrics.jsonl; a step logged twice (resume) keeps its last value."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


def tensorboard_scalars(workdir, tag="loss") -> dict[int, float]:
  """`tag`'s points as TensorBoard shows them: its own reader, which applies a resumed run's purge
  of the steps a killed run logged after its last checkpoint."""
  from tensorboard.backend.event_processing import event_accumulator
  events = event_accumulator.EventAccumulator(os.path.join(workdir, "tensorboard"),
                                              size_guidance={event_accumulator.SCALARS: 0})
  events.Reload()
  points = [(e.step, e.value) for e in events.Scalars(tag)]
  assert len({step for step, _ in points}) == len(points), points  # each step once
  return dict(points)


def logged_steps(workdir) -> list[int]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r["step"] for r in map(json.loads, f) if "loss" in r]


def tree_hash(root) -> dict[str, str]:
  """Every file under root and the sha256 of its bytes."""
  import hashlib
  return {os.path.relpath(os.path.join(d, f), root): hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
          for d, _, files in os.walk(root) for f in files}


@pytest.mark.slow
@pytest.mark.exclusive
def test_eight_devices_match_one_device_and_really_shard(tmp_path, synthetic_data_dir):
  one = run_train(tmp_path / "one", synthetic_data_dir, "--config.train.num_steps=3")
  assert one.returncode == 0, one.stderr[-3000:]
  script = f"""
import sys; sys.path.insert(0, {ROOT!r})
import jax
from tests import small_config
from medpalm_m.trainer import Trainer
cfg = small_config.get_config()
cfg.mesh = dict(data=2, fsdp=4, tensor=1)
trainer = Trainer(cfg, num_tasks=3)
state = trainer.init_state()
emb = state["params"]["decoder/embedding"]
mu = [x for x in jax.tree.leaves(state["opt_state"]) if getattr(x, "shape", None) == emb.shape]
print("EMB", emb.sharding.spec, len(emb.addressable_shards), emb.addressable_shards[0].data.shape)
print("OPT", [str(x.sharding.spec) for x in mu])
"""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "EMB P(None, 'fsdp') 8 (2048, 8)" in out.stdout, out.stdout
  opt_specs = out.stdout.split("OPT ")[1]
  assert "P(None, 'fsdp')" in opt_specs and "P()" not in opt_specs, out.stdout  # momentum sharded
  eight = run_train(tmp_path / "eight", synthetic_data_dir, "--config.train.num_steps=3",
                    "--config.mesh.data=2", "--config.mesh.fsdp=4", devices=8)
  assert eight.returncode == 0, eight.stderr[-3000:]
  a, b = losses(tmp_path / "one"), losses(tmp_path / "eight")
  assert sorted(a) == [1, 2, 3]
  np.testing.assert_allclose([a[s] for s in a], [b[s] for s in a], rtol=2e-5)


def kill_9_and_resume(tmp_path, data_dir, *overrides) -> tuple[dict[int, float], str]:
  """8 steps straight, and the same 8 steps killed (SIGKILL) after checkpoint 4 and resumed by
  rerunning the command: (the straight run's losses, the resumed workdir)."""
  steps = ("--config.train.num_steps=8", "--config.train.checkpoint_every=4", *overrides)
  straight = run_train(tmp_path / "straight", data_dir, *steps)
  assert straight.returncode == 0, straight.stderr[-3000:]
  workdir = tmp_path / "killed"
  proc = run_train(workdir, data_dir, *steps, wait=False)
  checkpoint = workdir / "checkpoints" / "4"
  deadline = time.time() + 300
  while not (checkpoint / "_CHECKPOINT_METADATA").exists() and proc.poll() is None:
    assert time.time() < deadline
    time.sleep(0.05)
  with open(f"/proc/{proc.pid}/environ", "rb") as f:  # medpalm_m.allocator restarted it in place
    # (glibc's tunables parser leaves NULs for the ':' in the process's copy of the variable)
    environ = f.read().replace(b"\0", b":")
    assert f"GLIBC_TUNABLES={allocator.tunables(os.environ.get(allocator.TUNABLES, ''))}:".encode() in environ
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  resumed = run_train(workdir, data_dir, *steps)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resumed from" in resumed.stderr
  return losses(tmp_path / "straight"), workdir


# The adapters (config.model.adapter) as configs/grafting.py trains them: ViT and decoder frozen,
# the adapter alone trained at a rate that moves it in 8 steps.
GRAFTED = ("--config.optimizer.freeze=^(vit|decoder)/", "--config.optimizer.learning_rate=1e-2")


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [
    (),
    ("--config.model.adapter=mlp", *GRAFTED),
    ("--config.model.adapter=attention_pooler", "--config.model.adapter_queries=6", *GRAFTED),
], ids=["affine", "mlp_grafted", "attention_pooler_grafted"])
def test_resume_after_kill_9_reproduces_the_uninterrupted_losses(tmp_path, synthetic_data_dir, overrides):
  straight, workdir = kill_9_and_resume(tmp_path, synthetic_data_dir, *overrides)
  assert straight[7] + straight[8] < straight[1] + straight[2], straight  # it trains
  resumed = losses(workdir)
  assert [straight[s] for s in range(5, 9)] == [resumed[s] for s in range(5, 9)]
  # The steps logged between checkpoint 4 and the kill are logged again, and appear once.
  assert logged_steps(workdir) == list(range(1, 9))
  shown = tensorboard_scalars(workdir)
  assert sorted(shown) == list(range(1, 9))
  np.testing.assert_allclose([shown[s] for s in range(1, 9)], [resumed[s] for s in range(1, 9)], rtol=1e-6)
  history = [json.loads(line) for line in open(workdir / "config_history.jsonl")]
  assert [h["step"] for h in history] == [0, 4]


@pytest.mark.slow
def test_lora_training_resumes_exactly_after_kill_9(tmp_path, synthetic_data_dir):
  """Adapters on the decoder and the ViT (tiny's 0.3x ViT rate applying to the ViT's), every
  base weight frozen: the resumed run repeats the uninterrupted losses."""
  from medpalm_m.model.lora import BASE_WEIGHTS, is_adapter
  straight, workdir = kill_9_and_resume(
      tmp_path, synthetic_data_dir, "--config.model.lora.rank=4", "--config.model.lora.vit=True",
      f"--config.optimizer.freeze={BASE_WEIGHTS}")
  resumed = losses(workdir)
  assert [straight[s] for s in range(5, 9)] == [resumed[s] for s in range(5, 9)]
  saved = ckpt_lib.Checkpointer(str(workdir / "checkpoints"), read_only=True).meta(8)["params"]
  assert sum(map(is_adapter, saved)) == 2 * (2 * 7 + 4)  # A and B: 2 decoder layers x 7, 1 ViT x 4


METRICS_WRITER = """
import sys
from medpalm_m.trainer.loop import MetricsWriter
writer = MetricsWriter(sys.argv[1], start_step=0)
writer.write(1, {"loss": 2.5, "task_loss": {"a": 1.25, "b": float("nan")}, "note": "text"})
writer.write(2, {"loss": 2.0, "task_loss": {"a": 1.0, "b": 0.5}})
writer.close()
print("torch imported:", "torch" in sys.modules)
import torch  # the writer hid torch from tensorboardX only while importing it
print("torch importable:", torch.__name__)
"""


def test_tensorboard_shows_the_logged_scalars_and_the_writer_does_not_import_torch(tmp_path):
  out = subprocess.run([sys.executable, "-c", METRICS_WRITER, str(tmp_path)], cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.splitlines() == ["torch imported: False", "torch importable: torch"], out.stdout
  assert tensorboard_scalars(tmp_path) == {1: 2.5, 2: 2.0}
  assert tensorboard_scalars(tmp_path, "task_loss/a") == {1: 1.25, 2: 1.0}
  assert tensorboard_scalars(tmp_path, "task_loss/b") == {2: 0.5}  # NaN is in metrics.jsonl only
  assert [json.loads(line)["step"] for line in open(tmp_path / "metrics.jsonl")] == [1, 2]


def test_the_initial_parameters_are_the_default_compilations_bit_for_bit():
  """Trainer.init_state compiles with runtime.initializer_compiler_options (faster on CPU); a seed
  still draws exactly the parameters that XLA's default compilation draws."""
  trainer = Trainer(small_config.get_config(), num_tasks=3)
  assert trainer.runtime.initializer_compiler_options  # this test runs on CPU
  ours = jax.device_get(trainer.init_state()["params"])
  default = jax.device_get(jax.jit(trainer._init_state)()["params"])
  assert sorted(ours) == sorted(default)
  for name in ours:
    np.testing.assert_array_equal(ours[name], default[name], err_msg=name)


def test_sigterm_saves_a_restorable_checkpoint_and_exits_0(tmp_path, synthetic_data_dir):
  workdir = tmp_path / "preempted"
  proc = run_train(workdir, synthetic_data_dir, "--config.train.num_steps=100000",
                   "--config.train.checkpoint_every=100000", wait=False)
  deadline = time.time() + 300
  while not (workdir / "metrics.jsonl").exists() or not (workdir / "metrics.jsonl").read_text():
    assert proc.poll() is None, proc.stdout.read()[-3000:]
    assert time.time() < deadline
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=120) == 0, proc.stdout.read()[-3000:]
  step = ckpt_lib.Checkpointer(str(workdir / "checkpoints"), async_save=False).latest_step()
  assert step is not None and step >= 1
  trainer = Trainer(small_config.get_config(), num_tasks=3)
  checkpointer = ckpt_lib.Checkpointer(str(workdir / "checkpoints"), async_save=False)
  state, _ = checkpointer.restore(step, trainer.abstract_state, None, trainer.abstract_state["params"])
  assert int(state["step"]) == step


def test_sigterm_before_the_first_step_exits_0_saying_nothing_was_saved(tmp_path, synthetic_data_dir):
  workdir = tmp_path / "early"
  proc = run_train(workdir, synthetic_data_dir, wait=False)
  time.sleep(1.0)  # imports and flag parsing: long before the first step
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=120) == 0
  output = proc.stdout.read()
  assert "received SIGTERM" in output and "nothing" in output and "no checkpoint exists" in output, output
  assert not (workdir / "checkpoints").exists()


@pytest.mark.slow
def test_divergence_stops_the_run_naming_the_step_and_keeps_only_good_checkpoints(tmp_path,
                                                                                  synthetic_data_dir):
  """A learning rate of 1e12 explodes the parameters at the first update, while the loss of that
  step (computed before the update) is still finite: the step is not saved."""
  workdir = tmp_path / "diverged"
  out = run_train(workdir, synthetic_data_dir, "--config.optimizer.name=adamw",
                  "--config.optimizer.learning_rate=1e12", "--config.optimizer.clip_norm=0",
                  "--config.train.checkpoint_every=1", "--config.train.num_steps=20")
  assert out.returncode == 1, out.stderr[-3000:]
  errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and "parameter RMS" in errors[0] and "after step 1 " in errors[0], out.stderr[-2000:]
  assert "no checkpoint exists yet" in errors[0] and "None" not in errors[0]
  assert ckpt_lib.Checkpointer(str(workdir / "checkpoints"), async_save=False).latest_step() is None

  # Good steps first, then the same explosion on resume: the good checkpoints stay, and only they.
  workdir = tmp_path / "good_then_bad"
  assert run_train(workdir, synthetic_data_dir, "--config.train.num_steps=2",
                   "--config.train.checkpoint_every=1").returncode == 0
  out = run_train(workdir, synthetic_data_dir, "--config.train.num_steps=4",
                  "--config.train.checkpoint_every=1", "--config.optimizer.learning_rate=1e12",
                  "--config.train.allow_config_changes=optimizer.learning_rate")
  assert out.returncode == 1, out.stderr[-2000:]
  assert "after step 3 " in out.stderr and "the last checkpoint is step 2" in out.stderr, out.stderr[-2000:]
  checkpointer = ckpt_lib.Checkpointer(str(workdir / "checkpoints"), async_save=False)
  assert checkpointer.latest_step() == 2
  trainer = Trainer(small_config.get_config(), num_tasks=3)
  state, _ = checkpointer.restore(2, trainer.abstract_state, None, trainer.abstract_state["params"])
  assert all(np.abs(np.asarray(x)).max() < 10 for x in jax.tree.leaves(state["params"]))


@pytest.mark.slow
def test_a_refused_run_leaves_the_workdir_byte_identical(tmp_path, synthetic_data_dir):
  workdir = tmp_path / "run"
  assert run_train(workdir, synthetic_data_dir, "--config.train.num_steps=1").returncode == 0
  before = tree_hash(workdir)
  assert "config.json" in before and "config_history.jsonl" in before
  out = run_train(workdir, synthetic_data_dir, "--config.train.num_steps=2",
                  "--config.model.decoder.mlp_dim=48")
  assert out.returncode == 2
  assert "decoder/blocks/0/mlp/gate: checkpoint [32, 64]" in out.stderr, out.stderr[-2000:]
  assert tree_hash(workdir) == before
  out = run_train(workdir, synthetic_data_dir, "--config.train.num_steps=2",
                  "--config.optimizer.learning_rate=0.5")
  assert out.returncode == 2
  assert "optimizer.learning_rate: workdir 0.001, now 0.5" in out.stderr, out.stderr[-2000:]
  assert "--config.train.allow_config_changes=optimizer.learning_rate" in out.stderr
  assert tree_hash(workdir) == before
  # Allowed, it runs, and the history records both starts.
  out = run_train(workdir, synthetic_data_dir, "--config.train.num_steps=2",
                  "--config.optimizer.learning_rate=0.5",
                  "--config.train.allow_config_changes=optimizer.learning_rate")
  assert out.returncode == 0, out.stderr[-2000:]
  history = [json.loads(line) for line in open(workdir / "config_history.jsonl")]
  assert [(h["step"], h["config"]["optimizer"]["learning_rate"]) for h in history] == [(0, 0.001), (1, 0.5)]


@pytest.mark.parametrize("normalization", ["tokens", "examples"])
def test_gradient_accumulation_equals_one_big_batch(synthetic_data_dir, normalization):
  cfg = small_config.get_config()
  cfg.train.loss_normalization = normalization
  # Plain SGD: the update is the gradient itself, so equal parameters mean equal gradients
  # (adaptive optimizers turn float noise in near-zero gradients into full-size sign flips).
  cfg.optimizer.update(name="sgd", b1=0.0, learning_rate=1.0)
  cfg.data.data_dir = synthetic_data_dir
  _, tokenizer = prepare_data(cfg)
  mixture = {t: 1.0 for t in small_config.TASKS}
  task_ids = pipeline.task_ids(list(mixture))
  results = []
  for k in (1, 4):
    cfg.train.grad_accum_steps = k
    trainer = Trainer(cfg, num_tasks=3)
    pre = preprocess.Preprocessor(tokenizer, sequence_spec(cfg, trainer.model_cfg), task_ids)
    batch = next(iter(pipeline.train_dataset(mixture, synthetic_data_dir, pre, batch_size=8, seed=0)))
    state, metrics = trainer.train_step(trainer.init_state(), trainer.global_batch(batch))
    results.append((jax.device_get(state["params"]), float(metrics["loss"])))
  (p1, l1), (p4, l4) = results
  np.testing.assert_allclose(l1, l4, rtol=1e-5)
  for name in p1:
    np.testing.assert_allclose(p1[name], p4[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_an_unknown_loss_normalization_is_refused_naming_the_key():
  cfg = small_config.get_config()
  cfg.train.loss_normalization = "sequence"
  with pytest.raises(ValueError, match=r"config.train.loss_normalization='sequence'.*'examples'"):
    Trainer(cfg, num_tasks=3)


@pytest.mark.parametrize("attention,normalization",
                         [("causal", "tokens"), ("prefix_lm", "tokens"), ("causal", "examples")])
def test_a_packed_batch_trains_exactly_like_its_examples_unpacked(synthetic_data_dir, attention,
                                                                  normalization):
  """Packing is only a layout: the same examples give the same gradient and per-task counts,
  whether the loss averages over tokens or over examples (which a packed row must split)."""
  cfg = small_config.get_config()
  cfg.model.attention = attention  # prefix-LM: each example's prompt block must stay its own
  cfg.train.loss_normalization = normalization
  cfg.optimizer.update(name="sgd", b1=0.0, learning_rate=1.0)  # update = gradient (see above)
  cfg.data.data_dir = synthetic_data_dir
  _, tokenizer = prepare_data(cfg)
  mixture = {t: 1.0 for t in small_config.TASKS}
  trainer = Trainer(cfg, num_tasks=3)
  pre = preprocess.Preprocessor(tokenizer, sequence_spec(cfg, trainer.model_cfg),
                                pipeline.task_ids(list(mixture)))
  packing = pipeline.Packing(images_per_row=2, examples_per_row=8)
  packed = next(iter(pipeline.train_dataset(mixture, synthetic_data_dir, pre, batch_size=8, seed=0,
                                            packing=packing)))
  count = int(packed["example_valid"].sum())
  assert count > 8 and packed["images"].any()
  # The packer's first batch is the stream's first `count` examples (tests/data/test_pipeline.py).
  plain = next(iter(pipeline.train_dataset(mixture, synthetic_data_dir, pre, batch_size=count, seed=0)))
  results = []
  for batch in (packed, plain):
    state, metrics = trainer.train_step(trainer.init_state(), trainer.global_batch(batch))
    results.append((jax.device_get(state["params"]), jax.device_get(metrics)))
  (p_packed, m_packed), (p_plain, m_plain) = results
  for key in ("loss", "target_tokens", "token_accuracy", "task_nll_sum"):
    np.testing.assert_allclose(m_packed[key], m_plain[key], rtol=1e-5, err_msg=key)
  for key in ("task_tokens", "task_examples", "task_prompt_truncated", "task_target_truncated",
              "task_dropped"):
    np.testing.assert_array_equal(m_packed[key], m_plain[key], err_msg=key)
  assert m_packed["task_examples"].sum() == count
  for name in p_plain:
    np.testing.assert_allclose(p_packed[name], p_plain[name], rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_the_default_config_learns_and_sees_every_task(tmp_path, synthetic_data_dir):
  """configs/tiny.py as the README runs it, shortened to 15 steps: the mean loss of steps 11-15
  was 0.39 of steps 1-5's (3.27 against 8.41, 2-core AMD EPYC), and every task is in each step."""
  out = run_train(tmp_path / "tiny", synthetic_data_dir, "--config.train.num_steps=15",
                  "--config.train.log_every=5", "--config.train.checkpoint_every=15",
                  config="configs/tiny.py")
  assert out.returncode == 0, out.stderr[-3000:]
  with open(tmp_path / "tiny" / "metrics.jsonl") as f:
    records = [json.loads(line) for line in f]
  first, last = records[0], records[-1]
  assert last["step"] == 15
  assert last["loss"] < 0.5 * first["loss"], (first["loss"], last["loss"])
  from configs import tiny
  assert set(last["examples_seen"]) == set(tiny.get_config().data.mixture)
  assert all(n > 0 for n in last["examples_seen"].values()), last["examples_seen"]
  assert not last["dropped_examples"], last["dropped_examples"]


@pytest.fixture
def small_disk(tmp_path):
  """A 2 MB tmpfs: room for one checkpoint of tests/small_config.py (1.3 MB), not two."""
  mount = tmp_path / "disk"
  mount.mkdir()
  made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
  if made.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here (needs root): {made.stderr.decode().strip()}")
  yield mount
  subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_the_run_in_one_line_and_it_resumes_once_there_is_room(small_disk,
                                                                                 synthetic_data_dir):
  workdir = small_disk / "run"
  args = ("--config.train.num_steps=4", "--config.train.checkpoint_every=2")
  start = time.time()
  out = run_train(workdir, synthetic_data_dir, *args)  # step 2 fits, step 4 does not
  assert out.returncode == 1, out.stderr[-3000:]
  assert time.time() - start < 120  # the whole run; the failed save itself costs no wait
  errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and "No space left on device" in errors[0] and str(workdir) in errors[0], out.stderr
  assert "Traceback" not in out.stderr and len(out.stderr.splitlines()) <= 6, out.stderr[-3000:]
  assert "step 2" in errors[0] and "intact" in errors[0]
  subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)
  # What a save that failed inside orbax's writers leaves (the disk filled during the write).
  (workdir / "checkpoints" / "4.orbax-checkpoint-tmp" / "state").mkdir(parents=True)
  resumed = run_train(workdir, synthetic_data_dir, *args)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resumed from" in resumed.stderr and "step 2" in resumed.stderr
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]  # the failed save's folder gone
  assert logged_steps(workdir) == [1, 2, 3, 4]


LATE_CALLBACKS = """
import asyncio, sys, threading
import tensorstore as ts
from medpalm_m import checkpoint
checkpoint.Checkpointer(sys.argv[1])  # a writing checkpointer installs the filter
loop = asyncio.new_event_loop()
loop.close()  # the failed async save's loop
promises = []
for callback in [lambda f: loop.call_soon_threadsafe(print)] * 3 + [lambda f: 1 / 0]:
  promise, future = ts.Promise.new()
  future.add_done_callback(callback)
  promises.append(promise)
for promise in promises:  # the writes finish in tensorstore's threads, after the loop closed
  thread = threading.Thread(target=promise.set_result, args=(0,))
  thread.start()
  thread.join()
print("done", flush=True)
"""


def test_writes_that_finish_after_a_failed_save_print_nothing_and_other_errors_still_show(tmp_path):
  """A disk that fills during orbax's write (not at the up-front room check): each pending
  tensorstore write reports 'Event loop is closed' as unraisable; those are dropped, nothing else."""
  out = subprocess.run([sys.executable, "-c", LATE_CALLBACKS, str(tmp_path / "ckpt")], cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True, timeout=120)
  assert out.returncode == 0 and out.stdout.strip() == "done", out.stderr[-3000:]
  assert "Event loop is closed" not in out.stderr, out.stderr[-3000:]
  assert out.stderr.count("ZeroDivisionError") == 1, out.stderr[-3000:]


def test_a_read_only_checkpoint_directory_is_one_line_at_start_and_keeps_the_checkpoint(small_disk,
                                                                                        synthetic_data_dir):
  workdir = small_disk / "run"
  assert run_train(workdir, synthetic_data_dir, "--config.train.num_steps=2").returncode == 0
  before = tree_hash(workdir)
  subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
  start = time.time()
  out = run_train(workdir, synthetic_data_dir, "--config.train.num_steps=4")
  assert time.time() - start < 30, out.stderr[-3000:]
  assert out.returncode == 2 and out.stderr.splitlines() == [out.stderr.strip()], out.stderr[-3000:]
  assert out.stderr.startswith("error: cannot write to ") and "Read-only file system" in out.stderr
  subprocess.run(["mount", "-o", "remount,rw,size=16m", str(small_disk)], check=True)
  assert tree_hash(workdir) == before
  resumed = run_train(workdir, synthetic_data_dir, "--config.train.num_steps=4")
  assert resumed.returncode == 0 and "resumed from" in resumed.stderr, resumed.stderr[-3000:]


def test_task_loss_weights_weigh_each_tasks_tokens_and_are_checked_by_key(synthetic_data_dir):
  """The step's objective is sum(factor_t * nll_t) / sum(factor_t * tokens_t) over the tasks, from
  the unweighted per-task sums the same step reports; packed rows split by example."""
  cfg = small_config.get_config()
  cfg.data.data_dir = synthetic_data_dir
  cfg.data.mixture = {t: 1.0 for t in small_config.TASKS}
  _, tokenizer = prepare_data(cfg)
  task_ids = pipeline.task_ids(list(cfg.data.mixture))
  weighted = sorted(task_ids)[1]
  cfg.train.z_loss = 0.0
  cfg.train.task_loss_weights = {weighted: 4.0}
  trainer = Trainer(cfg, num_tasks=3)
  pre = preprocess.Preprocessor(tokenizer, sequence_spec(cfg, trainer.model_cfg), task_ids)
  batch = next(iter(pipeline.train_dataset(dict(cfg.data.mixture), synthetic_data_dir, pre, batch_size=8,
                                           seed=0, packing=pipeline.Packing(2, 8))))
  _, metrics = trainer.train_step(trainer.init_state(), trainer.global_batch(batch))
  m = jax.device_get(metrics)
  factor = np.ones(3)
  factor[task_ids[weighted]] = 4.0
  assert m["task_tokens"][task_ids[weighted]] > 0 and (m["task_tokens"] > 0).sum() > 1
  np.testing.assert_allclose(m["loss"], (factor * m["task_nll_sum"]).sum() / (factor * m["task_tokens"]).sum(),
                             rtol=1e-5)
  assert not np.isclose(m["loss"], m["task_nll_sum"].sum() / m["task_tokens"].sum(), rtol=1e-3)

  cfg.train.task_loss_weights = {"synthetic_slake": 2.0}  # registered, not trained on: no tokens
  assert (Trainer(cfg, num_tasks=3).task_loss_weights == 1.0).all()
  cfg.train.task_loss_weights = {"synthetic_slak": 2.0}
  with pytest.raises(ValueError, match=r"config.train.task_loss_weights: unknown task\(s\) \['synthetic_slak'\]"):
    Trainer(cfg, num_tasks=3)
  cfg.train.task_loss_weights = {weighted: 0.0}
  with pytest.raises(ValueError, match="config.train.task_loss_weights: factors must be finite and > 0"):
    Trainer(cfg, num_tasks=3)


def test_loss_positions_give_the_loss_and_gradient_of_every_position_for_less_work(synthetic_data_dir):
  """config.train.loss_positions projects only the positions that score a target; a batch with a
  row over the budget projects every position. Same loss, metrics and gradient either way."""
  cfg = small_config.get_config()
  cfg.data.data_dir = synthetic_data_dir
  cfg.data.mixture = {t: 1.0 for t in small_config.TASKS}
  cfg.data.packing.enabled = True
  cfg.train.loss_normalization = "examples"  # per-example weights, gathered with the positions
  cfg.optimizer.update(name="sgd", b1=0.0, learning_rate=1.0)  # update = gradient (see above)
  _, tokenizer = prepare_data(cfg)
  task_ids = pipeline.task_ids(list(cfg.data.mixture))
  cfg.train.task_loss_weights = {sorted(task_ids)[1]: 3.0}
  results, jaxprs = {}, {}
  for budget in ("all", "auto", "2"):
    cfg.train.loss_positions = budget
    trainer = Trainer(cfg, num_tasks=3)
    pre = preprocess.Preprocessor(tokenizer, sequence_spec(cfg, trainer.model_cfg), task_ids)
    batch = trainer.global_batch(next(iter(pipeline.train_dataset(
        dict(cfg.data.mixture), synthetic_data_dir, pre, batch_size=8, seed=0,
        packing=pipeline.Packing(2, 8)))))
    state = trainer.init_state()
    jaxprs[budget] = str(jax.make_jaxpr(trainer._train_step)(state, batch))
    state, metrics = trainer.train_step(state, batch)
    results[budget] = (jax.device_get(state["params"]), jax.device_get(metrics))
  length, vocab = sequence_spec(cfg).length, cfg.model.decoder.vocab_size
  auto = 2 * (cfg.data.max_target_tokens + 1)
  assert trainer.loss_positions == 2 and 2 < auto < length
  targets_per_row = np.asarray(batch["mask_loss"]).sum(axis=1)
  assert targets_per_row.max() <= auto and targets_per_row.max() > 2
  assert results["auto"][1]["rows_over_loss_positions"] == 0
  assert results["2"][1]["rows_over_loss_positions"] == (targets_per_row > 2).sum()
  # The budget's branch projects [8, budget] positions onto the vocabulary; "all" never does.
  for budget, positions in (("auto", auto), ("2", 2)):
    assert f"f32[8,{positions},{vocab}]" in jaxprs[budget]
    assert f"f32[8,{positions},{vocab}]" not in jaxprs["all"]
  p_all, m_all = results["all"]
  for budget in ("auto", "2"):
    params, metrics = results[budget]
    for key in ("loss", "token_accuracy", "task_nll_sum", "target_tokens", "task_tokens"):
      np.testing.assert_allclose(metrics[key], m_all[key], rtol=1e-5, err_msg=f"{budget}: {key}")
    for name in p_all:
      np.testing.assert_allclose(params[name], p_all[name], rtol=1e-4, atol=1e-6,
                                 err_msg=f"{budget}: {name}")

  for bad in ("some", "0", "1.5"):
    cfg.train.loss_positions = bad
    with pytest.raises(ValueError, match=r"config.train.loss_positions=.*'auto', 'all'"):
      Trainer(cfg, num_tasks=3)

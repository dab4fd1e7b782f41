"""The training loop: config -> runtime -> trainer -> init or restore -> steps, checkpoints, evals.

Rerunning the same call resumes from the latest checkpoint in WORKDIR/checkpoints, data iterator
included, so the resumed run sees exactly the examples it would have seen. Everything is
validated before the workdir is touched (the config, the data, the checkpoint's compatibility and
config history: `medpalm_m.trainer.workdir`); a refused run leaves it byte-identical. SIGTERM
(preemption), at any moment, saves what exists and returns. Divergence (`trainer.divergence`)
stops the run naming the step, before that step's state is saved, so every checkpoint is a good
one. A checkpoint that cannot be written stops the run at once (CheckpointSaveError). The workdir
holds config.json, config_history.jsonl, metrics.jsonl, TensorBoard events and checkpoints/.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from medpalm_m import checkpoint as ckpt_lib
from medpalm_m import flops, preemption
from medpalm_m.data import augment, mixtures, pipeline, preprocess
from medpalm_m.runtime import any_process, prepare_data, say
from medpalm_m.trainer import workdir as workdir_lib
from medpalm_m.trainer.divergence import DivergenceError, DivergenceGuard
from medpalm_m.trainer.state import Trainer


class MetricsWriter:
  """metrics.jsonl (one JSON object per logged step) and TensorBoard events, from process 0.
  Opened at the step the run starts from: TensorBoard drops its events of later steps (a killed
  run's), as `workdir.start` cut metrics.jsonl back."""

  def __init__(self, workdir: str, start_step: int):
    self.active = jax.process_index() == 0
    if not self.active:
      return
    self.jsonl = open(os.path.join(workdir, workdir_lib.METRICS), "a")
    self.tb = _summary_writer(os.path.join(workdir, "tensorboard"), purge_step=start_step + 1)

  def write(self, step: int, values: dict[str, Any]) -> None:
    if not self.active:
      return
    self.jsonl.write(json.dumps({"step": step, **values}) + "\n")
    self.jsonl.flush()
    for key, value in values.items():
      if isinstance(value, (int, float)) and math.isfinite(value):
        self.tb.add_scalar(key, value, step)
      elif isinstance(value, dict):
        for sub, v in value.items():
          if isinstance(v, (int, float)) and math.isfinite(v):
            self.tb.add_scalar(f"{key}/{sub}", v, step)
    self.tb.flush()

  def close(self) -> None:
    if self.active:
      self.jsonl.close()
      self.tb.close()


def _summary_writer(logdir: str, purge_step: int):
  """tensorboardX's SummaryWriter, imported without torch. tensorboardX imports torch, where it is
  installed, only to accept torch tensors, which this loop never logs: that import was 3 s of each
  training process's start on a 2-core AMD EPYC (python -X importtime), with torch installed
  beside medpalm_m, as in the test environment. A `None` in sys.modules makes that import fail as
  if torch were absent; a torch already imported is left alone."""
  hidden = "torch" not in sys.modules
  if hidden:
    sys.modules["torch"] = None
  try:
    from tensorboardX import SummaryWriter
  finally:
    if hidden:
      del sys.modules["torch"]
  return SummaryWriter(logdir, purge_step=purge_step)


def train(cfg: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Run (or resume) training to config.train.num_steps; returns the last logged metrics."""
  previous_handler = signal.getsignal(signal.SIGTERM)
  preemption.listen()
  try:
    return _train(cfg, os.path.abspath(workdir))
  finally:
    signal.signal(signal.SIGTERM, previous_handler)


def _new_window() -> dict[str, Any]:
  """What the log line of the next config.train.log_every steps counts."""
  return {"time": time.perf_counter(), "steps": 0, "tokens": 0.0, "examples": 0,
          "full_logit_steps": 0}


def _train(cfg: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  # Validation: nothing below writes to the workdir until `workdir_lib.start`.
  mixture = mixtures.normalize(dict(cfg.data.mixture))
  guard = DivergenceGuard(cfg.train.divergence)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  ckpt_lib.check_writable(ckpt_dir)
  data_dir, tokenizer = prepare_data(cfg)
  task_ids = pipeline.task_ids(list(mixture))
  task_names = sorted(task_ids, key=task_ids.get)
  trainer = Trainer(cfg, num_tasks=len(task_ids))
  preprocessor = preprocess.Preprocessor(tokenizer, trainer.runtime.spec, task_ids)
  packing = pipeline.Packing.from_config(cfg.data)
  dataset = pipeline.train_dataset(
      mixture, data_dir, preprocessor, batch_size=cfg.train.batch_size, seed=cfg.seed,
      process_index=trainer.data_shard[0], process_count=trainer.data_shard[1],
      num_workers=cfg.data.num_workers, packing=packing,
      every_task_per_batch=cfg.data.every_task_per_batch,
      augmentation=augment.Augmentation.from_config(cfg.data.augmentation, cfg.seed),
      opening=pipeline.Opening.from_config(cfg.data),
      upsampling=pipeline.Upsampling.from_config(cfg.data), prefetch_in_thread=True)
  data_iterator = iter(dataset)
  try:
    return _run(cfg, workdir, trainer, tokenizer, data_iterator, mixture, task_names, guard, ckpt_dir)
  finally:
    data_iterator.close()


def _run(cfg, workdir: str, trainer: Trainer, tokenizer, data_iterator, mixture: dict[str, float],
         task_names: list[str], guard: DivergenceGuard, ckpt_dir: str) -> dict[str, Any]:
  """Resume or start, then step to config.train.num_steps; the workdir is written from here."""
  meta = {"params": ckpt_lib.param_signature(trainer.abstract_state["params"]),
          "tasks": task_names, "mixture": mixture}
  latest, saved_meta = _validated_checkpoint(cfg, workdir, ckpt_dir, meta)
  if _preempted(f"before the first step ({_saved(latest)})"):
    return {"step": latest}

  # Validated: from here on the run writes. Opening the checkpoints for writing first removes the
  # temporary folders of a save that failed (a full disk is full of them).
  checkpointer = ckpt_lib.Checkpointer(ckpt_dir, keep=cfg.train.keep_checkpoints)
  workdir_lib.start(workdir, cfg, latest or 0)
  seen = {name: 0 for name in task_names}
  if latest is not None and "imported_from" in saved_meta:
    # The step 0 of `medpalm_m.convert import`: parameters only, the optimizer starts fresh.
    state = trainer.init_state_from(workdir)
    say(f"initialised the parameters from the imported checkpoint in {checkpointer.directory}")
  elif latest is not None:
    state, saved_meta = checkpointer.restore(latest, trainer.abstract_state, data_iterator,
                                             trainer.abstract_state["params"])
    seen.update(saved_meta.get("seen", {}))
    if saved_meta.get("mixture") != mixture:
      # The saved iterator position only means something for the stream it came from.
      say(f"warning: config.data.mixture differs from the one checkpoint {latest} was trained "
          f"with ({saved_meta.get('mixture')}); the data stream does not continue exactly")
    say(f"resumed from {checkpointer.directory} step {latest}")
  elif cfg.init_from:
    # Fine-tuning: start from another checkpoint's parameters (once; a resume takes the branch above).
    state = trainer.init_state_from(cfg.init_from)
    say(f"initialised the parameters from {cfg.init_from}")
  else:
    state = trainer.init_state()
  start = int(jax.device_get(state["step"]))
  if trainer.num_trained < trainer.num_params:
    say(f"training {trainer.num_trained:,} of {trainer.num_params:,} parameters; the rest are frozen "
        f"by config.optimizer.freeze={cfg.optimizer.freeze!r}")

  writer = MetricsWriter(workdir, start)
  seq_len = trainer.runtime.spec.length
  step_flops = flops.training_flops_per_step(trainer.model_cfg, cfg.train.batch_size, seq_len,
                                             pipeline.images_per_row(cfg.data))
  num_steps = cfg.train.num_steps
  progress = _progress(start, num_steps)
  window = _new_window()
  totals = {k: np.zeros(len(task_names)) for k in
            ("nll", "tokens", "prompt_truncated", "target_truncated", "dropped")}
  last: dict[str, Any] = {}
  evaluators: dict = {}  # suite name (None: the mixture's) -> its Evaluator, compiled once
  step = start
  failed = True
  try:
    if any_process(preemption.requested()):
      say(f"received SIGTERM before the first step: nothing new to save ({_saved(latest)}), exiting")
      step = num_steps  # skip the loop
    while step < num_steps:
      batch = trainer.global_batch(next(data_iterator))
      state, metrics = trainer.train_step(state, batch)
      step += 1
      metrics = jax.device_get(metrics)
      try:
        guard.check(step, metrics)
      except DivergenceError as e:
        checkpointer.wait()  # the last good save, if one is in flight, is committed
        raise DivergenceError(
            f"{e}; stopping without saving this step. {_saved(checkpointer.latest_step())} in "
            f"{checkpointer.directory}. Lower config.optimizer.learning_rate, enable clipping "
            "(config.optimizer.clip_norm) or change the limits in config.train.divergence") from None
      for i, name in enumerate(task_names):
        seen[name] += int(metrics["task_examples"][i])
      totals["nll"] += metrics["task_nll_sum"]
      totals["tokens"] += metrics["task_tokens"]
      for k in ("prompt_truncated", "target_truncated", "dropped"):
        totals[k] += metrics[f"task_{k}"]
      window["steps"] += 1
      window["tokens"] += cfg.train.batch_size * seq_len  # processed tokens, padding included
      window["examples"] += int(metrics["task_examples"].sum())
      window["full_logit_steps"] += int(metrics["rows_over_loss_positions"] > 0)
      progress.update(step, float(metrics["loss"]))
      if step % cfg.train.log_every == 0 or step == num_steps:
        elapsed = time.perf_counter() - window["time"]
        last = {
            "loss": float(metrics["loss"]), "token_accuracy": float(metrics["token_accuracy"]),
            "learning_rate": float(metrics["learning_rate"]), "grad_norm": float(metrics["grad_norm"]),
            "param_rms": float(metrics["param_rms"]),
            "tokens_per_sec": window["tokens"] / elapsed,
            "steps_per_sec": window["steps"] / elapsed,
            # With packing a row holds several examples, so this is the comparable speed.
            "examples_per_sec": window["examples"] / elapsed,
            "model_tflops_per_sec_per_device": step_flops * window["steps"] / elapsed / 1e12 / jax.device_count(),
            "task_loss": {n: float(totals["nll"][i] / totals["tokens"][i])
                          for i, n in enumerate(task_names) if totals["tokens"][i]},
            "examples_seen": dict(seen),
            "truncated_prompts": _nonzero(task_names, totals["prompt_truncated"]),
            "truncated_targets": _nonzero(task_names, totals["target_truncated"]),
            "dropped_examples": _nonzero(task_names, totals["dropped"]),
            # Steps with a row over config.train.loss_positions (they projected every position).
            "full_logit_steps": window["full_logit_steps"],
        }
        writer.write(step, last)
        if not progress.interactive:
          say(f"step {step}/{num_steps} loss {last['loss']:.4f} token_accuracy "
              f"{last['token_accuracy']:.3f} lr {last['learning_rate']:.2e} "
              f"{last['tokens_per_sec']:.0f} tokens/s {last['examples_per_sec']:.1f} examples/s")
        totals = {k: np.zeros(len(task_names)) for k in totals}
        window = _new_window()
      stopping = any_process(preemption.requested())
      if step % cfg.train.checkpoint_every == 0 or step == num_steps or stopping:
        checkpointer.save(step, state, data_iterator, {**meta, "seen": seen}, force=True)
      if cfg.train.eval_every and step % cfg.train.eval_every == 0:
        periodic_eval(cfg, workdir, trainer, tokenizer, state["params"], step, evaluators, writer)
      for suite in _due_suites(cfg, step):
        periodic_eval(cfg, workdir, trainer, tokenizer, state["params"], step, evaluators, writer,
                      suite=suite)
      if stopping:
        checkpointer.wait()
        say(f"received SIGTERM: saved step {step}, exiting")
        break
    failed = False
  finally:
    progress.close()
    writer.close()
    if failed:
      # The error in flight says what happened; a save still in the background may finish.
      _close_quietly(checkpointer)
    else:
      checkpointer.close()
  return {"step": step, **last}


def _validated_checkpoint(cfg, workdir: str, ckpt_dir: str, meta: dict) -> tuple[int | None, dict]:
  """The latest checkpoint's step and metadata, after checking that this config may resume it;
  (None, {}) without one. Reads only."""
  if not os.path.isdir(ckpt_dir):
    return None, {}
  reader = ckpt_lib.Checkpointer(ckpt_dir, read_only=True)
  try:
    latest = reader.latest_step()
    if latest is None:
      return None, {}
    saved_meta = reader.meta(latest)
  finally:
    reader.close()
  ckpt_lib.check_compatible(saved_meta["params"], meta["params"], ckpt_dir, latest)
  if "imported_from" not in saved_meta:  # an import's config.json only wraps the imported model
    workdir_lib.check_config_unchanged(workdir, cfg, latest)
  return latest, saved_meta


def _saved(step: int | None) -> str:
  return f"the last checkpoint is step {step}" if step is not None else "no checkpoint exists yet"


def _preempted(when: str) -> bool:
  """True (and says so) when SIGTERM arrived while the run was being prepared."""
  if not any_process(preemption.requested()):
    return False
  say(f"received SIGTERM {when}: nothing was saved, exiting")
  return True


def _close_quietly(checkpointer: ckpt_lib.Checkpointer) -> None:
  try:
    checkpointer.close()
  except ckpt_lib.CheckpointSaveError:
    pass


def _due_suites(cfg, step: int) -> list[str]:
  from medpalm_m.evaluation import suites
  return [suite.name for suite in suites.due(cfg, step)]


def periodic_eval(cfg, workdir, trainer, tokenizer, params, step, evaluators: dict, writer,
                  suite: str | None = None) -> None:
  """`medpalm_m.evaluation` on the live parameters: the mixture's tasks (eval/step_N.json, logged
  as "eval") or a suite of config.evals (eval/<suite>/step_N.json, logged as "eval_<suite>");
  each one's compiled programs are kept in `evaluators` and reused at every evaluation."""
  from medpalm_m import evaluation
  from medpalm_m.evaluation import suites
  if suite not in evaluators:
    plan = suites.named_suite(cfg, suite) if suite else suites.mixture_suite(cfg)
    evaluators[suite] = evaluation.suite_evaluator(trainer.runtime, tokenizer, plan)
  report = evaluation.evaluate(cfg, workdir, step=step, suite=suite, params=params,
                               runtime=trainer.runtime, evaluator=evaluators[suite])
  if report is None:  # process 0 scores, writes and logs
    return
  beaten, compared = evaluation.baseline_summary(report)
  scores = {f"{task}/{metric}": value for task, result in report["tasks"].items()
            for metric, value in result.items() if isinstance(value, float)}
  key = f"eval_{suite}" if suite else "eval"
  writer.write(step, {key: scores, f"{key}_above_baseline": beaten, f"{key}_metrics_compared": compared})
  say(f"step {step}: {f'suite {suite!r}' if suite else 'evaluation'} above the baseline on {beaten} "
      f"of {compared} metrics")


def _nonzero(names, counts) -> dict[str, int]:
  return {n: int(c) for n, c in zip(names, counts) if c}


class _progress:
  """A progress bar with ETA on a terminal, nothing otherwise (log lines do the job there)."""

  def __init__(self, start: int, total: int):
    self.interactive = sys.stderr.isatty() and jax.process_index() == 0
    self.bar = None
    if self.interactive:
      from tqdm import tqdm
      self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)
    self.position = start

  def update(self, step: int, loss: float) -> None:
    if self.bar is not None:
      self.bar.update(step - self.position)
      self.bar.set_postfix(loss=f"{loss:.4f}")
    self.position = step

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()



"""Train Med-PaLM M: config -> mesh -> abstract state -> shardings -> init or restore -> loop.

    python -m medpalm_m.train --config=configs/tiny.py --workdir=DIR [--config.key=value ...]

Rerunning the same command resumes from the latest checkpoint in DIR/checkpoints, data
iterator included, so the resumed run sees exactly the examples it would have seen. SIGTERM
(preemption) saves and exits 0. A NaN or Inf loss stops the run, naming the step; the last good
checkpoint stays. The workdir holds config.json, metrics.jsonl, TensorBoard events and
checkpoints/.
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
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import app, flags, logging
from jax.sharding import NamedSharding, PartitionSpec as P
from ml_collections import config_flags

from medpalm_m import checkpoint as ckpt_lib
from medpalm_m import flops, sharding
from medpalm_m.data import mixtures, pipeline, preprocess
from medpalm_m.data import tokenizer as tok
from medpalm_m.model.loss import NORMALIZATIONS, next_token_loss_sum, per_example_weights
from medpalm_m.model.multimodal import ModelConfig
from medpalm_m.model.state import ModelTemplate
from medpalm_m.optimizer import make_optimizer

class NonFiniteLossError(RuntimeError):
  pass


def initialize_distributed() -> None:
  """Join a multi-process run when the environment describes one (TPU pods, SLURM, or an
  explicit coordinator); a single process needs nothing.

  MEDPALM_M_COORDINATOR (+ MEDPALM_M_NUM_PROCESSES, MEDPALM_M_PROCESS_ID): an explicit
  coordinator (launch/multiprocess.sh). MEDPALM_M_DISTRIBUTED=auto: JAX detects the cluster
  itself (launch/tpu_pod.sh on TPU pod slices). A SLURM job with more than one task is detected
  without either; JAX then gives each task the GPU of its SLURM_LOCALID.
  """
  if os.environ.get("MEDPALM_M_COORDINATOR"):
    jax.distributed.initialize(
        coordinator_address=os.environ["MEDPALM_M_COORDINATOR"],
        num_processes=int(os.environ["MEDPALM_M_NUM_PROCESSES"]),
        process_id=int(os.environ["MEDPALM_M_PROCESS_ID"]))
  elif (os.environ.get("MEDPALM_M_DISTRIBUTED") == "auto"
        or (os.environ.get("SLURM_JOB_ID") and int(os.environ.get("SLURM_NTASKS", "1")) > 1)):
    jax.distributed.initialize()


def prepare_data(cfg) -> tuple[str, tok.Tokenizer]:
  """The data directory (synthetic benchmark built when asked and missing) and the tokenizer."""
  data_dir = os.path.expanduser(cfg.data.data_dir)
  uses_synthetic = any(t.startswith("synthetic_") for t in cfg.data.mixture)
  from medpalm_m.data import synthetic
  if uses_synthetic and cfg.data.build_synthetic:
    if jax.process_index() == 0:
      synthetic.build(data_dir, verbose=True)
    sync("synthetic data built")
  manual_dirs = {t: p for t, p in dict(cfg.data.get("manual_dirs") or {}).items() if p}
  if manual_dirs:  # real datasets: built from the user's downloads on first use
    from medpalm_m.data.builders import prepare
    if jax.process_index() == 0:
      prepare.prepare(data_dir, manual_dirs, skip_malformed=cfg.data.get("skip_malformed", False))
    sync("real data built")
  path = os.path.expanduser(cfg.data.tokenizer) if cfg.data.tokenizer else synthetic.tokenizer_path(data_dir)
  tokenizer = tok.Tokenizer(path)
  if tokenizer.vocab_size > cfg.model.decoder.vocab_size:
    raise ValueError(f"tokenizer {path} has {tokenizer.vocab_size} pieces but "
                     f"config.model.decoder.vocab_size is {cfg.model.decoder.vocab_size}")
  if cfg.model.image_token_id != tok.IMAGE_ID:
    raise ValueError(f"config.model.image_token_id must be {tok.IMAGE_ID} (the tokenizer's <img>)")
  return data_dir, tokenizer


def sequence_spec(cfg, model_cfg: ModelConfig) -> preprocess.SequenceSpec:
  return preprocess.SequenceSpec(
      max_prompt_tokens=cfg.data.max_prompt_tokens, max_target_tokens=cfg.data.max_target_tokens,
      max_images=cfg.data.max_images, image_size=model_cfg.vit.image_size,
      image_slots=model_cfg.num_image_tokens)


def sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


class Trainer:
  """The state, its shardings and the compiled steps for one config on one mesh."""

  def __init__(self, cfg, num_tasks: int, mesh=None):
    self.cfg = cfg
    self.model_cfg = ModelConfig.from_dict(cfg.model)
    self.num_tasks = num_tasks
    self.loss_normalization = cfg.train.get("loss_normalization", "tokens")
    if self.loss_normalization not in NORMALIZATIONS:
      raise ValueError(f"config.train.loss_normalization={self.loss_normalization!r}; use one of "
                       f"{NORMALIZATIONS} (average over target tokens, or over examples)")
    self.mesh = mesh or sharding.make_mesh(dict(cfg.mesh))
    self.rules = tuple(cfg.rules) if cfg.rules else sharding.DEFAULT_RULES
    self.template, abstract_params = ModelTemplate.abstract(self.model_cfg)
    self.tx, self.schedule = make_optimizer(cfg, abstract_params)
    self.param_shardings = {
        k: NamedSharding(self.mesh, sharding.logical_to_spec(self.template.logical_axes[k], v.shape,
                                                             self.mesh, self.rules))
        for k, v in abstract_params.items()}
    self.batch_sharding = sharding.batch_sharding(self.mesh, self.rules)
    # Which part of each global batch this process reads and feeds (replicas read the same).
    self.data_shard = sharding.process_batch_shard(self.batch_sharding, cfg.train.batch_size)
    shapes = jax.eval_shape(self._init_state)
    self.state_shardings = {
        "params": self.param_shardings,
        "opt_state": sharding.like_params(shapes["opt_state"], abstract_params, self.param_shardings,
                                          self.mesh),
        "step": NamedSharding(self.mesh, P()),
        "rng": NamedSharding(self.mesh, P()),
    }
    self.abstract_state = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, self.state_shardings)
    self.init_state = jax.jit(self._init_state, out_shardings=self.state_shardings)
    self.state_around = jax.jit(self._state_around, out_shardings=self.state_shardings)
    # Metrics replicated: every process can read them (device_get of an array spread over
    # other hosts' devices fails), and process 0 logs them.
    self.train_step = jax.jit(self._train_step, donate_argnums=0,
                              out_shardings=(self.state_shardings, NamedSharding(self.mesh, P())))

  def _init_state(self) -> dict[str, Any]:
    _, params = ModelTemplate.create(self.model_cfg, self.cfg.seed)
    return self._state_around(jax.lax.with_sharding_constraint(params, self.param_shardings))

  def _state_around(self, params) -> dict[str, Any]:
    """Step 0 with these parameters and a fresh optimizer state."""
    return {"params": params, "opt_state": self.tx.init(params), "step": jnp.zeros((), jnp.int32),
            "rng": jax.random.key_data(jax.random.key(self.cfg.seed))}

  def init_state_from(self, workdir: str) -> dict[str, Any]:
    """Step 0 with the parameters of `workdir`'s latest checkpoint (an imported open model or
    another run), each read straight into its shard, and a fresh optimizer state."""
    source = ckpt_lib.Checkpointer(os.path.join(os.path.expanduser(workdir), "checkpoints"),
                                   async_save=False)
    step = source.latest_step()
    if step is None:
      raise FileNotFoundError(f"config.init_from={workdir!r} has no checkpoint in {source.directory}; "
                              "import one with `python -m medpalm_m.convert import`")
    params = source.restore_params(step, self.abstract_state["params"])
    source.close()
    return self.state_around(params)

  def _loss_sum(self, params, batch, dropout_key):
    uses_dropout = self.model_cfg.decoder.dropout > 0 or self.model_cfg.vit.dropout > 0
    model = self.template.bind(params, dropout_key=dropout_key if uses_dropout else None)
    logits = model(batch["tokens"], batch["images"], batch["input_mask"], batch["mask_ar"],
                   batch.get("segment_ids"), batch.get("positions"))
    token_weights = (per_example_weights(batch["mask_loss"], batch.get("segment_ids"))
                     if self.loss_normalization == "examples" else None)
    return next_token_loss_sum(logits, batch["tokens"], batch["mask_loss"], self.cfg.train.z_loss,
                               token_weights)

  def _train_step(self, state, batch):
    k = self.cfg.train.grad_accum_steps
    key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
    # Micro-batch i is every k-th example (not a contiguous block), so each device keeps 1/k of
    # its own rows in every micro-batch: a contiguous split would put micro-batch 0 on the first
    # devices only and make XLA gather the batch across them.
    micro = jax.tree.map(lambda x: x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1), batch)
    grad_fn = jax.value_and_grad(self._loss_sum, has_aux=True)

    def accumulate(carry, xs):
      mb, i = xs
      (loss_sum, stats), grads = grad_fn(state["params"], mb, jax.random.fold_in(key, i))
      carry = jax.tree.map(jnp.add, carry, (loss_sum, grads))
      return carry, stats

    if k == 1:
      # No scan for a single micro-batch: its zero-initialised gradient carry and loop cost 3% of
      # a bench-small step on the CPU (8.52 s -> 8.26 s; benchmarks/RESULTS.md).
      (loss_sum, stats), grads = grad_fn(state["params"], batch, jax.random.fold_in(key, 0))
    else:
      zeros = (jnp.zeros(()), jax.tree.map(jnp.zeros_like, state["params"]))
      (loss_sum, grads), stats = jax.lax.scan(accumulate, zeros, (micro, jnp.arange(k)))
      stats = jax.tree.map(lambda x: x.swapaxes(0, 1).reshape(-1, *x.shape[2:]), stats)  # batch order
    num_tokens = jnp.maximum(stats["weights"].sum(), 1.0)
    normalizer = jnp.maximum(stats["loss_weights"].sum(), 1.0)  # target tokens, or examples
    grads = jax.tree.map(lambda g: g / normalizer, grads)
    updates, opt_state = self.tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)

    # Per-example fields are [B] for one example per row, [B, examples_per_row] for packed rows.
    task = batch["task_id"]
    valid = batch.get("example_valid", jnp.ones(task.shape, bool)).astype(jnp.float32)
    if task.ndim == 1:
      token_task = jnp.broadcast_to(task[:, None], stats["weights"].shape)
    else:
      # A position's stats belong to the example of its segment (1-based; padding has weight 0).
      token_task = jnp.take_along_axis(task, jnp.maximum(batch["segment_ids"] - 1, 0), axis=1)
    per_token_task = lambda x: jax.ops.segment_sum(x.ravel(), token_task.ravel(), self.num_tasks)
    per_task = lambda x: jax.ops.segment_sum((x.astype(jnp.float32) * valid).ravel(), task.ravel(),
                                             self.num_tasks)
    metrics = {
        "loss": loss_sum / normalizer,
        "token_accuracy": stats["correct"].sum() / num_tokens,
        "grad_norm": optax.global_norm(grads),
        "learning_rate": self.schedule(state["step"]),
        "target_tokens": num_tokens,
        "task_nll_sum": per_token_task(stats["nll"]),
        "task_tokens": per_token_task(stats["weights"]),
        "task_examples": per_task(jnp.ones_like(valid)),
        "task_prompt_truncated": per_task(batch["prompt_truncated"]),
        "task_target_truncated": per_task(batch["target_truncated"]),
        "task_dropped": per_task(batch["dropped"]),
    }
    new_state = {"params": params, "opt_state": opt_state, "step": state["step"] + 1, "rng": state["rng"]}
    return new_state, metrics

  def global_batch(self, local_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """One global batch from this process's part of it (see `data_shard`)."""
    count = self.data_shard[1]
    return {k: jax.make_array_from_process_local_data(self.batch_sharding, v,
                                                      (v.shape[0] * count, *v.shape[1:]))
            for k, v in local_batch.items()}


class MetricsWriter:
  """metrics.jsonl (one JSON object per logged step) and TensorBoard events, from process 0."""

  def __init__(self, workdir: str):
    self.active = jax.process_index() == 0
    if not self.active:
      return
    self.jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    from tensorboardX import SummaryWriter
    self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

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


def write_config(cfg, workdir: str) -> None:
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(cfg.to_json_best_effort(indent=2, sort_keys=True))


def train(cfg: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Run (or resume) training to config.train.num_steps; returns the last logged metrics."""
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  write_config(cfg, workdir)
  data_dir, tokenizer = prepare_data(cfg)
  mixture = mixtures.normalize(dict(cfg.data.mixture))
  task_ids = pipeline.task_ids(list(mixture))
  task_names = sorted(task_ids, key=task_ids.get)
  trainer = Trainer(cfg, num_tasks=len(task_ids))
  preprocessor = preprocess.Preprocessor(tokenizer, sequence_spec(cfg, trainer.model_cfg), task_ids)
  packing = pipeline.Packing.from_config(cfg.data)
  dataset = pipeline.train_dataset(
      mixture, data_dir, preprocessor, batch_size=cfg.train.batch_size, seed=cfg.seed,
      process_index=trainer.data_shard[0], process_count=trainer.data_shard[1],
      num_workers=cfg.data.num_workers, packing=packing)
  data_iterator = iter(dataset)

  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                       keep=cfg.train.keep_checkpoints)
  meta = {"params": ckpt_lib.param_signature(trainer.abstract_state["params"]),
          "tasks": task_names, "mixture": mixture}
  latest = checkpointer.latest_step()
  seen = {name: 0 for name in task_names}
  if latest is not None:
    state, saved_meta = checkpointer.restore(latest, trainer.abstract_state, data_iterator,
                                             trainer.abstract_state["params"])
    seen.update(saved_meta.get("seen", {}))
    if saved_meta.get("mixture") != mixture:
      # The saved iterator position only means something for the stream it came from.
      say(f"warning: config.data.mixture differs from the one checkpoint {latest} was trained "
          f"with ({saved_meta.get('mixture')}); the data stream does not continue exactly")
    say(f"resumed from {checkpointer.directory} step {latest}")
  elif cfg.get("init_from"):
    # Fine-tuning: start from another checkpoint's parameters (once; a resume takes the branch above).
    state = trainer.init_state_from(cfg.init_from)
    say(f"initialised the parameters from {cfg.init_from}")
  else:
    state = trainer.init_state()
  start = int(jax.device_get(state["step"]))

  stop = {"signal": None}
  def on_sigterm(signum, frame):
    stop["signal"] = signum
  previous_handler = signal.signal(signal.SIGTERM, on_sigterm)

  writer = MetricsWriter(workdir)
  seq_len = sequence_spec(cfg, trainer.model_cfg).length
  step_flops = flops.training_flops_per_step(trainer.model_cfg, cfg.train.batch_size, seq_len,
                                             pipeline.images_per_row(cfg.data))
  num_steps = cfg.train.num_steps
  progress = _progress(start, num_steps)
  window = {"time": time.perf_counter(), "steps": 0, "tokens": 0.0, "examples": 0}
  totals = {k: np.zeros(len(task_names)) for k in
            ("nll", "tokens", "prompt_truncated", "target_truncated", "dropped")}
  last: dict[str, Any] = {}
  evaluator = None
  step = start
  try:
    while step < num_steps:
      batch = trainer.global_batch(next(data_iterator))
      state, metrics = trainer.train_step(state, batch)
      step += 1
      metrics = jax.device_get(metrics)
      if not math.isfinite(float(metrics["loss"])):
        raise NonFiniteLossError(
            f"loss is {float(metrics['loss'])} at step {step}; stopping. The last good checkpoint "
            f"(step {checkpointer.latest_step()}) is kept in {checkpointer.directory}. Lower "
            "config.optimizer.learning_rate or enable clipping (config.optimizer.clip_norm).")
      for i, name in enumerate(task_names):
        seen[name] += int(metrics["task_examples"][i])
      totals["nll"] += metrics["task_nll_sum"]
      totals["tokens"] += metrics["task_tokens"]
      for k in ("prompt_truncated", "target_truncated", "dropped"):
        totals[k] += metrics[f"task_{k}"]
      window["steps"] += 1
      window["tokens"] += cfg.train.batch_size * seq_len  # processed tokens, padding included
      window["examples"] += int(metrics["task_examples"].sum())
      progress.update(step, float(metrics["loss"]))
      if step % cfg.train.log_every == 0 or step == num_steps:
        elapsed = time.perf_counter() - window["time"]
        last = {
            "loss": float(metrics["loss"]), "token_accuracy": float(metrics["token_accuracy"]),
            "learning_rate": float(metrics["learning_rate"]), "grad_norm": float(metrics["grad_norm"]),
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
        }
        writer.write(step, last)
        if not progress.interactive:
          say(f"step {step}/{num_steps} loss {last['loss']:.4f} token_accuracy "
              f"{last['token_accuracy']:.3f} lr {last['learning_rate']:.2e} "
              f"{last['tokens_per_sec']:.0f} tokens/s {last['examples_per_sec']:.1f} examples/s")
        totals = {k: np.zeros(len(task_names)) for k in totals}
        window = {"time": time.perf_counter(), "steps": 0, "tokens": 0.0, "examples": 0}
      stopping = any_process(stop["signal"] is not None)
      if step % cfg.train.checkpoint_every == 0 or step == num_steps or stopping:
        checkpointer.save(step, state, data_iterator, {**meta, "seen": seen}, force=True)
      if cfg.train.eval_every and step % cfg.train.eval_every == 0:
        evaluator = periodic_eval(cfg, workdir, trainer, tokenizer, state["params"], step, evaluator, writer)
      if stopping:
        say(f"received signal {stop['signal'] or 'on another process'}: saved step {step}, exiting")
        break
  finally:
    progress.close()
    checkpointer.close()
    writer.close()
    signal.signal(signal.SIGTERM, previous_handler)
  return {"step": step, **last}


def periodic_eval(cfg, workdir, trainer, tokenizer, params, step, evaluator, writer):
  """The evaluator of `medpalm_m.evaluate` on the live parameters: writes eval/step_N.json and
  logs the headline metrics; its compiled programs are reused at every evaluation."""
  from medpalm_m import evaluate
  evaluator = evaluator or evaluate.Evaluator(cfg, trainer.template, tokenizer, sequence_spec(cfg, trainer.model_cfg))
  report = evaluate.evaluate(cfg, workdir, step=step, params=params, trainer=trainer, evaluator=evaluator)
  beaten, compared = evaluate.baseline_summary(report)
  scores = {f"{task}/{metric}": value for task, result in report["tasks"].items()
            for metric, value in result.items() if isinstance(value, float)}
  writer.write(step, {"eval": scores, "eval_above_baseline": beaten, "eval_metrics_compared": compared})
  say(f"step {step}: evaluation above the baseline on {beaten} of {compared} metrics")
  return evaluator


def any_process(flag: bool) -> bool:
  """True on every process when it is True on any: a preemption signal reaches the hosts of a
  pod at different steps, and a process that saved and left alone would hang the others in
  their next collective."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils
  return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))


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


def main(argv) -> None:
  del argv
  if flags.FLAGS.workdir is None or flags.FLAGS.config is None:
    raise app.UsageError("--config and --workdir are required")
  quiet_libraries()
  initialize_distributed()
  try:
    train(flags.FLAGS.config, flags.FLAGS.workdir)
  except (NonFiniteLossError, ckpt_lib.IncompatibleCheckpointError,
          pipeline.MissingDataError, preprocess.ExampleError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


def quiet_libraries() -> None:
  """orbax and TFDS log every file they touch at INFO; our own progress goes to stderr."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  import tensorflow_datasets as tfds
  tfds.disable_progress_bar()


def say(message: str) -> None:
  if jax.process_index() == 0:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
  # Flags live here so that importing this module (the evaluator does) defines none.
  config_flags.DEFINE_config_file("config", None, "Path to an ml-collections config file.")
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and config.json.")
  app.run(main)

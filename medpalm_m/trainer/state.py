"""The train state on a Runtime: optimizer, state shardings and the jitted, donating update step.

    trainer = Trainer(cfg, num_tasks)       # or Trainer(cfg, num_tasks, runtime=Runtime(cfg))
    state = trainer.init_state()
    state, metrics = trainer.train_step(state, trainer.global_batch(local_batch))

The state is a plain pytree {params, opt_state, step, rng}; parameters keep the Runtime's
shardings and optimizer state follows the parameter it belongs to (`sharding.like_params`).
Parameters frozen by config.optimizer.freeze (`optimizer.partition`) are in `params` but have no
optimizer state, no gradient and pass through the step unchanged.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from medpalm_m import checkpoint as ckpt_lib
from medpalm_m import sharding
from medpalm_m.data import mixtures, pipeline, tasks
from medpalm_m.model.loss import (NORMALIZATIONS, next_token_targets, per_example_weights,
                                  scatter_positions, scored_loss_sum, scored_positions)
from medpalm_m.model.template import ModelTemplate
from medpalm_m.runtime import Runtime
from medpalm_m.trainer.optimizer import make_optimizer, partition


class Trainer:
  """The train state, its shardings and the compiled steps of one config on a Runtime."""

  def __init__(self, cfg, num_tasks: int, mesh=None, *, runtime: Runtime | None = None):
    self.cfg = cfg
    self.runtime = runtime or Runtime(cfg, mesh)
    self.model_cfg, self.mesh, self.template = (self.runtime.model_cfg, self.runtime.mesh,
                                                self.runtime.template)
    self.num_tasks = num_tasks
    self.loss_normalization = cfg.train.loss_normalization
    if self.loss_normalization not in NORMALIZATIONS:
      raise ValueError(f"config.train.loss_normalization={self.loss_normalization!r}; use one of "
                       f"{NORMALIZATIONS} (average over target tokens, or over examples)")
    self.task_loss_weights = _task_loss_weights(cfg, num_tasks)
    self.loss_positions = loss_position_budget(cfg, self.runtime.spec.length)
    abstract_params = self.runtime.abstract_params
    self.num_params = sum(int(np.prod(p.shape)) for p in abstract_params.values())
    self.num_trained = sum(int(np.prod(p.shape)) for p in partition(cfg, abstract_params)[0].values())
    self.tx, self.schedule = make_optimizer(cfg, abstract_params)
    fresh_parameters(cfg, abstract_params)  # a regex that matches nothing fails before the run starts
    self.param_shardings = self.runtime.param_shardings
    self.batch_sharding = self.runtime.batch_sharding
    # Which part of each global batch this process reads and feeds (replicas read the same).
    self.data_shard = self.runtime.data_shard(cfg.train.batch_size)
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
    self.init_state = jax.jit(self._init_state, out_shardings=self.state_shardings,
                              compiler_options=self.runtime.initializer_compiler_options)
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
    trained, _ = partition(self.cfg, params)
    return {"params": params, "opt_state": self.tx.init(trained), "step": jnp.zeros((), jnp.int32),
            "rng": jax.random.key_data(jax.random.key(self.cfg.seed))}

  def init_state_from(self, workdir: str) -> dict[str, Any]:
    """Step 0 with the parameters of `workdir`'s latest checkpoint (an imported open model or
    another run), each read straight into its shard, and a fresh optimizer state. Two kinds of
    parameters start from their initial values (as `init_state` draws them) instead: those that
    config.init_from_fresh matches, which are not read (a new adapter grafted onto trained
    towers), and LoRA adapters (config.model.lora) that the checkpoint lacks, B at zero, so that
    step 0 computes what the checkpoint's model computes."""
    fresh = fresh_parameters(self.cfg, self.runtime.abstract_params)
    try:
      params, _ = self.runtime.restore_params(workdir, left_out=fresh, adapters_may_be_missing=True)
    except FileNotFoundError as e:
      raise FileNotFoundError(f"config.init_from={workdir!r}: {e}; import a checkpoint with "
                              "`python -m medpalm_m.convert import`") from e
    except ckpt_lib.IncompatibleCheckpointError as e:
      raise ckpt_lib.IncompatibleCheckpointError(
          f"config.init_from={workdir!r}: {e}; parameters that it lacks or that should not come "
          "from it (a new adapter) can start fresh: --config.init_from_fresh=REGEX, e.g. "
          "'^(projector|adapter/)'") from e
    missing = sorted(set(self.runtime.abstract_params) - set(params))
    if missing:
      params = {**params, **self._initial_params(missing)}
    return self.state_around(params)

  def _initial_params(self, names: list[str]) -> dict[str, jax.Array]:
    """The initial values of these parameters, as `init_state` draws them; XLA drops the work
    of every other parameter, so a few adapters cost no more than themselves."""
    def initial():
      _, params = ModelTemplate.create(self.model_cfg, self.cfg.seed)
      return {k: params[k] for k in names}
    return jax.jit(initial, out_shardings={k: self.param_shardings[k] for k in names},
                   compiler_options=self.runtime.initializer_compiler_options)()

  def _loss_sum(self, params, batch, dropout_key):
    uses_dropout = self.model_cfg.decoder.dropout > 0 or self.model_cfg.vit.dropout > 0
    model = self.template.bind(params, dropout_key=dropout_key if uses_dropout else None)
    hidden = model.hidden_states(batch["tokens"], batch["images"], batch["input_mask"],
                                 batch["mask_ar"], batch.get("segment_ids"), batch.get("positions"))
    token_weights = (per_example_weights(batch["mask_loss"], batch.get("segment_ids"))
                     if self.loss_normalization == "examples" else None)
    if self.task_loss_weights is not None:
      if token_weights is None:
        token_weights = batch["mask_loss"].astype(jnp.float32)
      token_weights = token_weights * jnp.asarray(self.task_loss_weights)[_token_task(batch)]
    scored = next_token_targets(batch["tokens"], batch["mask_loss"], token_weights)
    z_loss = self.cfg.train.z_loss
    every_position = lambda h: scored_loss_sum(model.decoder.logits(h), *scored, z_loss)
    if self.loss_positions is None:
      loss_sum, stats = every_position(hidden)
      return loss_sum, {**stats, "over_budget": jnp.zeros(hidden.shape[:1], bool)}
    # Only the positions that score a target go through the vocabulary projection and the
    # softmax (config.train.loss_positions): the rest carry no loss, and in the default run they
    # are ~94% of the positions. A batch with a row over the budget takes every position, so the
    # loss and the gradients are the same either way (up to float summation order).
    positions, over_budget = scored_positions(scored[1], self.loss_positions)

    def budgeted(h):
      take = lambda a: jnp.take_along_axis(a, positions, axis=1)
      loss_sum, stats = scored_loss_sum(model.decoder.logits(h, positions), *map(take, scored), z_loss)
      return loss_sum, {k: scatter_positions(v, positions, h.shape[1]) for k, v in stats.items()}

    loss_sum, stats = jax.lax.cond(over_budget.any(), every_position, budgeted, hidden)
    return loss_sum, {**stats, "over_budget": over_budget}

  def _train_step(self, state, batch):
    k = self.cfg.train.grad_accum_steps
    key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
    # Micro-batch i is every k-th example (not a contiguous block), so each device keeps 1/k of
    # its own rows in every micro-batch: a contiguous split would put micro-batch 0 on the first
    # devices only and make XLA gather the batch across them.
    micro = jax.tree.map(lambda x: x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1), batch)
    # Differentiated with respect to the trained parameters only: the frozen ones are constants
    # of the loss, so XLA computes no weight gradient for them and no backward pass at all
    # through a frozen tower that no trained parameter feeds (a frozen ViT under a trained adapter).
    trained, frozen = partition(self.cfg, state["params"])
    grad_fn = jax.value_and_grad(lambda t, mb, k: self._loss_sum({**frozen, **t}, mb, k), has_aux=True)

    def accumulate(carry, xs):
      mb, i = xs
      (loss_sum, stats), grads = grad_fn(trained, mb, jax.random.fold_in(key, i))
      carry = jax.tree.map(jnp.add, carry, (loss_sum, grads))
      return carry, stats

    if k == 1:
      # No scan for a single micro-batch: its zero-initialised gradient carry and loop cost 3% of
      # a bench-small step on the CPU (8.52 s -> 8.26 s; benchmarks/RESULTS.md).
      (loss_sum, stats), grads = grad_fn(trained, batch, jax.random.fold_in(key, 0))
    else:
      zeros = (jnp.zeros(()), jax.tree.map(jnp.zeros_like, trained))
      (loss_sum, grads), stats = jax.lax.scan(accumulate, zeros, (micro, jnp.arange(k)))
      stats = jax.tree.map(lambda x: x.swapaxes(0, 1).reshape(-1, *x.shape[2:]), stats)  # batch order
    num_tokens = jnp.maximum(stats["weights"].sum(), 1.0)
    normalizer = jnp.maximum(stats["loss_weights"].sum(), 1.0)  # target tokens, or examples
    grads = jax.tree.map(lambda g: g / normalizer, grads)
    updates, opt_state = self.tx.update(grads, state["opt_state"], trained)
    params = {**frozen, **optax.apply_updates(trained, updates)}

    # Per-example fields are [B] for one example per row, [B, examples_per_row] for packed rows.
    task = batch["task_id"]
    valid = batch.get("example_valid", jnp.ones(task.shape, bool)).astype(jnp.float32)
    token_task = _token_task(batch)
    per_token_task = lambda x: jax.ops.segment_sum(x.ravel(), token_task.ravel(), self.num_tasks)
    per_task = lambda x: jax.ops.segment_sum((x.astype(jnp.float32) * valid).ravel(), task.ravel(),
                                             self.num_tasks)
    metrics = {
        "loss": loss_sum / normalizer,
        "token_accuracy": stats["correct"].sum() / num_tokens,
        "grad_norm": optax.global_norm(grads),  # of the trained parameters
        # Of the parameters after this update: the state a checkpoint of this step would hold.
        "param_rms": optax.global_norm(params) / jnp.sqrt(float(self.num_params)),
        "learning_rate": self.schedule(state["step"]),
        "target_tokens": num_tokens,
        "task_nll_sum": per_token_task(stats["nll"]),
        "task_tokens": per_token_task(stats["weights"]),
        "task_examples": per_task(jnp.ones_like(valid)),
        "task_prompt_truncated": per_task(batch["prompt_truncated"]),
        "task_target_truncated": per_task(batch["target_truncated"]),
        "task_dropped": per_task(batch["dropped"]),
        # Rows with more target tokens than config.train.loss_positions: this step projected
        # every position onto the vocabulary (same result, more work).
        "rows_over_loss_positions": stats["over_budget"].sum(),
    }
    new_state = {"params": params, "opt_state": opt_state, "step": state["step"] + 1, "rng": state["rng"]}
    return new_state, metrics

  def global_batch(self, local_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """One global batch from this process's part of it (see `data_shard`)."""
    return self.runtime.global_batch(local_batch, self.data_shard[1])


def fresh_parameters(cfg, params: Mapping[str, Any]) -> frozenset[str]:
  """The parameter paths config.init_from_fresh (a regex; '' none) matches: initialised, not read
  from config.init_from."""
  if not cfg.init_from_fresh:
    return frozenset()
  pattern = re.compile(cfg.init_from_fresh)
  names = frozenset(k for k in params if pattern.search(k))
  if not names:
    raise ValueError(f"config.init_from_fresh={cfg.init_from_fresh!r} matches no parameter; "
                     "parameter paths look like 'projector', 'adapter/queries' or 'vit/blocks/0/qkv'")
  return names


def loss_position_budget(cfg, length: int) -> int | None:
  """config.train.loss_positions as positions per row (None: every position).

  "auto": an unpacked row scores at most its target and EOS (config.data.max_target_tokens + 1);
  a packed row holds several examples, so twice that (the default run's rows score 15 target
  tokens on average, 55 at most in its 650 steps). A number ("64": the field is a string, on the
  command line as in a config) gives the budget itself; "all", or a budget of the whole row,
  projects every position.
  """
  value = cfg.train.loss_positions
  if isinstance(value, str) and value.isdigit():  # the config's field is a string: "64" (flags too)
    value = int(value)
  if value == "all":
    return None
  if value == "auto":
    budget = cfg.data.max_target_tokens + 1
    budget *= 2 if cfg.data.packing.enabled else 1
  elif isinstance(value, int) and not isinstance(value, bool) and value >= 1:
    budget = value
  else:
    raise ValueError(f"config.train.loss_positions={value!r}; use 'auto', 'all' or a number of "
                     "positions per row (>= 1)")
  return None if budget >= length else budget


def _token_task(batch) -> jax.Array:
  """The task id [B, T] of each position: its row's, or in a packed row its segment's example's
  (segments are 1-based; padding, segment 0, takes the first example's and has no weight)."""
  task = batch["task_id"]
  if task.ndim == 1:
    return jnp.broadcast_to(task[:, None], batch["tokens"].shape)
  return jnp.take_along_axis(task, jnp.maximum(batch["segment_ids"] - 1, 0), axis=1)


def _task_loss_weights(cfg, num_tasks: int) -> np.ndarray | None:
  """config.train.task_loss_weights {task: factor} as a [num_tasks] array in task-id order (1 for
  a task it does not name); None when empty."""
  factors = dict(cfg.train.task_loss_weights)
  if not factors:
    return None
  ids = pipeline.task_ids(list(mixtures.normalize(dict(cfg.data.mixture))))
  # A registered task outside the mixture has no tokens to weigh (a config that narrows its
  # parent's mixture keeps the parent's weights); a name no task has is a mistake.
  unknown = sorted(set(factors) - set(tasks.all_tasks()))
  if unknown:
    raise ValueError(f"config.train.task_loss_weights: unknown task(s) {unknown}; "
                     "`python -m medpalm_m.data list` lists the registered tasks")
  bad = {t: f for t, f in factors.items() if not (isinstance(f, (int, float)) and np.isfinite(f) and f > 0)}
  if bad:
    raise ValueError(f"config.train.task_loss_weights: factors must be finite and > 0, got {bad}")
  weights = np.ones(max(num_tasks, len(ids)), np.float32)
  for task, factor in factors.items():
    if task in ids:
      weights[ids[task]] = factor
  return weights

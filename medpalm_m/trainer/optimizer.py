"""Optimizer from config: Adafactor (the paper) or AdamW, schedule, clipping, per-parameter
learning rates, and which parameters train at all (freezing by regex)."""

from __future__ import annotations

import re
from typing import Any, Mapping, TypeVar

import jax
import jax.numpy as jnp
import optax

T = TypeVar("T")


def learning_rate_schedule(cfg) -> optax.Schedule:
  """config.optimizer: learning_rate, schedule ('constant' as in the paper, 'cosine', 'linear'),
  warmup_steps, and for decaying schedules config.train.num_steps."""
  peak, warmup = cfg.optimizer.learning_rate, cfg.optimizer.warmup_steps
  total = cfg.train.num_steps
  if cfg.optimizer.schedule == "constant":
    decay = optax.constant_schedule(peak)
  elif cfg.optimizer.schedule == "cosine":
    decay = optax.cosine_decay_schedule(peak, max(total - warmup, 1))
  elif cfg.optimizer.schedule == "linear":
    decay = optax.linear_schedule(peak, 0.0, max(total - warmup, 1))
  else:
    raise ValueError(f"config.optimizer.schedule must be constant, cosine or linear, got "
                     f"{cfg.optimizer.schedule!r}")
  if warmup:
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])
  return decay


def partition(cfg, params: Mapping[str, T]) -> tuple[dict[str, T], dict[str, T]]:
  """(trained, frozen): the flat `{path: value}` parameters split by config.optimizer.freeze, a
  regex searched in each path (e.g. "^vit/"); '' freezes nothing (the paper fine-tunes
  everything). Works on arrays, abstract shapes or anything else keyed by parameter path.

  Only the trained part is differentiated and has optimizer state (`make_optimizer`): the train
  step takes its gradient with the frozen part held constant, so no frozen weight gets a
  gradient, and no frozen tower is differentiated unless a trained parameter lies beneath it.
  """
  pattern = cfg.optimizer.freeze
  if not pattern:
    return dict(params), {}
  regex = re.compile(pattern)
  trained = {k: v for k, v in params.items() if not regex.search(k)}
  frozen = {k: v for k, v in params.items() if regex.search(k)}
  if not frozen:
    raise ValueError(f"config.optimizer.freeze={pattern!r} matches no parameter; parameter "
                     "paths look like 'vit/blocks/0/attn/qkv', 'projector' or 'decoder/embedding'")
  if not trained:
    raise ValueError(f"config.optimizer.freeze={pattern!r} matches every parameter: nothing would "
                     "train; narrow the regex (e.g. '^(vit|decoder)/' keeps the projector trained)")
  return trained, frozen


def make_optimizer(cfg, params: Mapping[str, Any]) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The update rule of the trained parameters: `tx.init` and `tx.update` take the trained part
  of `params` (`partition(cfg, params)[0]`), so frozen parameters have no optimizer state.
  With nothing frozen that is every parameter, and the state is what it always was."""
  schedule = learning_rate_schedule(cfg)
  opt = cfg.optimizer
  if opt.name == "adafactor":
    # The paper: Adafactor with momentum (beta1 = 0.9); factored second moments keep the
    # optimizer state small for the 562B model.
    base = optax.adafactor(learning_rate=schedule, momentum=opt.b1,
                           weight_decay_rate=opt.weight_decay or None,
                           multiply_by_parameter_scale=False, clipping_threshold=None)
  elif opt.name == "adamw":
    base = optax.adamw(schedule, b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay)
  elif opt.name == "sgd":
    base = optax.sgd(schedule, momentum=opt.b1 or None)
  else:
    raise ValueError(f"config.optimizer.name must be 'adafactor', 'adamw' or 'sgd', got {opt.name!r}")
  # Clipping sees the trained gradients only: frozen parameters have none.
  chain = [optax.clip_by_global_norm(opt.clip_norm)] if opt.clip_norm else []
  trained, _ = partition(cfg, params)
  multipliers = dict(opt.lr_multipliers)
  if multipliers:
    # Checked against every parameter, so that a config's ViT multiplier stays valid when the
    # ViT is frozen; applied to the trained ones.
    factors = parameter_multipliers(multipliers, params)
    tx = optax.chain(*chain, base, scale_by_parameter({k: factors[k] for k in trained}))
  else:
    tx = optax.chain(*chain, base)
  return tx, schedule


def scale_by_parameter(factors: Mapping[str, float]) -> optax.GradientTransformation:
  """Multiplies each parameter's update (so its learning rate) by its factor in `factors`
  (`parameter_multipliers` of config.optimizer.lr_multipliers, keyed like the updates).

  Adafactor and Adam normalise every element's step to about the learning rate whatever the
  parameter's scale, so one rate cannot suit a [p*p*3, width] patch embedding with 0.02-sized
  weights and a decoder matrix alike: in the tiny default the rate that the text tasks need
  turned the ViT's patch embedding into noise (chest X-ray AUC 57 at 3e-3, 71 at 1e-3).
  """
  def update(updates, state, params=None):
    del params
    return {k: u if factors[k] == 1.0 else u * jnp.asarray(factors[k], u.dtype)
            for k, u in updates.items()}, state

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def parameter_multipliers(multipliers: dict[str, float], params: Any) -> Any:
  """Each parameter's learning-rate factor under config.optimizer.lr_multipliers (a pytree of
  floats like `params`; abstract parameters do): the one matching regex's value, 1 if none."""
  patterns = [(re.compile(pattern), float(value)) for pattern, value in multipliers.items()]
  for pattern, value in patterns:
    if value < 0:
      raise ValueError(f"config.optimizer.lr_multipliers[{pattern.pattern!r}] is {value}; "
                       "multipliers must be >= 0 (0 stops the updates; config.optimizer.freeze also "
                       "skips the gradients and the optimizer state)")

  def multiplier(path) -> float:
    name = param_path(path)
    matches = [(pattern.pattern, value) for pattern, value in patterns if pattern.search(name)]
    if len(matches) > 1:
      raise ValueError(f"config.optimizer.lr_multipliers: {[m[0] for m in matches]} all match "
                       f"parameter {name!r}; make the regexes exclusive")
    return matches[0][1] if matches else 1.0

  factors = jax.tree_util.tree_map_with_path(lambda path, _: multiplier(path), params)
  unused = [p.pattern for p, _ in patterns
            if not any(p.search(param_path(path)) for path, _ in jax.tree_util.tree_leaves_with_path(params))]
  if unused:
    raise ValueError(f"config.optimizer.lr_multipliers: {unused} match no parameter; parameter "
                     "paths look like 'vit/blocks/0/qkv' or 'decoder/embedding'")
  return factors


def param_path(path) -> str:
  """'decoder/blocks/0/attn/query' for a pytree path, as used in checkpoints and regexes."""
  parts = []
  for key in path:
    name = getattr(key, "key", getattr(key, "idx", getattr(key, "name", key)))
    parts.append(str(name))
  return "/".join(p for p in parts if p != "value")

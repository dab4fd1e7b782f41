"""Optimizer from config: Adafactor (the paper) or AdamW, schedule, clipping, freezing by regex."""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import optax


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


def make_optimizer(cfg, params: Any) -> tuple[optax.GradientTransformation, optax.Schedule]:
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
  chain = [optax.clip_by_global_norm(opt.clip_norm)] if opt.clip_norm else []
  multipliers = dict(opt.lr_multipliers)
  if multipliers:
    tx = optax.chain(*chain, base, scale_by_parameter(multipliers, params))
  else:
    tx = optax.chain(*chain, base)
  if opt.freeze:
    # Off by default: the paper fine-tunes every parameter. A regex over parameter paths
    # (e.g. "^vit/") freezes the matching ones.
    pattern = re.compile(opt.freeze)
    labels = jax.tree_util.tree_map_with_path(
        lambda path, _: "frozen" if pattern.search(param_path(path)) else "trained", params)
    if not any(v == "frozen" for v in jax.tree.leaves(labels)):
      raise ValueError(f"config.optimizer.freeze={opt.freeze!r} matches no parameter")
    tx = optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, labels)
  return tx, schedule


def scale_by_parameter(multipliers: dict[str, float], params: Any) -> optax.GradientTransformation:
  """Multiplies each parameter's update (so its learning rate) by the value of the regex in
  `multipliers` (config.optimizer.lr_multipliers) that its path matches; 1 if none. Two regexes
  matching one parameter are refused: the order of a config's keys is not kept everywhere.

  Adafactor and Adam normalise every element's step to about the learning rate whatever the
  parameter's scale, so one rate cannot suit a [p*p*3, width] patch embedding with 0.02-sized
  weights and a decoder matrix alike: in the tiny default the rate that the text tasks need
  turned the ViT's patch embedding into noise (chest X-ray AUC 57 at 3e-3, 71 at 1e-3).
  """
  factors = parameter_multipliers(multipliers, params)

  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda u, f: u if f == 1.0 else u * jnp.asarray(f, u.dtype), updates, factors), state

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def parameter_multipliers(multipliers: dict[str, float], params: Any) -> Any:
  """Each parameter's learning-rate factor under config.optimizer.lr_multipliers (a pytree of
  floats like `params`; abstract parameters do): the one matching regex's value, 1 if none."""
  patterns = [(re.compile(pattern), float(value)) for pattern, value in multipliers.items()]
  for pattern, value in patterns:
    if value < 0:
      raise ValueError(f"config.optimizer.lr_multipliers[{pattern.pattern!r}] is {value}; "
                       "multipliers must be >= 0 (0 freezes, like config.optimizer.freeze)")

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

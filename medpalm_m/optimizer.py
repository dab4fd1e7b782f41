"""Optimizer from config: Adafactor (the paper) or AdamW, schedule, clipping, freezing by regex."""

from __future__ import annotations

import re
from typing import Any

import jax
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


def param_path(path) -> str:
  """'decoder/blocks/0/attn/query' for a pytree path, as used in checkpoints and regexes."""
  parts = []
  for key in path:
    name = getattr(key, "key", getattr(key, "idx", getattr(key, "name", key)))
    parts.append(str(name))
  return "/".join(p for p in parts if p != "value")

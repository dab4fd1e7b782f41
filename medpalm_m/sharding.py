"""Device mesh and logical-axis rules: how parameters, optimizer state and batches are sharded.

Parameters carry logical axis names ('embed', 'mlp', 'heads', ...). A config's rules map each name
to mesh axes; the mesh has axes (data, fsdp, tensor). The same code runs on one CPU device, on 8
simulated CPU devices, on a GPU node and on a TPU pod slice; only the config changes.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# Pure data + FSDP parallelism: weights are sharded along their model width over 'fsdp',
# 'tensor' splits heads and MLP (size 1 unless the config asks for it).
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("embed_vit", "fsdp"),
    ("vocab", "tensor"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", None),
    ("head_dim", None),
    ("cache_length", None),  # KV-cache slots (evaluation)
    ("patch", None),
    ("patches", None),
    ("lora_rank", None),  # LoRA adapters (model.lora): A and B shard like their kernel, rank whole
)


def mesh_shape(axes: dict[str, int], num_devices: int) -> tuple[int, ...]:
  """Resolve config.mesh {'data': d, 'fsdp': f, 'tensor': t}, at most one of them -1 (fill)."""
  unknown = set(axes) - set(MESH_AXES)
  if unknown:
    raise ValueError(f"config.mesh has unknown axes {sorted(unknown)}; use {MESH_AXES}")
  sizes = [int(axes.get(a, 1)) for a in MESH_AXES]
  if sizes.count(-1) > 1:
    raise ValueError(f"config.mesh {dict(axes)}: at most one axis may be -1")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if num_devices % known:
      raise ValueError(f"config.mesh {dict(axes)} does not divide {num_devices} devices")
    sizes[sizes.index(-1)] = num_devices // known
  if math.prod(sizes) != num_devices:
    raise ValueError(f"config.mesh {dict(axes)} has {math.prod(sizes)} devices, but "
                     f"{num_devices} are available")
  return tuple(sizes)


def make_mesh(axes: dict[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  devices = list(devices if devices is not None else jax.devices())
  shape = mesh_shape(axes, len(devices))
  return Mesh(np.asarray(devices).reshape(shape), MESH_AXES)


def logical_to_spec(logical: Sequence[str | None] | None, shape: Sequence[int], mesh: Mesh,
                    rules: Sequence[tuple[str, Any]]) -> P:
  """PartitionSpec for an array with these logical axis names.

  A mesh axis is used at most once per array, and a dimension that the mesh axes do not divide
  evenly stays replicated, so any model shape works on any mesh (at some cost in memory).
  """
  if logical is None or len(logical) != len(shape):
    return P()  # e.g. Adafactor's factored statistics: small, replicated
  table = dict(rules)
  used: set[str] = set()
  spec = []
  for name, dim in zip(logical, shape):
    target = table.get(name) if name is not None else None
    axes = mesh_axes_of(target)
    axes = tuple(a for a in axes if a not in used and mesh.shape[a] > 1)
    size = math.prod(mesh.shape[a] for a in axes)
    if not axes or dim % size:
      spec.append(None)
      continue
    used.update(axes)
    spec.append(axes[0] if len(axes) == 1 else axes)
  return P(*spec)


def like_params(tree: Any, params: dict[str, Any], param_shardings: dict[str, NamedSharding],
                mesh: Mesh) -> Any:
  """Shardings for optimizer state: a leaf under a parameter's name with that parameter's shape
  (Adam's moments, Adafactor's momentum) is sharded like it; anything else (step counts,
  Adafactor's factored row/column statistics) is small and replicated."""
  def sharding_of(path, leaf):
    for key in reversed(path):
      name = getattr(key, "key", None)
      if isinstance(name, str) and name in params:
        if tuple(leaf.shape) == tuple(params[name].shape):
          return param_shardings[name]
        break
    return NamedSharding(mesh, P())
  return jax.tree_util.tree_map_with_path(sharding_of, tree)


def batch_sharding(mesh: Mesh, rules: Sequence[tuple[str, Any]]) -> NamedSharding:
  """Leading (batch) axis over the batch mesh axes, everything else replicated."""
  target = dict(rules).get("batch")
  axes = mesh_axes_of(target)
  return NamedSharding(mesh, P(axes if axes else None))


def process_batch_shard(sharding: NamedSharding, global_batch_size: int,
                        process_index: int | None = None) -> tuple[int, int]:
  """(index, count): this process feeds part `index` of `count` equal parts of the global batch.

  Processes whose devices hold the same batch rows are replicas and must feed the same examples
  (a 'tensor' axis that spans hosts, e.g. 8-way tensor parallelism over 4-chip TPU hosts), so
  `count` is the number of distinct row sets, not the number of processes.
  """
  process_index = jax.process_index() if process_index is None else process_index
  rows: dict[int, set[int]] = {}
  for device, index in sharding.devices_indices_map((global_batch_size,)).items():
    rows.setdefault(device.process_index, set()).update(range(*index[0].indices(global_batch_size)))
  parts = sorted({tuple(sorted(r)) for r in rows.values()})
  count = len(parts)
  covered = sorted(i for part in parts for i in part)
  if covered != list(range(global_batch_size)) or any(len(p) * count != global_batch_size for p in parts):
    raise ValueError(
        f"the batch sharding {sharding.spec} gives processes overlapping or unequal parts of a "
        f"batch of {global_batch_size}; choose config.mesh so that each batch-sharded mesh axis "
        "either stays within a host or spans whole hosts")
  return parts.index(tuple(sorted(rows[process_index]))), count


def describe(tree: Any) -> dict[str, str]:
  """Each array's sharding spec, for logs and tests."""
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {jax.tree_util.keystr(p): str(getattr(x, "sharding", None)) for p, x in flat}


def rules_of(cfg) -> tuple[tuple[str, Any], ...]:
  """config.rules, or DEFAULT_RULES when the config leaves them None."""
  return tuple(tuple(rule) for rule in cfg.rules) if cfg.rules else DEFAULT_RULES


def mesh_axes_of(rule_target: Any) -> tuple[str, ...]:
  """The mesh axes a rule maps a logical axis to: none, one name, or a tuple of names."""
  return (rule_target,) if isinstance(rule_target, str) else tuple(rule_target or ())

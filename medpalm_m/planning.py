"""Will a config fit a topology? Per-device memory of a training step, from shapes alone.

The library of `python -m medpalm_m.plan --config=configs/medpalm_m_12b.py [--topology=v5p-64,2x8xH100]`.
`format_plans` gives the parameter count and, per topology (default: config.topology), the
config's mesh and the bytes each device holds: parameters, optimizer state, gradients, activations and
FSDP-gathered weights, against the device's memory. Nothing is allocated: parameter and
optimizer shapes come from `jax.eval_shape`, their per-device shards from the trainer's own
`runtime.param_shardings` on an abstract mesh of the topology's size, so the 562B config
plans on a laptop.

Parameters and optimizer state are exact (tests/test_planning.py compares them with the shards of a
real trainer's state). The rest is an estimate, documented in `activation_bytes` and `Plan`;
`compare_with_xla` (plan --check_xla) compiles the config's real training step on this
machine's devices and puts XLA's own memory analysis beside the estimate (small configs only).
On XLA's CPU backend the estimate is within 1.3x of it for remat 'none'; that backend does not lower its memory for remat
at all (it keeps the recomputed values live), so the remat terms are the GPU/TPU expectation.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AbstractMesh, NamedSharding, PartitionSpec as P

from medpalm_m import runtime, sharding, topology as topology_lib
from medpalm_m.data import pipeline
from medpalm_m.model.lora import BASE_WEIGHTS, LoRAConfig
from medpalm_m.model.medpalm import ModelConfig
from medpalm_m.model.template import ModelTemplate
from medpalm_m.trainer.optimizer import make_optimizer, partition

# A step fits when the estimate stays under this share of device memory: the rest is for XLA's
# own buffers, fragmentation and the estimate's error. launch/slurm_gpu.sbatch lets JAX take
# 95% of GPU memory (its default preallocation is 75%).
HEADROOM = 0.9

_BLOCK = re.compile(r"^(decoder|vit)/blocks/(\d+)/(.*)$")


def abstract_params(model_cfg: ModelConfig) -> tuple[dict[str, jax.ShapeDtypeStruct], dict[str, Any]]:
  """Every parameter's shape and logical axes, as `ModelTemplate.abstract` gives them.

  Tracing the full constructor takes time quadratic in its size (40 s for 562B: flax's RNG
  counter asks each traced value for its sharding, and the error message that answers walks the
  whole trace), so a model with at most two layers per stack is traced and its second layer
  repeated. The layers of a stack have the same parameters; that is checked here, and
  tests/test_planning.py checks the result against `ModelTemplate.abstract` of a full model.
  LoRA targets that name layers ('blocks/(0|1)/') make the layers differ: the whole model is
  traced then.
  """
  d, v = model_cfg.decoder, model_cfg.vit
  shallow = dataclasses.replace(model_cfg, decoder=dataclasses.replace(d, depth=min(d.depth, 2)),
                                vit=dataclasses.replace(v, depth=min(v.depth, 2)))
  if model_cfg.lora.rank and not _adapted_alike_in_every_layer(model_cfg, shallow):
    template, params = ModelTemplate.abstract(model_cfg)
    return dict(params), dict(template.logical_axes)
  template, params = ModelTemplate.abstract(shallow)
  shapes: dict[str, jax.ShapeDtypeStruct] = {}
  axes: dict[str, Any] = {}
  layers: dict[tuple[str, int], dict[str, tuple]] = {}
  for name, value in params.items():
    block = _BLOCK.match(name)
    if block is None:
      shapes[name], axes[name] = value, template.logical_axes[name]
    else:
      layer = layers.setdefault((block.group(1), int(block.group(2))), {})
      layer[block.group(3)] = (value, template.logical_axes[name])
  for stack, depth in (("decoder", d.depth), ("vit", v.depth)):
    if depth == 0:
      continue
    first, last = layers[(stack, 0)], layers[(stack, min(depth, 2) - 1)]
    signature = lambda layer: {k: (x.shape, x.dtype, a) for k, (x, a) in layer.items()}
    if signature(first) != signature(last):
      raise NotImplementedError(f"the {stack} layers differ in their parameters; plan with "
                                "ModelTemplate.abstract of the full model instead")
    for i in range(depth):
      for rest, (value, logical) in (first if i == 0 else last).items():
        shapes[f"{stack}/blocks/{i}/{rest}"], axes[f"{stack}/blocks/{i}/{rest}"] = value, logical
  return shapes, axes


def _adapted_alike_in_every_layer(model_cfg: ModelConfig, shallow: ModelConfig) -> bool:
  """Whether config.model.lora.targets gives every layer of a stack adapters on the same kernels,
  judged on the parameter names of a shallow model without adapters."""
  _, params = ModelTemplate.abstract(dataclasses.replace(shallow, lora=LoRAConfig()))
  depths = {"decoder": model_cfg.decoder.depth, "vit": model_cfg.vit.depth}
  for name in params:
    block = _BLOCK.match(name)
    if block is not None:
      stack, _, rest = block.groups()
      if len({model_cfg.lora.adapts(f"{stack}/blocks/{i}/{rest}") for i in range(depths[stack])}) > 1:
        return False
  return True


@dataclasses.dataclass(frozen=True)
class AbstractState:
  """Shapes of the trainer's parameters and optimizer state; the same on every mesh. `trained`
  names the parameters that are not frozen (config.optimizer.freeze): only they have optimizer
  state and gradients."""
  params: dict[str, jax.ShapeDtypeStruct]
  logical_axes: dict[str, Any]
  opt_state: Any
  trained: frozenset[str]

  @classmethod
  def from_config(cls, cfg) -> "AbstractState":
    params, axes = abstract_params(ModelConfig.from_dict(cfg.model))
    tx, _ = make_optimizer(cfg, params)
    trained, _ = partition(cfg, params)
    return cls(params, axes, jax.eval_shape(tx.init, trained), frozenset(trained))

  def shardings(self, cfg, mesh) -> tuple[dict[str, NamedSharding], Any]:
    """The trainer's parameter and optimizer-state shardings on `mesh` (abstract or real)."""
    params = runtime.param_shardings(self.params, self.logical_axes, mesh, sharding.rules_of(cfg))
    return params, sharding.like_params(self.opt_state, self.params, params, mesh)


def shard_bytes(tree: Any, shardings: Any) -> int:
  """Bytes of one device's shard of every array in `tree` (all devices hold equal shards:
  `logical_to_spec` shards only dimensions that the mesh axes divide)."""
  leaves = jax.tree.leaves(tree)
  specs = jax.tree.leaves(shardings, is_leaf=lambda x: isinstance(x, NamedSharding))
  return sum(math.prod(s.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize
             for x, s in zip(leaves, specs, strict=True))


def activation_bytes(cfg, mesh, *, vit_trained: bool = True) -> dict[str, int]:
  """Per-device bytes of the activations a training step keeps (estimate).

  Notation: r rows (examples) per device in one micro-batch, T tokens, c bytes of the compute
  dtype, and per stack width D, L layers, H heads of size h, K KV heads, MLP width F; heads, MLP
  width and vocabulary V are divided by the mesh axes their rules give them ('tensor').

  - A decoder layer keeps, per token, for the backward pass (remat 'none'):
        full = c * (6D + 2(H + K)h + 4F) + H * T * (4 + c)
    norm output, q/k/v before and after RoPE, attention output and projection, residuals;
    SwiGLU gate, up, activation and product; float32 attention logits and their softmax.
    Remat 'full' keeps only the layer input (c * D), 'dots' the matmul outputs
    (c * (2D + 2(H + K)h + 2F)); the layer being differentiated needs its full set once more:
        decoder = r * T * (L * kept + full) + 2 * r * T * D * c   (input embeddings)
  - The ViT the same, over r * images * patches tokens, with K = H and a GELU MLP (2F instead
    of 4F), plus the images as floats. A ViT without a trained parameter (`vit_trained` False:
    frozen by config.optimizer.freeze) is never differentiated: it keeps only its output, and
    one layer's values while it runs.
  - The loss: 3 float32 [r, T, V] arrays (logits, their softmax, its gradient).
  """
  model_cfg = ModelConfig.from_dict(cfg.model)
  rules = dict(sharding.rules_of(cfg))
  d, v = model_cfg.decoder, model_cfg.vit
  c = jnp.dtype(model_cfg.dtype).itemsize
  rows = rows_per_device(cfg, mesh)
  seq = runtime.sequence_spec(cfg).length

  def layer(tokens, width, heads, kv_heads, head_dim, mlp, gated, remat, length):
    h = heads // _split(rules.get("heads"), heads, mesh)
    kv = kv_heads // _split(rules.get("kv_heads"), kv_heads, mesh)
    f = mlp // _split(rules.get("mlp"), mlp, mesh)
    full = c * (6 * width + 2 * (h + kv) * head_dim + (4 if gated else 2) * f) + h * length * (4 + c)
    kept = {"none": full, "full": c * width,
            "dots": c * (2 * width + 2 * (h + kv) * head_dim + (2 if gated else 1) * f)}[remat]
    return tokens * kept, tokens * full

  dec_kept, dec_full = layer(rows * seq, d.width, d.num_heads, d.num_kv_heads, d.head_dim,
                             d.mlp_dim, True, d.remat, seq)
  images = rows * pipeline.images_per_row(cfg.data)
  vit_kept, vit_full = layer(images * v.num_patches, v.width, v.num_heads, v.num_heads,
                             v.width // v.num_heads, v.mlp_dim, False, v.remat, v.num_patches)
  vocab = d.vocab_size // _split(rules.get("vocab"), d.vocab_size, mesh)
  vit_layers = v.depth * vit_kept if vit_trained else 0
  return {
      "decoder": d.depth * dec_kept + dec_full + 2 * rows * seq * d.width * c,
      "vit": vit_layers + vit_full + images * (v.num_patches * v.width + 3 * v.image_size**2) * c,
      "loss": 3 * rows * seq * vocab * 4,
  }


def gathered_bytes(cfg, state: AbstractState, param_shardings, mesh) -> int:
  """Weights that FSDP gathers whole for a moment: the two largest layers (one computing, the
  next being gathered) and the embedding, in the compute dtype, still split over the mesh axes
  that are not FSDP's ('tensor')."""
  rules = dict(sharding.rules_of(cfg))
  fsdp_axes = {a for name in ("embed", "embed_vit") for a in sharding.mesh_axes_of(rules.get(name))}
  if all(mesh.shape[a] == 1 for a in fsdp_axes):
    return 0
  c = jnp.dtype(ModelConfig.from_dict(cfg.model).dtype).itemsize

  def gathered(name):
    spec = [tuple(a for a in sharding.mesh_axes_of(entry) if a not in fsdp_axes) for entry in param_shardings[name].spec]
    shape = NamedSharding(mesh, P(*[e or None for e in spec])).shard_shape(state.params[name].shape)
    return math.prod(shape) * c

  per_layer: dict[tuple[str, str], int] = {}
  for name in state.params:
    block = _BLOCK.match(name)
    if block:
      per_layer[block.groups()[:2]] = per_layer.get(block.groups()[:2], 0) + gathered(name)
  return sum(sorted(per_layer.values(), reverse=True)[:2]) + gathered("decoder/embedding")


def data_parts(cfg, mesh_shape: tuple[int, ...], devices_per_host: int) -> int:
  """How many distinct parts of each batch the hosts read (hosts holding the same rows read the
  same part), for devices numbered host by host and laid out row-major on the mesh, as
  `sharding.make_mesh` lays out `jax.devices()`."""
  batch_axes = _batch_axes(cfg)
  ids = np.arange(math.prod(mesh_shape)).reshape(mesh_shape)
  rows_of_host: dict[int, set] = {}
  for position in np.ndindex(*mesh_shape):
    part = tuple(position[sharding.MESH_AXES.index(a)] for a in batch_axes)
    rows_of_host.setdefault(int(ids[position]) // devices_per_host, set()).add(part)
  return len({frozenset(p) for p in rows_of_host.values()})


@dataclasses.dataclass(frozen=True)
class Plan:
  """Per-device bytes of one training step of a config on a topology.

  `gradients` counts two float32 copies of the trained parameters' shards (the gradient and the
  optimizer's update; frozen parameters have neither) and a third when gradients are accumulated
  (config.train.grad_accum_steps > 1); `activations` and `gathered` are `activation_bytes` and
  `gathered_bytes`.
  """
  topology: topology_lib.Topology
  mesh: dict[str, int]
  num_params: int
  num_trained: int  # the parameters that config.optimizer.freeze leaves trained
  rows_per_device: int  # examples per device in one micro-batch
  data_parts: int  # distinct parts of each batch that the hosts read
  params: int
  opt_state: int
  gradients: int
  activations: int
  gathered: int
  problem: str = ""  # why the step cannot run on this mesh at all
  evaluation: "EvalPlan | None" = None  # the same mesh evaluating at config.eval's batch

  @property
  def total(self) -> int:
    return self.params + self.opt_state + self.gradients + self.activations + self.gathered

  @property
  def fits(self) -> bool:
    return not self.problem and self.total <= HEADROOM * self.topology.device_memory


def make_plan(cfg, topo: topology_lib.Topology, state: AbstractState | None = None) -> Plan:
  """The plan of `cfg` on `topo`; pass `state` to reuse the shapes across topologies."""
  state = state or AbstractState.from_config(cfg)
  mesh = AbstractMesh(sharding.mesh_shape(dict(cfg.mesh), topo.num_devices), sharding.MESH_AXES)
  param_shardings, opt_shardings = state.shardings(cfg, mesh)
  params = shard_bytes(state.params, param_shardings)
  trained = {k: v for k, v in state.params.items() if k in state.trained}
  copies = 2 + (cfg.train.grad_accum_steps > 1)
  return Plan(
      topology=topo, mesh=dict(zip(sharding.MESH_AXES, mesh.axis_sizes)),
      num_params=sum(math.prod(x.shape) for x in state.params.values()),
      num_trained=sum(math.prod(x.shape) for x in trained.values()),
      rows_per_device=rows_per_device(cfg, mesh),
      data_parts=data_parts(cfg, tuple(mesh.axis_sizes), topo.devices_per_host),
      params=params, opt_state=shard_bytes(state.opt_state, opt_shardings),
      gradients=copies * shard_bytes(trained, {k: param_shardings[k] for k in trained}),
      activations=sum(activation_bytes(
          cfg, mesh, vit_trained=any(k.startswith("vit/") for k in state.trained)).values()),
      gathered=gathered_bytes(cfg, state, param_shardings, mesh), problem=batch_problem(cfg, mesh),
      evaluation=make_eval_plan(cfg, topo, state))


def batch_problem(cfg, mesh) -> str:
  batch, k = cfg.train.batch_size, cfg.train.grad_accum_steps
  if batch % k:
    return f"config.train.batch_size {batch} is not divisible by grad_accum_steps {k}"
  shards = math.prod(mesh.shape[a] for a in _batch_axes(cfg))
  if (batch // k) % shards:
    return (f"a micro-batch of {batch // k} examples does not split over the {shards} devices of "
            f"the batch axes; change config.mesh (e.g. move devices to 'tensor') or the batch")
  return ""


def rows_per_device(cfg, mesh) -> int:
  micro = cfg.train.batch_size // cfg.train.grad_accum_steps
  return max(micro // math.prod(mesh.shape[a] for a in _batch_axes(cfg)), 1)


def eval_rows_per_device(cfg, mesh) -> int:
  """Examples per device in one evaluation batch (config.eval.batch_size counts the whole mesh)."""
  return max(cfg.eval.batch_size // math.prod(mesh.shape[a] for a in _batch_axes(cfg)), 1)


def eval_problem(cfg, mesh) -> str:
  shards = math.prod(mesh.shape[a] for a in _batch_axes(cfg))
  if cfg.eval.batch_size % shards:
    return (f"config.eval.batch_size {cfg.eval.batch_size} does not split over the {shards} devices "
            f"of the batch axes; use a multiple of {shards}")
  return ""


def kv_cache_bytes(cfg, mesh) -> int:
  """Per-device bytes of the decoding KV cache: every decoder layer's keys and values for the
  prompt's T positions plus config.eval.max_decode_tokens, in the compute dtype, sharded by the
  rules of `decoder.CACHE_AXES` (batch over the batch axes; KV heads over theirs, if any)."""
  from medpalm_m.model.decoder import CACHE_AXES
  model_cfg = ModelConfig.from_dict(cfg.model)
  d = model_cfg.decoder
  rules = sharding.rules_of(cfg)
  slots = runtime.sequence_spec(cfg, model_cfg).length + cfg.eval.max_decode_tokens
  shape = (cfg.eval.batch_size, slots, d.num_kv_heads, d.head_dim)
  spec = sharding.logical_to_spec(CACHE_AXES["k"], shape, mesh, rules)
  per_layer = 2 * math.prod(NamedSharding(mesh, spec).shard_shape(shape)) * jnp.dtype(model_cfg.dtype).itemsize
  local_layers = sum(d.is_local(i) for i in range(d.depth))
  positions = local_layers * math.prod(NamedSharding(mesh, sharding.logical_to_spec(
      CACHE_AXES["positions"], shape[:2], mesh, rules)).shard_shape(shape[:2])) * 4
  return d.depth * per_layer + positions


def eval_activation_bytes(cfg, mesh) -> dict[str, int]:
  """Per-device bytes of evaluation's largest transient values (estimate), forward only.

  - Prefill of r rows of T positions, one layer at a time: that layer's values
    c * r * T * (6D + 2(H + K)h + 4F) and its float32 attention scores and weights over the
    cache, 2 * 4 * r * H * T * S (S = T + new tokens), plus the residual stream, and the images
    through the ViT the same way; the logits of the last prompt position only, r * V * 4.
  - Option scoring (classification AUC): a full forward pass whose float32 logits and their
    log-softmax, 2 * 4 * r * T * V, dominate.
  Heads, MLP width and vocabulary are divided by the mesh axes their rules give them.
  """
  model_cfg = ModelConfig.from_dict(cfg.model)
  rules = dict(sharding.rules_of(cfg))
  d, v = model_cfg.decoder, model_cfg.vit
  c = jnp.dtype(model_cfg.dtype).itemsize
  rows = eval_rows_per_device(cfg, mesh)
  seq = runtime.sequence_spec(cfg, model_cfg).length
  slots = seq + cfg.eval.max_decode_tokens
  h = d.num_heads // _split(rules.get("heads"), d.num_heads, mesh)
  kv = d.num_kv_heads // _split(rules.get("kv_heads"), d.num_kv_heads, mesh)
  f = d.mlp_dim // _split(rules.get("mlp"), d.mlp_dim, mesh)
  vocab = d.vocab_size // _split(rules.get("vocab"), d.vocab_size, mesh)
  decoder_layer = rows * seq * (c * (6 * d.width + 2 * (h + kv) * d.head_dim + 4 * f)
                                + 2 * 4 * h * slots) + 2 * rows * seq * d.width * c
  images = rows * pipeline.images_per_row(cfg.data)
  vh = v.num_heads // _split(rules.get("heads"), v.num_heads, mesh)
  vit_layer = images * v.num_patches * (c * (6 * v.width + 4 * vh * (v.width // v.num_heads) + 2 * v.mlp_dim)
                                        + 2 * 4 * vh * v.num_patches)
  prefill = max(decoder_layer, vit_layer) + rows * vocab * 4
  option_scoring = 2 * 4 * rows * seq * vocab + decoder_layer
  return {"prefill": prefill, "option_scoring": option_scoring}


@dataclasses.dataclass(frozen=True)
class EvalPlan:
  """Per-device bytes of evaluation (greedy decoding and option scoring) at config.eval's batch
  and decode length: the parameters, the KV cache, the largest transient activations and the
  weights FSDP gathers, against the device's memory."""
  rows_per_device: int
  positions: int  # cache slots: the prompt's T positions plus the new tokens
  params: int
  kv_cache: int
  activations: int
  gathered: int
  device_memory: int
  problem: str = ""

  @property
  def total(self) -> int:
    return self.params + self.kv_cache + self.activations + self.gathered

  @property
  def fits(self) -> bool:
    return not self.problem and self.total <= HEADROOM * self.device_memory


def make_eval_plan(cfg, topo: topology_lib.Topology, state: AbstractState | None = None) -> EvalPlan:
  state = state or AbstractState.from_config(cfg)
  mesh = AbstractMesh(sharding.mesh_shape(dict(cfg.mesh), topo.num_devices), sharding.MESH_AXES)
  param_shardings, _ = state.shardings(cfg, mesh)
  # Parameters in the compute dtype would be smaller; evaluation keeps the training state's
  # float32 shards, which is what restoring a checkpoint gives.
  return EvalPlan(
      rows_per_device=eval_rows_per_device(cfg, mesh),
      positions=runtime.sequence_spec(cfg).length + cfg.eval.max_decode_tokens,
      params=shard_bytes(state.params, param_shardings), kv_cache=kv_cache_bytes(cfg, mesh),
      activations=max(eval_activation_bytes(cfg, mesh).values()),
      gathered=gathered_bytes(cfg, state, param_shardings, mesh),
      device_memory=topo.device_memory, problem=eval_problem(cfg, mesh))


def _batch_axes(cfg) -> tuple[str, ...]:
  return sharding.mesh_axes_of(dict(sharding.rules_of(cfg)).get("batch"))


def _split(rule_target: Any, dim: int, mesh) -> int:
  """How many ways a dimension of size `dim` with this rule is split (as `logical_to_spec`)."""
  axes = tuple(a for a in sharding.mesh_axes_of(rule_target) if mesh.shape[a] > 1)
  size = math.prod(mesh.shape[a] for a in axes)
  return size if axes and dim % size == 0 else 1


def compiled_step(trainer) -> jax.stages.Compiled:
  """The trainer's training step compiled for its config's batch on its real mesh, from shapes
  alone: what XLA's memory and cost analyses read."""
  cfg = trainer.cfg
  spec = trainer.runtime.spec
  packing = pipeline.Packing.from_config(cfg.data)
  batch = {name: jax.ShapeDtypeStruct((cfg.train.batch_size, *shape), dtype,
                                      sharding=trainer.batch_sharding)
           for name, (shape, dtype) in pipeline.row_features(spec, packing).items()}
  return trainer.train_step.lower(trainer.abstract_state, batch).compile()


def xla_memory(trainer) -> dict[str, int]:
  """XLA's memory analysis of the trainer's compiled step on its real mesh, per device. `temp`
  is what the step allocates besides its arguments: what a `Plan` counts as gradients,
  activations and gathered weights."""
  analysis = compiled_step(trainer).memory_analysis()
  return {"temp": analysis.temp_size_in_bytes, "arguments": analysis.argument_size_in_bytes}


def _gib(n: int) -> str:
  return f"{n / 2**30:.2f}"


def _count(n: int) -> str:
  return f"{n / 1e9:.3f}B" if n >= 1e8 else f"{n / 1e6:.2f}M"


def format_plans(cfg, plans: list[Plan], config_name: str = "config") -> str:
  model_cfg = ModelConfig.from_dict(cfg.model)
  counts = model_cfg.num_params()
  k = cfg.train.grad_accum_steps
  lines = [
      f"{config_name}: {_count(plans[0].num_params)} parameters (decoder {_count(counts['decoder'])}, "
      f"ViT {_count(counts['vit'])}, {model_cfg.adapter} adapter {_count(counts['projector'])})"
      + (f"; {_count(plans[0].num_trained)} trained ({_trained_by(cfg, model_cfg)})"
         if plans[0].num_trained < plans[0].num_params else ""),
      f"batch {cfg.train.batch_size} = {k} x {cfg.train.batch_size // k} (accumulation x "
      f"micro-batch) of {runtime.sequence_spec(cfg).length} tokens with {pipeline.images_per_row(cfg.data)} "
      f"image(s) of {model_cfg.num_image_tokens} tokens; remat decoder={model_cfg.decoder.remat} "
      f"vit={model_cfg.vit.remat}; compute {model_cfg.dtype}; {cfg.optimizer.name}",
      f"GiB per device (rows: examples per device per micro-batch; parts: distinct parts of a "
      f"batch the hosts read); fits: total <= {HEADROOM:.0%} of memory",
      "",
  ]
  table = [("topology", "devices", "hosts", "mesh d,f,t", "rows", "parts", "params", "opt",
            "grads", "activ", "gather", "total", "memory", "fits")]
  for p in plans:
    table.append((p.topology.name, str(p.topology.num_devices), str(p.topology.num_hosts),
                  "x".join(str(p.mesh[a]) for a in sharding.MESH_AXES), str(p.rows_per_device),
                  str(p.data_parts), _gib(p.params), _gib(p.opt_state), _gib(p.gradients),
                  _gib(p.activations), _gib(p.gathered), _gib(p.total),
                  _gib(p.topology.device_memory), "yes" if p.fits else "NO"))
  widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
  lines += ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in table]
  lines += [f"{p.topology.name}: {p.problem}" for p in plans if p.problem]
  evals = [(p.topology, p.evaluation) for p in plans if p.evaluation is not None]
  if evals:
    lines += ["", f"evaluation: batch {cfg.eval.batch_size} over the mesh, "
                  f"{evals[0][1].positions} cache positions ({runtime.sequence_spec(cfg).length} "
                  f"prompt and target + {cfg.eval.max_decode_tokens} new tokens); GiB per device"]
    table = [("topology", "rows", "params", "kv cache", "activ", "gather", "total", "memory", "fits")]
    for topo, e in evals:
      table.append((topo.name, str(e.rows_per_device), _gib(e.params), _gib(e.kv_cache),
                    _gib(e.activations), _gib(e.gathered), _gib(e.total), _gib(e.device_memory),
                    "yes" if e.fits else "NO"))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines += ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
              for row in table]
    lines += [f"{topo.name}: {e.problem}" for topo, e in evals if e.problem]
  return "\n".join(lines)


def _trained_by(cfg, model_cfg: ModelConfig) -> str:
  """What chooses the trained parameters, in words: a LoRA run's adapters or the freeze regex."""
  if model_cfg.lora.rank and cfg.optimizer.freeze == BASE_WEIGHTS:
    return (f"LoRA adapters of rank {model_cfg.lora.rank} only, targets {model_cfg.lora.targets!r}"
            f"{' with the ViT' if model_cfg.lora.vit else ' in the decoder'}")
  return f"config.optimizer.freeze={cfg.optimizer.freeze!r}"


def compare_with_xla(cfg, trainer) -> str:
  """The estimate beside XLA's analysis of `trainer`'s real compiled step on this machine's
  devices (the trainer of `cfg`, built by the caller: planning itself never builds one)."""
  local = topology_lib.Topology("local", jax.devices()[0].platform, jax.device_count(),
                                jax.process_count(), 0)
  plan = make_plan(cfg, local)
  estimate = plan.gradients + plan.activations + plan.gathered
  xla = xla_memory(trainer)
  return (f"XLA on {jax.device_count()} local {local.accelerator} device(s), per device: "
          f"{xla['temp'] / 2**20:.1f} MiB besides the state and batch; estimate "
          f"{estimate / 2**20:.1f} MiB (gradients, activations, gathered): {estimate / xla['temp']:.2f}x")

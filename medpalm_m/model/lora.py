"""LoRA by config: which kernels carry low-rank adapters, attaching them, and merging them away.

config.model.lora = dict(rank=16, alpha=16.0, targets="attn/", vit=False) puts a `layers.LoRA`
beside every decoder kernel whose parameter path ('decoder/blocks/3/attn/query') the `targets`
regex matches, and beside the ViT's too when `vit` is set. Only the projections of the blocks can
be adapted: attention query, key, value, out and the MLP's gate, up, down (decoder); qkv, out,
mlp_in, mlp_out (ViT). The adapters' parameters sit under the kernel's module as
'.../attn/lora/query/a' and '.../b'. A LoRA run trains them alone: its config sets
config.optimizer.freeze to `BASE_WEIGHTS`, every other parameter, so that the base weights get
no gradient and no optimizer state (the trainer's one freezing mechanism).

`merge_adapters` folds W + (alpha / rank) A B into each adapted kernel and drops the adapters, so
that `convert export` writes a checkpoint transformers loads without knowing about LoRA.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Mapping

import numpy as np
from flax import nnx

from medpalm_m.model.layers import Adaptable, LoRA

# Every adapter parameter and nothing else: '<kernel's module>/lora/<kernel>/a' or '/b'.
ADAPTERS = r"/lora/\w+/[ab]$"
# Every parameter but the adapters (config.optimizer.freeze of a LoRA run).
BASE_WEIGHTS = rf"^(?!.*{ADAPTERS})"
_ADAPTER = re.compile(r"^(.*)/lora/(\w+)/a$")


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
  rank: int = 0  # 0: no adapters
  alpha: float = 16.0  # the update is scaled by alpha / rank
  # Searched in each adaptable kernel's path ('decoder/blocks/0/mlp/gate', 'vit/blocks/0/qkv');
  # the default adapts every one ("all-linear" in Hugging Face PEFT's words).
  targets: str = "."
  vit: bool = False  # adapt the ViT's kernels too (by default only the decoder's)

  def __post_init__(self):
    if self.rank < 0:
      raise ValueError(f"model.lora.rank must be >= 0 (0: off), got {self.rank}")
    if self.rank and self.alpha <= 0:
      raise ValueError(f"model.lora.alpha must be > 0, got {self.alpha}")
    try:
      re.compile(self.targets)
    except re.error as e:
      raise ValueError(f"model.lora.targets={self.targets!r} is not a regex: {e}") from e

  def adapts(self, kernel_path: str) -> bool:
    """Whether an adaptable kernel at this path ('decoder/blocks/0/attn/query') gets an adapter."""
    towers = ("decoder/", "vit/") if self.vit else ("decoder/",)
    return bool(self.rank) and kernel_path.startswith(towers) and re.search(self.targets, kernel_path) is not None


def attach_adapters(model: nnx.Module, cfg: LoRAConfig, rngs: nnx.Rngs) -> int:
  """Give every adaptable kernel of `model` that `cfg` selects its adapter; returns how many.

  Called at the end of the model's constructor: the base parameters have drawn their random
  values already, so a model with adapters has the same base weights as one without.
  """
  if not cfg.rank:
    return 0
  adaptable = [(path, node) for path, node in nnx.iter_graph(model) if isinstance(node, Adaptable)]
  count = 0
  for path, node in adaptable:
    prefix = "/".join(str(p) for p in path)
    chosen = {name: LoRA(getattr(node, name), inputs, cfg.rank, cfg.alpha, rngs=rngs)
              for name, inputs in node.LORA_KERNELS.items() if cfg.adapts(f"{prefix}/{name}")}
    if chosen:
      node.lora = nnx.Dict(chosen)
      count += len(chosen)
  if not count:
    examples = [f"{'/'.join(map(str, path))}/{name}" for path, node in adaptable[:3]
                for name in node.LORA_KERNELS]
    raise ValueError(f"config.model.lora.targets={cfg.targets!r} matches no adaptable kernel "
                     f"of the {'decoder or ViT' if cfg.vit else 'decoder (model.lora.vit is off)'}; "
                     f"kernel paths look like {', '.join(examples[:6])}")
  return count


def is_adapter(name: str) -> bool:
  """Whether a parameter path is an adapter's A or B."""
  return re.search(ADAPTERS, name) is not None


def merge_adapters(params: Mapping[str, np.ndarray], cfg: LoRAConfig) -> dict[str, np.ndarray]:
  """The parameters with each adapted kernel W replaced by W + (alpha / rank) A B and the
  adapters dropped: the same function as the model with adapters, as one without them."""
  merged = {name: value for name, value in params.items() if not is_adapter(name)}
  for name in params:
    adapter = _ADAPTER.match(name)
    if adapter is None:
      continue
    module, kernel = adapter.groups()
    a = np.asarray(params[name], np.float64)
    b = np.asarray(params[f"{module}/lora/{kernel}/b"], np.float64)
    w = np.asarray(params[f"{module}/{kernel}"])
    update = (cfg.alpha / cfg.rank) * np.tensordot(a, b, axes=1)
    merged[f"{module}/{kernel}"] = (w.astype(np.float64) + update).astype(w.dtype)
  return merged

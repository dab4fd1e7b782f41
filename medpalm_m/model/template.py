"""The model as plain pytrees: a flat `{path: array}` dict of parameters plus a static template.

The trainer, the checkpoints and the sharding code work on the flat dict (readable paths such as
'decoder/blocks/0/attn/query', stable across processes and orbax versions); `bind` rebuilds the
NNX module from it inside a jitted function.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from flax import nnx

from medpalm_m.model import layers
from medpalm_m.model.medpalm import MedPaLMM, ModelConfig


def _path_str(path: tuple) -> str:
  return "/".join(str(p) for p in path)


def abstract_model(cfg: ModelConfig) -> MedPaLMM:
  """The module with a jax.ShapeDtypeStruct for every parameter; seconds even at 562B."""
  with layers.shapes_only():
    return nnx.eval_shape(lambda: MedPaLMM(cfg, rngs=nnx.Rngs(params=0, dropout=1)))


@dataclasses.dataclass(frozen=True, eq=False)
class ModelTemplate:
  cfg: ModelConfig
  graphdef: Any
  rest: Any  # non-parameter state (dropout RNG streams)
  paths: tuple[tuple, ...]
  logical_axes: dict[str, tuple | None]

  @classmethod
  def create(cls, cfg: ModelConfig, seed: int = 0) -> tuple["ModelTemplate", dict[str, jax.Array]]:
    model = MedPaLMM(cfg, rngs=nnx.Rngs(params=seed, dropout=seed + 1))
    return cls._from_model(cfg, model)

  @classmethod
  def abstract(cls, cfg: ModelConfig) -> tuple["ModelTemplate", dict[str, jax.ShapeDtypeStruct]]:
    """Shapes only: nothing is allocated, so this works for the 562B config on a laptop."""
    return cls._from_model(cfg, abstract_model(cfg))

  @classmethod
  def _from_model(cls, cfg, model):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    flat = list(nnx.to_flat_state(params))
    logical = {_path_str(p): v.get_metadata().get("out_sharding") for p, v in flat}
    template = cls(cfg, graphdef, rest, tuple(p for p, _ in flat), logical)
    return template, {_path_str(p): v.value for p, v in flat}

  def bind(self, params: dict[str, jax.Array], *, dropout_key: jax.Array | None = None) -> MedPaLMM:
    """The module with these parameter values; in eval mode unless a dropout key is given."""
    state = nnx.from_flat_state([(p, nnx.Param(params[_path_str(p)])) for p in self.paths])
    model = nnx.merge(self.graphdef, state, self.rest, copy=True)
    if dropout_key is None:
      model.eval()
    else:
      model.train()
      nnx.reseed(model, dropout=dropout_key)
    return model

"""The PaLM decoder, with config fields that also reach the Gemma family.

PaLM: parallel block `x + attn(norm(x)) + mlp(norm(x))`, SwiGLU, multi-query attention, RoPE,
no biases, LayerNorm without bias, input/output embedding shared.
Gemma: sequential block with pre/post norms, RMSNorm, GeGLU, embeddings scaled by sqrt(width),
optional attention and final-logit soft-capping; Gemma 2/3 add local (sliding-window) layers
between global ones, Gemma 3 query/key norms and a separate RoPE wavelength for local layers.
One model, chosen by fields, so that open checkpoints (PaliGemma, MedGemma) import into the same
code (`medpalm_m.convert`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from medpalm_m.model.attention import Attention
from medpalm_m.model.layers import GatedMLP, einsum, make_norm, matmul_operands, param


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  vocab_size: int
  width: int
  depth: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  mlp_dim: int
  block: Literal["parallel", "sequential"] = "parallel"
  norm: Literal["layernorm", "rmsnorm"] = "layernorm"
  mlp_activation: Literal["swiglu", "geglu"] = "swiglu"
  # Gemma multiplies input embeddings by sqrt(width) and leaves output logits alone; PaLM/T5X
  # leave inputs alone and divide the shared-embedding logits by sqrt(width) instead.
  scale_embeddings: bool = False
  post_norms: bool = False  # Gemma 2/3 norm the sublayer outputs too (sequential block only)
  attn_logit_softcap: float | None = None
  final_logit_softcap: float | None = None
  rope_max_wavelength: float = 10_000.0
  dropout: float = 0.0
  remat: Literal["none", "full", "dots"] = "none"
  norm_eps: float = 1e-6
  qk_norm: bool = False  # Gemma 3: RMSNorm on each query and key head before RoPE
  query_pre_attn_scalar: float | None = None  # attention logits times this**-0.5; None: head_dim
  # Layer i is global or local by attention_pattern[i % len(attention_pattern)]: Gemma 2 is
  # ("local", "global"), Gemma 3 five local layers then one global. Local layers attend within
  # sliding_window positions and use local_rope_max_wavelength (None: rope_max_wavelength).
  attention_pattern: tuple[Literal["global", "local"], ...] = ("global",)
  sliding_window: int | None = None
  # How a local layer's window meets a bidirectional block (tokens that see each other both ways:
  # one image in Gemma 3, the image + prompt prefix in PaliGemma), as transformers has each family:
  # False (Gemma 3) cuts every key sliding_window or more positions before the query, inside a
  # block too (a block's later tokens stay visible at any distance); True (PaliGemma 2) leaves a
  # block whole however long it is, and cuts only the causal rest.
  sliding_window_spares_blocks: bool = False
  local_rope_max_wavelength: float | None = None
  rope_scale_factor: float = 1.0  # linear RoPE scaling of the global layers (Gemma 3 4B+: 8)

  def __post_init__(self):
    object.__setattr__(self, "attention_pattern", tuple(self.attention_pattern))  # lists from JSON
    unknown = set(self.attention_pattern) - {"global", "local"}
    if unknown or not self.attention_pattern:
      raise ValueError(f"model.decoder.attention_pattern must be a non-empty sequence of 'global' "
                       f"and 'local', got {list(self.attention_pattern)}")
    if "local" in self.attention_pattern and not self.sliding_window:
      raise ValueError("model.decoder.attention_pattern has local layers: set model.decoder.sliding_window")

  def is_local(self, layer: int) -> bool:
    return self.attention_pattern[layer % len(self.attention_pattern)] == "local"

  def num_params(self) -> int:
    attn = self.width * self.head_dim * (2 * self.num_heads + 2 * self.num_kv_heads)
    attn += 2 * self.head_dim if self.qk_norm else 0
    mlp = 3 * self.width * self.mlp_dim
    norms = (2 if self.block == "sequential" else 1) * self.width * (2 if self.post_norms else 1)
    return self.depth * (attn + mlp + norms) + self.vocab_size * self.width + self.width


# Logical axes of a KV-cache entry (`Decoder.init_cache`), mapped to mesh axes by the config's
# rules like the parameters': evaluation shards the cache over the batch axes.
CACHE_AXES = {"k": ("batch", "cache_length", "kv_heads", "head_dim"),
              "v": ("batch", "cache_length", "kv_heads", "head_dim"),
              "positions": ("batch", "cache_length")}


class DecoderBlock(nnx.Module):

  def __init__(self, cfg: DecoderConfig, *, rngs: nnx.Rngs, local: bool = False,
               attention_impl: str = "xla"):
    self.parallel = cfg.block == "parallel"
    if cfg.block not in ("parallel", "sequential"):
      raise ValueError(f"model.decoder.block must be 'parallel' or 'sequential', got {cfg.block!r}")
    norm = lambda: make_norm(cfg.norm, cfg.width, rngs, cfg.norm_eps)
    wavelength = cfg.rope_max_wavelength
    if local and cfg.local_rope_max_wavelength is not None:
      wavelength = cfg.local_rope_max_wavelength
    self.attn_norm = norm()
    self.attn = Attention(cfg.width, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                          rope_max_wavelength=wavelength,
                          rope_scale_factor=1.0 if local else cfg.rope_scale_factor,
                          logit_softcap=cfg.attn_logit_softcap,
                          query_pre_attn_scalar=cfg.query_pre_attn_scalar, qk_norm=cfg.qk_norm,
                          norm_eps=cfg.norm_eps, sliding_window=cfg.sliding_window if local else None,
                          window_spares_blocks=cfg.sliding_window_spares_blocks,
                          impl=attention_impl, rngs=rngs)
    self.mlp = GatedMLP(cfg.width, cfg.mlp_dim, cfg.mlp_activation, rngs=rngs)
    self.mlp_norm = None if self.parallel else norm()
    self.post_attn_norm = norm() if cfg.post_norms else None
    self.post_mlp_norm = norm() if cfg.post_norms else None
    self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)

  def __call__(self, x, positions, mask, cache=None, cache_index=None):
    if self.parallel:
      h = self.attn_norm(x)
      attn_out, cache = self.attn(h, positions, mask, cache, cache_index)
      return x + self.dropout(attn_out) + self.dropout(self.mlp(h)), cache
    attn_out, cache = self.attn(self.attn_norm(x), positions, mask, cache, cache_index)
    if self.post_attn_norm is not None:
      attn_out = self.post_attn_norm(attn_out)
    x = x + self.dropout(attn_out)
    mlp_out = self.mlp(self.mlp_norm(x))
    if self.post_mlp_norm is not None:
      mlp_out = self.post_mlp_norm(mlp_out)
    return x + self.dropout(mlp_out), cache


_REMAT_POLICIES = {
    "full": None,  # save nothing, recompute the whole block in the backward pass
    "dots": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


class Decoder(nnx.Module):

  def __init__(self, cfg: DecoderConfig, *, rngs: nnx.Rngs, attention_impl: str = "xla",
               matmul_operand_dtype: str = "float32"):
    """`attention_impl`: config.model.attention_impl, see `attention_impl.attend`;
    `matmul_operand_dtype`: the resolved config.model.matmul_operand_dtype (`layers.matmul_operands`)."""
    self.cfg = cfg
    self.matmul_operand_dtype = matmul_operand_dtype
    # Unit-variance embeddings: with PaLM's output scaling by 1/sqrt(width) the initial logits
    # stay O(1); Gemma's input scaling by sqrt(width) expects small embeddings instead.
    stddev = 1.0 / math.sqrt(cfg.width) if cfg.scale_embeddings else 1.0
    self.embedding = param(rngs, (cfg.vocab_size, cfg.width), ("vocab", "embed"), stddev=stddev)
    self.blocks = nnx.List([DecoderBlock(cfg, rngs=rngs, local=cfg.is_local(i),
                                           attention_impl=attention_impl) for i in range(cfg.depth)])
    self.final_norm = make_norm(cfg.norm, cfg.width, rngs, cfg.norm_eps)

  def embed(self, tokens: jax.Array, dtype) -> jax.Array:
    x = jnp.take(self.embedding.value, tokens, axis=0).astype(dtype)
    if self.cfg.scale_embeddings:
      x = x * jnp.asarray(math.sqrt(self.cfg.width), dtype)
    return x

  def __call__(self, x: jax.Array, positions: jax.Array, mask: jax.Array,
               cache: list | None = None, cache_index: jax.Array | None = None,
               logits_at: jax.Array | None = None):
    """Embedded inputs x [B, T, D] -> (logits [B, T, vocab] in float32, updated cache).

    With `logits_at` only the logits at those positions are computed: [B] (one per example:
    [B, 1, vocab]) or [B, K] ([B, K, vocab]). A prefill needs just the last prompt token's, and
    training only the positions that predict a target token; projecting every position onto the
    vocabulary would be most of the work at a large vocabulary.
    """
    x, new_cache = self.hidden_states(x, positions, mask, cache, cache_index)
    return self.logits(x, logits_at), new_cache

  def hidden_states(self, x: jax.Array, positions: jax.Array, mask: jax.Array,
                    cache: list | None = None, cache_index: jax.Array | None = None):
    """The last block's output [B, T, D] (before the final norm), and the updated cache."""
    with matmul_operands(self.matmul_operand_dtype):
      return self._blocks(x, positions, mask, cache, cache_index)

  def _blocks(self, x, positions, mask, cache, cache_index):
    new_cache = []
    for i, block in enumerate(self.blocks):
      layer_cache = None if cache is None else cache[i]
      if self.cfg.remat != "none" and cache is None:
        x, _ = nnx.remat(lambda blk, *a: blk(*a), policy=_REMAT_POLICIES[self.cfg.remat])(
            block, x, positions, mask)
      else:
        x, layer_cache = block(x, positions, mask, layer_cache, cache_index)
      new_cache.append(layer_cache)
    return x, (new_cache if cache is not None else None)

  def logits(self, x: jax.Array, at: jax.Array | None = None) -> jax.Array:
    """Hidden states [B, T, D] -> float32 logits [B, T, vocab], or only at positions `at` ([B] or
    [B, K], as `logits_at` of __call__)."""
    with matmul_operands(self.matmul_operand_dtype):
      if at is not None:
        at = at[:, None] if at.ndim == 1 else at
        x = jnp.take_along_axis(x, at[:, :, None], axis=1)
      x = self.final_norm(x)
      logits = einsum("btd,vd->btv", x, self.embedding.value.astype(x.dtype)).astype(jnp.float32)
    if not self.cfg.scale_embeddings:
      logits = logits / math.sqrt(self.cfg.width)
    if self.cfg.final_logit_softcap is not None:
      cap = self.cfg.final_logit_softcap
      logits = jnp.tanh(logits / cap) * cap
    return logits

  def init_cache(self, batch: int, length: int, dtype=jnp.float32) -> list[dict]:
    """One {'k', 'v'[, 'positions']} per layer; CACHE_AXES names their axes for sharding."""
    shape = (batch, length, self.cfg.num_kv_heads, self.cfg.head_dim)
    cache = []
    for i in range(self.cfg.depth):
      layer = {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}
      if self.cfg.is_local(i):
        layer["positions"] = jnp.zeros((batch, length), jnp.int32)
      cache.append(layer)
    return cache

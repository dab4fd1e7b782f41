"""Multi-query / grouped-query / multi-head self-attention with RoPE and an optional KV cache.

PaLM uses one shared key/value head (multi-query); `num_kv_heads` between 1 and `num_heads`
gives GQA and MHA with the same code, which is what imported open checkpoints need.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from medpalm_m.model import attention_impl
from medpalm_m.model.layers import Adaptable, RMSNorm, param


def apply_rope(x: jax.Array, positions: jax.Array, max_wavelength: float,
               scale_factor: float = 1.0) -> jax.Array:
  """Rotary embedding on the last axis of x [B, T, heads, head_dim] at integer positions [B, T].

  The split-halves layout (as in PaLM/T5X and Gemma), not interleaved pairs. `scale_factor` > 1
  is linear RoPE scaling (positions divided by it), as Gemma 3's global layers use.
  """
  head_dim = x.shape[-1]
  fraction = 2 * jnp.arange(head_dim // 2, dtype=jnp.float32) / head_dim
  timescale = max_wavelength**fraction
  if scale_factor != 1.0:
    timescale = timescale * scale_factor
  angles = positions[..., None, None].astype(jnp.float32) / timescale  # [B, T, 1, head_dim/2]
  sin, cos = jnp.sin(angles), jnp.cos(angles)
  first, second = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  rotated = jnp.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)
  return rotated.astype(x.dtype)


class Attention(Adaptable):

  LORA_KERNELS = {"query": 1, "key": 1, "value": 1, "out": 2}

  def __init__(self, width: int, num_heads: int, num_kv_heads: int, head_dim: int, *,
               rope_max_wavelength: float, logit_softcap: float | None, rngs: nnx.Rngs,
               rope_scale_factor: float = 1.0, query_pre_attn_scalar: float | None = None,
               qk_norm: bool = False, norm_eps: float = 1e-6, sliding_window: int | None = None,
               window_spares_blocks: bool = False, impl: str = "xla"):
    """Gemma fields: `query_pre_attn_scalar` replaces head_dim in the 1/sqrt logit scaling (Gemma 2
    27B and Gemma 3 set it); `qk_norm` RMS-normalises each query and key head before RoPE (Gemma
    3); `sliding_window` makes a local layer (Gemma 2/3, `local_mask`), `window_spares_blocks`
    exempts bidirectional blocks from its window (PaliGemma 2). `impl` is
    config.model.attention_impl (`attention_impl.attend`)."""
    if num_heads % num_kv_heads:
      raise ValueError(f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads})")
    self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
    self.rope_max_wavelength = rope_max_wavelength
    self.rope_scale_factor = rope_scale_factor
    self.logit_softcap = logit_softcap
    self.logit_scale = (query_pre_attn_scalar if query_pre_attn_scalar is not None else head_dim) ** -0.5
    self.sliding_window = sliding_window
    self.window_spares_blocks = window_spares_blocks
    self.impl = impl
    self.query_norm = RMSNorm(head_dim, rngs=rngs, eps=norm_eps, axis="head_dim") if qk_norm else None
    self.key_norm = RMSNorm(head_dim, rngs=rngs, eps=norm_eps, axis="head_dim") if qk_norm else None
    self.query = param(rngs, (width, num_heads, head_dim), ("embed", "heads", "head_dim"))
    self.key = param(rngs, (width, num_kv_heads, head_dim), ("embed", "kv_heads", "head_dim"))
    self.value = param(rngs, (width, num_kv_heads, head_dim), ("embed", "kv_heads", "head_dim"))
    self.out = param(rngs, (num_heads, head_dim, width), ("heads", "head_dim", "embed"),
                     fan_in=num_heads * head_dim)
    # Off: training and decoding never store the [T, S] probabilities. Inspection turns it on
    # (`model.set_attributes(capture_attention=True)`) inside `nnx.capture(..., nnx.Intermediate)`.
    self.capture_attention = False
    # Off: Pallas kernels compile for their accelerator. Tests of 'splash' on a CPU turn it on
    # (`model.set_attributes(interpret_kernels=True)`).
    self.interpret_kernels = False

  def __call__(self, x: jax.Array, positions: jax.Array, mask: jax.Array,
               cache: dict | None = None, cache_index: jax.Array | None = None):
    """x [B, T, D]; positions [B, T]; mask [B, T, S] (True = may attend).

    Without a cache S == T. With a cache {'k','v': [B, S, kv_heads, head_dim]} the new keys and
    values are written at `cache_index` (same slot for the whole batch, so shapes stay static
    while each example keeps its own RoPE positions) and the queries attend over all S slots.
    A local layer's cache also holds each slot's position ('positions' [B, S]) for its window.
    Returns (output [B, T, D], updated cache or None).
    """
    dtype = x.dtype
    q = self.project("query", "btd,dnh->btnh", x)
    k = self.project("key", "btd,dkh->btkh", x)
    v = self.project("value", "btd,dkh->btkh", x)
    if self.query_norm is not None:
      q, k = self.query_norm(q), self.key_norm(k)
    q = apply_rope(q, positions, self.rope_max_wavelength, self.rope_scale_factor)
    k = apply_rope(k, positions, self.rope_max_wavelength, self.rope_scale_factor)

    key_positions = positions
    if cache is not None:
      k = jax.lax.dynamic_update_slice_in_dim(cache["k"], k.astype(cache["k"].dtype), cache_index, axis=1)
      v = jax.lax.dynamic_update_slice_in_dim(cache["v"], v.astype(cache["v"].dtype), cache_index, axis=1)
      new_cache = {"k": k, "v": v}
      if self.sliding_window is not None:
        key_positions = jax.lax.dynamic_update_slice_in_dim(
            cache["positions"], positions.astype(cache["positions"].dtype), cache_index, axis=1)
        new_cache["positions"] = key_positions
      cache = new_cache
      k, v = k.astype(dtype), v.astype(dtype)
    if self.sliding_window is not None:
      mask = local_mask(mask, positions, key_positions, self.sliding_window,
                        spares_blocks=self.window_spares_blocks,
                        first_slot=0 if cache is None else cache_index)

    scores = dict(logit_scale=self.logit_scale, softcap=self.logit_softcap)
    if self.capture_attention:  # the weights exist only in the reference implementation
      weights = attention_impl.attention_weights(q, k, mask, **scores)
      self.sow(nnx.Intermediate, "attention_weights", weights)  # [B, kv_heads, groups, T, S]
      attended = attention_impl.weighted_values(weights, v)
    else:
      attended = attention_impl.attend(q, k, v, mask, impl=self.impl, interpret=self.interpret_kernels,
                                       **scores)
    return self.project("out", "btnh,nhd->btd", attended), cache


def local_mask(mask: jax.Array, positions: jax.Array, key_positions: jax.Array, window: int, *,
               spares_blocks: bool, first_slot: jax.Array | int = 0) -> jax.Array:
  """A local layer's mask [B, T, S]: `mask` cut to the sliding window, as transformers cuts it.

  A key `window` or more positions before its query is cut; keys after the query are never cut
  (only a bidirectional block makes them visible at all), so a Gemma 3 image token sees the rest
  of its image at any distance and its start only within the window. With `spares_blocks`
  (PaliGemma 2), tokens of one block (mutually visible in `mask`: the image + prompt prefix) see
  each other at any distance. The queries are the keys in slots [first_slot, first_slot + T):
  the whole sequence in a forward pass, the prompt in a prefill; blocks exist only among them.
  (big_vision and the gemma library cut symmetrically, |distance| < window, blocks included;
  the two agree wherever no block is longer than the window.)
  """
  within = positions[:, :, None] - key_positions[:, None, :] < window
  if spares_blocks:
    within = jnp.logical_or(within, mutually_visible(mask, first_slot))
  return jnp.logical_and(mask, within)


def mutually_visible(mask: jax.Array, first_slot: jax.Array | int = 0) -> jax.Array:
  """[B, T, S]: query i and key j see each other both ways, i.e. lie in one bidirectional block,
  for the T queries that are the keys in slots [first_slot, first_slot + T)."""
  length = mask.shape[1]
  own = jax.lax.dynamic_slice_in_dim(mask, first_slot, length, axis=2)  # [B, T, T]
  both = jnp.logical_and(own, own.swapaxes(1, 2))
  return jax.lax.dynamic_update_slice_in_dim(jnp.zeros_like(mask), both, first_slot, axis=2)


def attention_mask(input_mask: jax.Array, mask_ar: jax.Array) -> jax.Array:
  """big_vision's prefix-LM mask from the input mask [B, T] and the autoregressive mask [B, T].

  mask_ar is 0 for tokens that attend bidirectionally within the prefix and 1 for causal tokens:
  token i sees token j when j is not padding and cumsum(mask_ar)[j] <= cumsum(mask_ar)[i].
  All-ones mask_ar is a plain causal mask.
  """
  cumsum = jnp.cumsum(mask_ar, axis=1)
  visible = cumsum[:, None, :] <= cumsum[:, :, None]
  return jnp.logical_and(visible, input_mask[:, None, :].astype(bool))

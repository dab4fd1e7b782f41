"""Multi-query / grouped-query / multi-head self-attention with RoPE and an optional KV cache.

PaLM uses one shared key/value head (multi-query); `num_kv_heads` between 1 and `num_heads`
gives GQA and MHA with the same code, which is what imported open checkpoints need.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from medpalm_m.model.layers import param

# Large negative instead of -inf: a fully masked row (padding queries) must give finite values,
# not NaN, or the NaN leaks into gradients through the masked loss.
_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)


def apply_rope(x: jax.Array, positions: jax.Array, max_wavelength: float) -> jax.Array:
  """Rotary embedding on the last axis of x [B, T, heads, head_dim] at integer positions [B, T].

  The split-halves layout (as in PaLM/T5X and Gemma), not interleaved pairs.
  """
  head_dim = x.shape[-1]
  fraction = 2 * jnp.arange(head_dim // 2, dtype=jnp.float32) / head_dim
  timescale = max_wavelength**fraction
  angles = positions[..., None, None].astype(jnp.float32) / timescale  # [B, T, 1, head_dim/2]
  sin, cos = jnp.sin(angles), jnp.cos(angles)
  first, second = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  rotated = jnp.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)
  return rotated.astype(x.dtype)


class Attention(nnx.Module):

  def __init__(self, width: int, num_heads: int, num_kv_heads: int, head_dim: int, *,
               rope_max_wavelength: float, logit_softcap: float | None, rngs: nnx.Rngs):
    if num_heads % num_kv_heads:
      raise ValueError(f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads})")
    self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
    self.rope_max_wavelength = rope_max_wavelength
    self.logit_softcap = logit_softcap
    self.query = param(rngs, (width, num_heads, head_dim), ("embed", "heads", "head_dim"))
    self.key = param(rngs, (width, num_kv_heads, head_dim), ("embed", "kv_heads", "head_dim"))
    self.value = param(rngs, (width, num_kv_heads, head_dim), ("embed", "kv_heads", "head_dim"))
    self.out = param(rngs, (num_heads, head_dim, width), ("heads", "head_dim", "embed"),
                     fan_in=num_heads * head_dim)

  def __call__(self, x: jax.Array, positions: jax.Array, mask: jax.Array,
               cache: dict | None = None, cache_index: jax.Array | None = None):
    """x [B, T, D]; positions [B, T]; mask [B, T, S] (True = may attend).

    Without a cache S == T. With a cache {'k','v': [B, S, kv_heads, head_dim]} the new keys and
    values are written at `cache_index` (same slot for the whole batch, so shapes stay static
    while each example keeps its own RoPE positions) and the queries attend over all S slots.
    Returns (output [B, T, D], updated cache or None).
    """
    dtype = x.dtype
    q = jnp.einsum("btd,dnh->btnh", x, self.query.value.astype(dtype))
    k = jnp.einsum("btd,dkh->btkh", x, self.key.value.astype(dtype))
    v = jnp.einsum("btd,dkh->btkh", x, self.value.value.astype(dtype))
    q = apply_rope(q, positions, self.rope_max_wavelength)
    k = apply_rope(k, positions, self.rope_max_wavelength)

    if cache is not None:
      k = jax.lax.dynamic_update_slice_in_dim(cache["k"], k.astype(cache["k"].dtype), cache_index, axis=1)
      v = jax.lax.dynamic_update_slice_in_dim(cache["v"], v.astype(cache["v"].dtype), cache_index, axis=1)
      cache = {"k": k, "v": v}
      k, v = k.astype(dtype), v.astype(dtype)

    batch, length = q.shape[:2]
    groups = self.num_heads // self.num_kv_heads
    q = q.reshape(batch, length, self.num_kv_heads, groups, self.head_dim)
    logits = jnp.einsum("btkgh,bskh->bkgts", q, k).astype(jnp.float32) * self.head_dim**-0.5
    if self.logit_softcap is not None:
      logits = jnp.tanh(logits / self.logit_softcap) * self.logit_softcap
    logits = jnp.where(mask[:, None, None, :, :], logits, _MASK_VALUE)
    weights = jax.nn.softmax(logits, axis=-1).astype(dtype)
    attended = jnp.einsum("bkgts,bskh->btkgh", weights, v)
    attended = attended.reshape(batch, length, self.num_heads, self.head_dim)
    return jnp.einsum("btnh,nhd->btd", attended, self.out.value.astype(dtype)), cache


def attention_mask(input_mask: jax.Array, mask_ar: jax.Array) -> jax.Array:
  """big_vision's prefix-LM mask from the input mask [B, T] and the autoregressive mask [B, T].

  mask_ar is 0 for tokens that attend bidirectionally within the prefix and 1 for causal tokens:
  token i sees token j when j is not padding and cumsum(mask_ar)[j] <= cumsum(mask_ar)[i].
  All-ones mask_ar is a plain causal mask.
  """
  cumsum = jnp.cumsum(mask_ar, axis=1)
  visible = cumsum[:, None, :] <= cumsum[:, :, None]
  return jnp.logical_and(visible, input_mask[:, None, :].astype(bool))

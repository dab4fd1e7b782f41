"""The adapters that join the ViT to the decoder beyond the affine projector (config.model.adapter).

- 'affine' (PaLM-E, the default): the projector alone, `MedPaLMM.projector`; no module here.
- 'mlp' (LLaVA-1.5's mlp2x_gelu): the projector, GELU, then `MLPHead`, a second decoder-width
  layer. The projector stays the first layer, so its parameters keep their names.
- 'attention_pooler' (a one-layer Q-Former, as BLIP-2's and ELIXR's adapters): `AttentionPooler`'s
  learned queries cross-attend to the ViT's tokens before the projector; the decoder gets one
  token per query, however many patches the ViT makes.

Parameter paths are 'adapter/...', so `config.optimizer.freeze='^(vit|decoder)/'` trains the
projector and the adapter and nothing else (configs/grafting.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from medpalm_m.model.layers import LayerNorm, einsum, param

ADAPTERS = ("affine", "mlp", "attention_pooler")


class MLPHead(nnx.Module):
  """GELU then a [width, width] layer with a bias: the second layer of a two-layer MLP adapter
  whose first layer is the projector."""

  def __init__(self, width: int, *, rngs: nnx.Rngs):
    self.out = param(rngs, (width, width), ("mlp", "embed"))
    self.out_bias = param(rngs, (width,), ("embed",), value=0.0)

  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = x.dtype
    # tanh-approximated GELU as the ViT's (jax's default); LLaVA's torch GELU is exact erf.
    return einsum("...d,de->...e", jax.nn.gelu(x), self.out.value.astype(dtype)) + self.out_bias.value.astype(dtype)


class AttentionPooler(nnx.Module):
  """[N, patches, width] -> [N, num_queries, width]: learned queries attend (multi-head) to the
  LayerNorm-ed patch tokens, then a pre-norm GELU MLP, both residual on the queries. The queries
  are the same for every image; the ViT's position embeddings tell them where a patch is."""

  def __init__(self, num_queries: int, width: int, num_heads: int, mlp_dim: int, *,
               rngs: nnx.Rngs, eps: float = 1e-6):
    if width % num_heads:
      raise ValueError(f"model.vit.width {width} is not divisible by num_heads {num_heads}")
    head_dim = width // num_heads
    self.head_dim = head_dim
    self.queries = param(rngs, (num_queries, width), (None, "embed"), stddev=0.02)
    self.query_norm = LayerNorm(width, use_bias=True, rngs=rngs, eps=eps)
    self.token_norm = LayerNorm(width, use_bias=True, rngs=rngs, eps=eps)
    self.query = param(rngs, (width, num_heads, head_dim), ("embed", "heads", "head_dim"))
    self.key = param(rngs, (width, num_heads, head_dim), ("embed", "heads", "head_dim"))
    self.value = param(rngs, (width, num_heads, head_dim), ("embed", "heads", "head_dim"))
    self.out = param(rngs, (num_heads, head_dim, width), ("heads", "head_dim", "embed"), fan_in=width)
    self.mlp_norm = LayerNorm(width, use_bias=True, rngs=rngs, eps=eps)
    self.mlp_in = param(rngs, (width, mlp_dim), ("embed", "mlp"))
    self.mlp_in_bias = param(rngs, (mlp_dim,), ("mlp",), value=0.0)
    self.mlp_out = param(rngs, (mlp_dim, width), ("mlp", "embed"))
    self.mlp_out_bias = param(rngs, (width,), ("embed",), value=0.0)

  def __call__(self, tokens: jax.Array) -> jax.Array:
    dtype = tokens.dtype
    w = lambda p: p.value.astype(dtype)
    queries = w(self.queries)
    q = einsum("qd,dhk->qhk", self.query_norm(queries), w(self.query))
    kv = self.token_norm(tokens)
    k = einsum("bsd,dhk->bshk", kv, w(self.key))
    v = einsum("bsd,dhk->bshk", kv, w(self.value))
    logits = jnp.einsum("qhk,bshk->bhqs", q, k).astype(jnp.float32) * self.head_dim**-0.5
    attended = jnp.einsum("bhqs,bshk->bqhk", jax.nn.softmax(logits, axis=-1).astype(dtype), v)
    x = queries + einsum("bqhk,hkd->bqd", attended, w(self.out))
    h = jax.nn.gelu(einsum("bqd,df->bqf", self.mlp_norm(x), w(self.mlp_in)) + w(self.mlp_in_bias))
    return x + einsum("bqf,fd->bqd", h, w(self.mlp_out)) + w(self.mlp_out_bias)


def num_params(adapter: str, num_queries: int, vit_width: int, decoder_width: int, mlp_dim: int) -> int:
  """Parameters of the adapter module (the projector not included)."""
  if adapter == "mlp":
    return decoder_width * decoder_width + decoder_width
  if adapter == "attention_pooler":
    w = vit_width
    return num_queries * w + 3 * 2 * w + 4 * w * w + 2 * w * mlp_dim + mlp_dim + w
  return 0

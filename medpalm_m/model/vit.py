"""Vision Transformer encoder: every patch token out, no class token (as in PaLM-E / PaLI).

The same shape as SigLIP's vision tower without its attention-pooling head (biases everywhere,
tanh-approximated GELU, a final LayerNorm), so PaliGemma's and Gemma 3's encoders import as
they are: a patch embedding stored as one [p*p*3, width] matrix is their stride-p convolution.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from medpalm_m.model import attention_impl
from medpalm_m.model.layers import LayerNorm, einsum, param


@dataclasses.dataclass(frozen=True)
class ViTConfig:
  image_size: int = 224
  patch_size: int = 14
  width: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
  dropout: float = 0.0
  remat: Literal["none", "full"] = "none"
  norm_eps: float = 1e-6

  @property
  def num_patches(self) -> int:
    if self.image_size % self.patch_size:
      raise ValueError(f"model.vit.image_size {self.image_size} is not a multiple of patch_size "
                       f"{self.patch_size}")
    return (self.image_size // self.patch_size) ** 2

  def num_params(self) -> int:
    w, p = self.width, self.patch_size
    block = 4 * w * w + 4 * w + 2 * w * self.mlp_dim + self.mlp_dim + w + 4 * w
    return (3 * p * p * w + w) + self.num_patches * w + self.depth * block + 2 * w


class ViTBlock(nnx.Module):
  """Pre-norm block: x + attn(LN(x)); x + mlp(LN(x)); biases everywhere, GELU MLP."""

  def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs, attention_impl: str = "xla"):
    w, heads = cfg.width, cfg.num_heads
    self.attention_impl = attention_impl
    self.interpret_kernels = False  # as Attention's: tests of Pallas kernels on a CPU set it
    if w % heads:
      raise ValueError(f"model.vit.width {w} is not divisible by num_heads {heads}")
    self.num_heads, self.head_dim = heads, w // heads
    self.norm1 = LayerNorm(w, use_bias=True, rngs=rngs, eps=cfg.norm_eps)
    self.qkv = param(rngs, (w, 3, heads, w // heads), ("embed", None, "heads", "head_dim"))
    self.qkv_bias = param(rngs, (3, heads, w // heads), (None, "heads", "head_dim"), value=0.0)
    self.out = param(rngs, (heads, w // heads, w), ("heads", "head_dim", "embed"), fan_in=w)
    self.out_bias = param(rngs, (w,), ("embed",), value=0.0)
    self.norm2 = LayerNorm(w, use_bias=True, rngs=rngs, eps=cfg.norm_eps)
    self.mlp_in = param(rngs, (w, cfg.mlp_dim), ("embed", "mlp"))
    self.mlp_in_bias = param(rngs, (cfg.mlp_dim,), ("mlp",), value=0.0)
    self.mlp_out = param(rngs, (cfg.mlp_dim, w), ("mlp", "embed"))
    self.mlp_out_bias = param(rngs, (w,), ("embed",), value=0.0)
    self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = x.dtype
    h = self.norm1(x)
    qkv = einsum("bnd,dchk->cbnhk", h, self.qkv.value.astype(dtype))
    qkv = qkv + self.qkv_bias.value.astype(dtype)[:, None, None]
    q, k, v = qkv[0], qkv[1], qkv[2]
    if attention_impl.resolve(self.attention_impl) == "xla":  # the ViT's own reference einsums
      logits = jnp.einsum("bqhk,bshk->bhqs", q, k).astype(jnp.float32) * self.head_dim**-0.5
      weights = jax.nn.softmax(logits, axis=-1).astype(dtype)
      attended = jnp.einsum("bhqs,bshk->bqhk", weights, v)
    else:
      attended = attention_impl.attend(q, k, v, None, impl=self.attention_impl, logit_scale=self.head_dim**-0.5,
                                       softcap=None, interpret=self.interpret_kernels)
    attn_out = einsum("bqhk,hkd->bqd", attended, self.out.value.astype(dtype)) + self.out_bias.value.astype(dtype)
    x = x + self.dropout(attn_out)
    h = self.norm2(x)
    h = jax.nn.gelu(einsum("bnd,df->bnf", h, self.mlp_in.value.astype(dtype)) + self.mlp_in_bias.value.astype(dtype))
    h = einsum("bnf,fd->bnd", h, self.mlp_out.value.astype(dtype)) + self.mlp_out_bias.value.astype(dtype)
    return x + self.dropout(h)


class ViT(nnx.Module):

  def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs, attention_impl: str = "xla"):
    """`attention_impl`: config.model.attention_impl, see `attention_impl.attend`."""
    self.cfg = cfg
    p, w = cfg.patch_size, cfg.width
    self.patch_embed = param(rngs, (p * p * 3, w), ("patch", "embed"))
    self.patch_bias = param(rngs, (w,), ("embed",), value=0.0)
    self.pos_embed = param(rngs, (cfg.num_patches, w), ("patches", "embed"), stddev=0.02)
    self.blocks = nnx.List([ViTBlock(cfg, rngs=rngs, attention_impl=attention_impl) for _ in range(cfg.depth)])
    self.final_norm = LayerNorm(w, use_bias=True, rngs=rngs, eps=cfg.norm_eps)

  def __call__(self, images: jax.Array) -> jax.Array:
    """images [N, H, W, 3] float in [-1, 1] -> patch tokens [N, num_patches, width]."""
    n, h, w, c = images.shape
    p = self.cfg.patch_size
    if h != self.cfg.image_size or w != self.cfg.image_size:
      raise ValueError(f"images are {h}x{w}, model.vit.image_size is {self.cfg.image_size}")
    # Non-overlapping patches as one matmul (identical to a stride-p convolution).
    patches = images.reshape(n, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    patches = patches.reshape(n, (h // p) * (w // p), p * p * c)
    dtype = images.dtype
    x = einsum("bnp,pd->bnd", patches, self.patch_embed.value.astype(dtype)) + self.patch_bias.value.astype(dtype)
    x = x + self.pos_embed.value.astype(dtype)
    for block in self.blocks:
      if self.cfg.remat == "full":
        x = nnx.remat(lambda blk, y: blk(y))(block, x)
      else:
        x = block(x)
    return self.final_norm(x)

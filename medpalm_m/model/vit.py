"""Vision Transformer encoder: every patch token out, no class token (as in PaLM-E / PaLI).

By default the same shape as SigLIP's vision tower without its attention-pooling head (biases
everywhere, tanh-approximated GELU, a final LayerNorm), so PaliGemma's and Gemma 3's encoders
import as they are: a patch embedding stored as one [p*p*3, width] matrix is their stride-p
convolution. ViT-22B (Dehghani et al. 2023, the encoder of Med-PaLM M 84B / 562B) is the same
ViT with three fields set: `block="parallel"` (attention and MLP read one LayerNorm and their
outputs are summed; the fused output projection has one bias, the MLP's), `qk_norm=True`
(LayerNorm on each query and key head before the dot product) and `qkv_bias=False`,
`norm_bias=False` (no biases on the QKV projection or in any LayerNorm; the MLP keeps its own).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

from medpalm_m.model import attention_impl
from medpalm_m.model.layers import Adaptable, LayerNorm, einsum, param


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
  # ViT-22B: "parallel", True, False, False; the standard (SigLIP, ViT-e) block is the default.
  block: Literal["sequential", "parallel"] = "sequential"
  qk_norm: bool = False
  qkv_bias: bool = True
  norm_bias: bool = True

  def __post_init__(self):
    if self.block not in ("sequential", "parallel"):
      raise ValueError(f"model.vit.block must be 'sequential' or 'parallel', got {self.block!r}")

  @property
  def num_patches(self) -> int:
    if self.image_size % self.patch_size:
      raise ValueError(f"model.vit.image_size {self.image_size} is not a multiple of patch_size "
                       f"{self.patch_size}")
    return (self.image_size // self.patch_size) ** 2

  def num_params(self) -> int:
    w, p, head_dim = self.width, self.patch_size, self.width // self.num_heads
    norm = w * (2 if self.norm_bias else 1)
    parallel = self.block == "parallel"
    block = (4 * w * w + (3 * w if self.qkv_bias else 0) + (0 if parallel else w)  # attention
             + 2 * w * self.mlp_dim + self.mlp_dim + w  # MLP
             + norm * (1 if parallel else 2)
             + (2 * head_dim * (2 if self.norm_bias else 1) if self.qk_norm else 0))
    return (3 * p * p * w + w) + self.num_patches * w + self.depth * block + norm


class ViTBlock(Adaptable):
  """Pre-norm block, GELU MLP.

  sequential (default): x + attn(LN1(x)), then + mlp(LN2(.)); parallel (ViT-22B):
  x + attn(LN(x)) + mlp(LN(x)), with no attention-output bias (the MLP's stands for the fused
  projection's). Optional query/key LayerNorms per head; QKV and LayerNorm biases by config.
  """

  LORA_KERNELS = {"qkv": 1, "out": 2, "mlp_in": 1, "mlp_out": 1}

  def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs, attention_impl: str = "xla"):
    w, heads = cfg.width, cfg.num_heads
    self.attention_impl = attention_impl
    self.interpret_kernels = False  # as Attention's: tests of Pallas kernels on a CPU set it
    if w % heads:
      raise ValueError(f"model.vit.width {w} is not divisible by num_heads {heads}")
    self.num_heads, self.head_dim = heads, w // heads
    self.parallel = cfg.block == "parallel"
    norm = lambda dim, axis="embed": LayerNorm(dim, use_bias=cfg.norm_bias, rngs=rngs, eps=cfg.norm_eps,
                                               axis=axis)
    self.norm1 = norm(w)
    self.qkv = param(rngs, (w, 3, heads, w // heads), ("embed", None, "heads", "head_dim"))
    self.qkv_bias = (param(rngs, (3, heads, w // heads), (None, "heads", "head_dim"), value=0.0)
                     if cfg.qkv_bias else None)
    self.query_norm = norm(self.head_dim, "head_dim") if cfg.qk_norm else None
    self.key_norm = norm(self.head_dim, "head_dim") if cfg.qk_norm else None
    self.out = param(rngs, (heads, w // heads, w), ("heads", "head_dim", "embed"), fan_in=w)
    self.out_bias = None if self.parallel else param(rngs, (w,), ("embed",), value=0.0)
    self.norm2 = None if self.parallel else norm(w)
    self.mlp_in = param(rngs, (w, cfg.mlp_dim), ("embed", "mlp"))
    self.mlp_in_bias = param(rngs, (cfg.mlp_dim,), ("mlp",), value=0.0)
    self.mlp_out = param(rngs, (cfg.mlp_dim, w), ("mlp", "embed"))
    self.mlp_out_bias = param(rngs, (w,), ("embed",), value=0.0)
    self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)

  def attention(self, h: jax.Array) -> jax.Array:
    dtype = h.dtype
    qkv = self.project("qkv", "bnd,dchk->cbnhk", h)
    if self.qkv_bias is not None:
      qkv = qkv + self.qkv_bias.value.astype(dtype)[:, None, None]
    q, k, v = qkv[0], qkv[1], qkv[2]
    if self.query_norm is not None:
      q, k = self.query_norm(q), self.key_norm(k)
    if attention_impl.resolve(self.attention_impl) == "xla":  # the ViT's own reference einsums
      logits = jnp.einsum("bqhk,bshk->bhqs", q, k).astype(jnp.float32) * self.head_dim**-0.5
      weights = jax.nn.softmax(logits, axis=-1).astype(dtype)
      attended = jnp.einsum("bhqs,bshk->bqhk", weights, v)
    else:
      attended = attention_impl.attend(q, k, v, None, impl=self.attention_impl, logit_scale=self.head_dim**-0.5,
                                       softcap=None, interpret=self.interpret_kernels)
    out = self.project("out", "bqhk,hkd->bqd", attended)
    return out if self.out_bias is None else out + self.out_bias.value.astype(dtype)

  def mlp(self, h: jax.Array) -> jax.Array:
    dtype = h.dtype
    h = jax.nn.gelu(self.project("mlp_in", "bnd,df->bnf", h) + self.mlp_in_bias.value.astype(dtype))
    return self.project("mlp_out", "bnf,fd->bnd", h) + self.mlp_out_bias.value.astype(dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    if self.parallel:
      h = self.norm1(x)
      return x + self.dropout(self.attention(h)) + self.dropout(self.mlp(h))
    x = x + self.dropout(self.attention(self.norm1(x)))
    return x + self.dropout(self.mlp(self.norm2(x)))


class ViT(nnx.Module):

  def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs, attention_impl: str = "xla"):
    """`attention_impl`: config.model.attention_impl, see `attention_impl.attend`."""
    self.cfg = cfg
    p, w = cfg.patch_size, cfg.width
    self.patch_embed = param(rngs, (p * p * 3, w), ("patch", "embed"))
    self.patch_bias = param(rngs, (w,), ("embed",), value=0.0)
    self.pos_embed = param(rngs, (cfg.num_patches, w), ("patches", "embed"), stddev=0.02)
    self.blocks = nnx.List([ViTBlock(cfg, rngs=rngs, attention_impl=attention_impl) for _ in range(cfg.depth)])
    self.final_norm = LayerNorm(w, use_bias=cfg.norm_bias, rngs=rngs, eps=cfg.norm_eps)

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

"""PaLM-E: a ViT and a decoder joined by multimodal sentences.

Token ids carry `image_token_id` in every slot that an image occupies (preprocessing expands each
`<img>` placeholder into `num_image_tokens` slots). The forward pass encodes the images, maps their
patch tokens through the adapter (config.model.adapter, `medpalm_m.model.adapter`: a learned
affine projector by default as in PaLM-E, a two-layer MLP or an attention pooler) into the
decoder's embedding space, and writes the tokens of image k into the slots of placeholder k, in
reading order. Everything else is the decoder's own token embedding. Any number of images at any positions, different per example.

Gemma 3 (MedGemma) reaches this by fields: its image tokens are average-pooled to
`image_pool_tokens`, RMS-normalised (`projector_norm`) and projected without a bias; the tokens of
one image attend to each other both ways inside an otherwise causal sequence
(attention='causal_bidirectional_images').

`lora` (model.lora) puts low-rank adapters beside chosen kernels of the decoder and optionally
the ViT (`medpalm_m.model.lora`); off by default.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Literal, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from medpalm_m.model import adapter as adapter_lib
from medpalm_m.model import attention_impl
from medpalm_m.model.attention import attention_mask
from medpalm_m.model.decoder import Decoder, DecoderConfig
from medpalm_m.model.layers import RMSNorm, einsum, matmul_operands, param
from medpalm_m.model.lora import LoRAConfig, attach_adapters
from medpalm_m.model.vit import ViT, ViTConfig


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  vit: ViTConfig
  decoder: DecoderConfig
  image_token_id: int
  attention: Literal["prefix_lm", "causal", "causal_bidirectional_images"] = "causal"
  dtype: str = "float32"  # compute dtype; parameters stay float32
  projector_bias: bool = True
  projector_norm: bool = False  # RMSNorm on image tokens before the projector (Gemma 3)
  image_pool_tokens: int | None = None  # average-pool the patch grid to this many tokens (Gemma 3: 256)
  # What joins the ViT to the decoder (medpalm_m.model.adapter): 'affine' (PaLM-E), 'mlp'
  # (LLaVA-1.5) or 'attention_pooler' (a one-layer Q-Former, BLIP-2 / ELIXR).
  adapter: Literal["affine", "mlp", "attention_pooler"] = "affine"
  # The attention pooler's learned queries: the image tokens the decoder gets per image, any
  # number; None: as many as the (pooled) patch grid.
  adapter_queries: int | None = None
  # 'xla' (the reference), 'blocked', 'cudnn' (GPU) or 'splash' (TPU) for the ViT and the decoder,
  # or one per backend, 'tpu:splash,gpu:cudnn,cpu:xla' (medpalm_m.model.attention_impl).
  attention_impl: str = "xla"
  # What every weight matmul rounds its float32 operands to, accumulating in float32 (a TPU's
  # default precision for float32 matmuls does the same): 'float32' (exact), 'bfloat16', or
  # 'auto': bfloat16 on TPU and GPU and on CPUs with AMX-BF16, whose matrix units ran these dots
  # 3-5x faster than float32 ones, float32 on other CPUs (`resolve_matmul_operand_dtype`).
  # The compute dtype above, when bfloat16, already makes every operand bfloat16.
  matmul_operand_dtype: str = "float32"
  lora: LoRAConfig = dataclasses.field(default_factory=LoRAConfig)

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "ModelConfig":
    d = dict(d)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
      raise ValueError(f"unknown keys under config.model: {sorted(unknown)}; known: {sorted(known)}")
    _check_set(cls, d, "model")
    vit = _build(ViTConfig, d.pop("vit"), "model.vit")
    decoder = _build(DecoderConfig, d.pop("decoder"), "model.decoder")
    if "lora" in d:  # a workdir written before LoRA existed has none: the dataclass default
      d["lora"] = _build(LoRAConfig, d["lora"], "model.lora")
    cfg = cls(vit=vit, decoder=decoder, **d)
    if cfg.attention not in ("prefix_lm", "causal", "causal_bidirectional_images"):
      raise ValueError(f"model.attention must be 'prefix_lm', 'causal' or "
                       f"'causal_bidirectional_images', got {cfg.attention!r}")
    attention_impl.parse_choice(cfg.attention_impl)  # a misspelt name fails here, not when traced
    if cfg.matmul_operand_dtype not in MATMUL_OPERAND_DTYPES:
      raise ValueError(f"model.matmul_operand_dtype must be one of {MATMUL_OPERAND_DTYPES}, got "
                       f"{cfg.matmul_operand_dtype!r}")
    if cfg.image_pool_tokens is not None:
      side, grid = math.isqrt(cfg.image_pool_tokens), math.isqrt(vit.num_patches)
      if side * side != cfg.image_pool_tokens or grid % side:
        raise ValueError(f"model.image_pool_tokens {cfg.image_pool_tokens} must be a square whose "
                         f"side divides the {grid}x{grid} patch grid")
    if cfg.adapter not in adapter_lib.ADAPTERS:
      raise ValueError(f"model.adapter must be one of {adapter_lib.ADAPTERS}, got {cfg.adapter!r}")
    if cfg.adapter_queries is not None and (cfg.adapter != "attention_pooler" or cfg.adapter_queries < 1):
      raise ValueError(f"model.adapter_queries={cfg.adapter_queries} needs model.adapter="
                       "'attention_pooler' and a positive count (the image tokens per image)")
    if not 0 <= cfg.image_token_id < decoder.vocab_size:
      raise ValueError(f"model.image_token_id {cfg.image_token_id} is outside the vocabulary "
                       f"(model.decoder.vocab_size={decoder.vocab_size})")
    return cfg

  @property
  def num_image_tokens(self) -> int:
    """Decoder tokens per image: the attention pooler's queries, or the (pooled) patch grid."""
    grid = self.image_pool_tokens or self.vit.num_patches
    return (self.adapter_queries or grid) if self.adapter == "attention_pooler" else grid

  def num_params(self) -> dict[str, int]:
    """Per part; 'projector' counts the whole adapter between the ViT and the decoder."""
    projector = self.vit.width * self.decoder.width
    projector += self.decoder.width if self.projector_bias else 0
    projector += self.vit.width if self.projector_norm else 0
    projector += adapter_lib.num_params(self.adapter, self.num_image_tokens, self.vit.width,
                                        self.decoder.width, self.vit.mlp_dim)
    counts = {"vit": self.vit.num_params(), "projector": projector,
              "decoder": self.decoder.num_params()}
    counts["total"] = sum(counts.values())
    return counts


MATMUL_OPERAND_DTYPES = ("float32", "bfloat16", "auto")


def resolve_matmul_operand_dtype(choice: str) -> str:
  """config.model.matmul_operand_dtype -> 'float32' or 'bfloat16' on this machine's backend."""
  if choice != "auto":
    return choice
  if jax.default_backend() in ("tpu", "gpu"):
    return "bfloat16"
  return "bfloat16" if _cpu_has_amx_bf16() else "float32"


@functools.cache
def _cpu_has_amx_bf16() -> bool:
  # Measured only with AMX (Intel Xeon, 2026-12-02): a CPU with AVX512-BF16 alone (AMD Zen 4)
  # may gain too, unmeasured, so it keeps float32 under 'auto'.
  try:
    with open("/proc/cpuinfo") as f:
      return any(line.startswith("flags") and " amx_bf16" in line for line in f)
  except OSError:
    return False


def _build(cls, d, where: str):
  d = dict(d)
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = set(d) - known
  if unknown:
    raise ValueError(f"unknown keys under config.{where}: {sorted(unknown)}; known: {sorted(known)}")
  _check_set(cls, d, where)
  return cls(**d)


def _check_set(cls, d, where: str) -> None:
  """A field without a default (a shape) left None by the config (configs/base.py's placeholder)."""
  unset = [f.name for f in dataclasses.fields(cls)
           if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
           and d.get(f.name) is None and f.name not in ("vit", "decoder")]
  if unset:
    raise ValueError(f"config.{where} does not set {', '.join(unset)}: every model shape must be "
                     "given by the experiment's config (configs/base.py has no default for it)")


class MedPaLMM(nnx.Module):

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.vit = ViT(cfg.vit, rngs=rngs, attention_impl=cfg.attention_impl)
    self.projector_norm = (RMSNorm(cfg.vit.width, rngs=rngs, eps=cfg.vit.norm_eps, axis="embed_vit")
                           if cfg.projector_norm else None)
    self.projector = param(rngs, (cfg.vit.width, cfg.decoder.width), ("embed_vit", "embed"))
    self.projector_bias = (param(rngs, (cfg.decoder.width,), ("embed",), value=0.0)
                           if cfg.projector_bias else None)
    self.matmul_operand_dtype = resolve_matmul_operand_dtype(cfg.matmul_operand_dtype)
    self.decoder = Decoder(cfg.decoder, rngs=rngs, attention_impl=cfg.attention_impl,
                           matmul_operand_dtype=self.matmul_operand_dtype)
    # After the towers: the affine default draws the same initial values as before adapters existed.
    if cfg.adapter == "attention_pooler":
      self.adapter = adapter_lib.AttentionPooler(cfg.num_image_tokens, cfg.vit.width, cfg.vit.num_heads,
                                                 cfg.vit.mlp_dim, rngs=rngs, eps=cfg.vit.norm_eps)
    elif cfg.adapter == "mlp":
      self.adapter = adapter_lib.MLPHead(cfg.decoder.width, rngs=rngs)
    else:
      self.adapter = None
    attach_adapters(self, cfg.lora, rngs)  # last: the base weights draw the same values with or without

  @property
  def dtype(self):
    return jnp.dtype(self.cfg.dtype)

  def encode_images(self, images: jax.Array) -> jax.Array:
    """uint8 images [B, K, H, W, 3] -> projected image tokens [B, K, num_image_tokens, width]."""
    with matmul_operands(self.matmul_operand_dtype):
      return self._encode_images(images)

  def _encode_images(self, images: jax.Array) -> jax.Array:
    b, k = images.shape[:2]
    x = images.reshape(b * k, *images.shape[2:]).astype(self.dtype) / 127.5 - 1.0
    tokens = self.vit(x)
    if self.cfg.image_pool_tokens is not None:
      tokens = _average_pool(tokens, self.cfg.image_pool_tokens)
    if self.cfg.adapter == "attention_pooler":
      tokens = self.adapter(tokens)
    if self.projector_norm is not None:
      tokens = self.projector_norm(tokens)
    tokens = einsum("...d,de->...e", tokens, self.projector.value.astype(self.dtype))
    if self.projector_bias is not None:
      tokens = tokens + self.projector_bias.value.astype(self.dtype)
    if self.cfg.adapter == "mlp":
      tokens = self.adapter(tokens)
    return tokens.reshape(b, k, *tokens.shape[1:])

  def autoregressive_mask(self, tokens: jax.Array, mask_ar: jax.Array) -> jax.Array:
    """The mask_ar (see `attention.attention_mask`) that config.model.attention implies.

    'prefix_lm' keeps the given one, 'causal' makes every token causal, and
    'causal_bidirectional_images' makes every token causal except that each run of image slots
    is one bidirectional block (Gemma 3): only the first slot of a run starts a new block.
    """
    if self.cfg.attention == "prefix_lm":
      return mask_ar
    if self.cfg.attention == "causal":
      return jnp.ones_like(mask_ar)
    is_image = tokens == self.cfg.image_token_id
    follows_image = jnp.pad(is_image, ((0, 0), (1, 0)))[:, :-1]
    return jnp.where(is_image & follows_image, 0, 1).astype(mask_ar.dtype)

  def embed_inputs(self, tokens: jax.Array, images: jax.Array | None) -> jax.Array:
    """Multimodal sentence embedding [B, T, D]: text embeddings with image tokens in their slots."""
    x = self.decoder.embed(tokens, self.dtype)
    if images is None or images.shape[1] == 0:
      return x
    image_tokens = self.encode_images(images)
    b, k, n, d = image_tokens.shape
    is_image = tokens == self.cfg.image_token_id
    # The j-th image slot of an example (in reading order) holds patch j % n of image j // n.
    slot = jnp.clip(jnp.cumsum(is_image, axis=1) - 1, 0, k * n - 1)
    gathered = jnp.take_along_axis(image_tokens.reshape(b, k * n, d), slot[..., None], axis=1)
    return jnp.where(is_image[..., None], gathered, x)

  def __call__(self, tokens: jax.Array, images: jax.Array | None, input_mask: jax.Array,
               mask_ar: jax.Array, segment_ids: jax.Array | None = None,
               positions: jax.Array | None = None) -> jax.Array:
    """Logits [B, T, vocab] for a right-padded batch. Only 'prefix_lm' mode reads mask_ar.

    A packed row (several examples, see `data.pipeline.Packing`) passes `segment_ids` [B, T]
    (1, 2, ... per example) and `positions` [B, T] restarting at 0 in each example; a token then
    attends only within its own example, and the images fill the row's image slots in order.
    """
    return self.decoder.logits(
        self.hidden_states(tokens, images, input_mask, mask_ar, segment_ids, positions))

  def hidden_states(self, tokens: jax.Array, images: jax.Array | None, input_mask: jax.Array,
                    mask_ar: jax.Array, segment_ids: jax.Array | None = None,
                    positions: jax.Array | None = None) -> jax.Array:
    """The decoder's last hidden states [B, T, D] (as __call__ takes them); `decoder.logits`
    projects them, at every position or only at some (training's target positions)."""
    mask = attention_mask(input_mask, self.autoregressive_mask(tokens, mask_ar))
    if segment_ids is not None:
      mask = jnp.logical_and(mask, segment_ids[:, :, None] == segment_ids[:, None, :])
    if positions is None:
      positions = jnp.cumsum(input_mask, axis=1) - 1
    x = self.embed_inputs(tokens, images)
    hidden, _ = self.decoder.hidden_states(x, positions, mask)
    return hidden


def _average_pool(tokens: jax.Array, num_tokens: int) -> jax.Array:
  """Patch tokens [N, grid*grid, D] (row-major grid) -> [N, num_tokens, D]: the mean of each
  non-overlapping k x k window, as Gemma 3's AvgPool2d over the patch grid."""
  n, p, d = tokens.shape
  grid, side = math.isqrt(p), math.isqrt(num_tokens)
  k = grid // side
  windows = tokens.reshape(n, side, k, side, k, d)
  return windows.mean(axis=(2, 4)).reshape(n, num_tokens, d)

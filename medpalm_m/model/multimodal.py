"""PaLM-E: a ViT and a decoder joined by multimodal sentences.

Token ids carry `image_token_id` in every slot that an image occupies (preprocessing expands each
`<img>` placeholder into `num_patches` slots). The forward pass encodes the images, maps their
patch tokens through a learned affine projector into the decoder's embedding space, and writes
the tokens of image k into the slots of placeholder k, in reading order. Everything else is the
decoder's own token embedding. Any number of images at any positions, different per example.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from medpalm_m.model.attention import attention_mask
from medpalm_m.model.decoder import Decoder, DecoderConfig
from medpalm_m.model.layers import param
from medpalm_m.model.vit import ViT, ViTConfig


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  vit: ViTConfig
  decoder: DecoderConfig
  image_token_id: int
  attention: Literal["prefix_lm", "causal"] = "causal"
  dtype: str = "float32"  # compute dtype; parameters stay float32

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "ModelConfig":
    d = dict(d)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
      raise ValueError(f"unknown keys under config.model: {sorted(unknown)}; known: {sorted(known)}")
    vit = _build(ViTConfig, d.pop("vit"), "model.vit")
    decoder = _build(DecoderConfig, d.pop("decoder"), "model.decoder")
    cfg = cls(vit=vit, decoder=decoder, **d)
    if cfg.attention not in ("prefix_lm", "causal"):
      raise ValueError(f"model.attention must be 'prefix_lm' or 'causal', got {cfg.attention!r}")
    if not 0 <= cfg.image_token_id < decoder.vocab_size:
      raise ValueError(f"model.image_token_id {cfg.image_token_id} is outside the vocabulary "
                       f"(model.decoder.vocab_size={decoder.vocab_size})")
    return cfg

  @property
  def num_image_tokens(self) -> int:
    return self.vit.num_patches

  def num_params(self) -> dict[str, int]:
    projector = self.vit.width * self.decoder.width + self.decoder.width
    counts = {"vit": self.vit.num_params(), "projector": projector,
              "decoder": self.decoder.num_params()}
    counts["total"] = sum(counts.values())
    return counts


def _build(cls, d, where: str):
  d = dict(d)
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = set(d) - known
  if unknown:
    raise ValueError(f"unknown keys under config.{where}: {sorted(unknown)}; known: {sorted(known)}")
  return cls(**d)


class MedPaLMM(nnx.Module):

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.vit = ViT(cfg.vit, rngs=rngs)
    self.projector = param(rngs, (cfg.vit.width, cfg.decoder.width), ("embed_vit", "embed"))
    self.projector_bias = param(rngs, (cfg.decoder.width,), ("embed",), value=0.0)
    self.decoder = Decoder(cfg.decoder, rngs=rngs)

  @property
  def dtype(self):
    return jnp.dtype(self.cfg.dtype)

  def encode_images(self, images: jax.Array) -> jax.Array:
    """uint8 images [B, K, H, W, 3] -> projected patch tokens [B, K, num_patches, width]."""
    b, k = images.shape[:2]
    x = images.reshape(b * k, *images.shape[2:]).astype(self.dtype) / 127.5 - 1.0
    tokens = self.vit(x)
    tokens = tokens @ self.projector.value.astype(self.dtype) + self.projector_bias.value.astype(self.dtype)
    return tokens.reshape(b, k, *tokens.shape[1:])

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
               mask_ar: jax.Array) -> jax.Array:
    """Logits [B, T, vocab] for a right-padded batch. In 'causal' mode mask_ar is ignored."""
    if self.cfg.attention == "causal":
      mask_ar = jnp.ones_like(mask_ar)
    mask = attention_mask(input_mask, mask_ar)
    positions = jnp.cumsum(input_mask, axis=1) - 1
    x = self.embed_inputs(tokens, images)
    logits, _ = self.decoder(x, positions, mask)
    return logits

"""Model FLOPs per training step, counted as MaxText does (6 x params x tokens + attention).

Counts the matmuls a training step must do (forward 2 FLOPs per multiply-add, backward twice the
forward), not what remat recomputes, so MFU compares implementations fairly.
"""

from __future__ import annotations

from medpalm_m.model.medpalm import ModelConfig


def training_flops_per_step(cfg: ModelConfig, batch_size: int, seq_len: int, images_per_example: int) -> float:
  d, v = cfg.decoder, cfg.vit
  tokens = batch_size * seq_len
  decoder_matmul = d.depth * (d.width * d.head_dim * (2 * d.num_heads + 2 * d.num_kv_heads)
                              + 3 * d.width * d.mlp_dim)
  decoder_matmul += d.vocab_size * d.width  # output logits (the input lookup is not a matmul)
  # QK^T and AV: 2 matmuls of T x T x (heads * head_dim) per layer, causal counted in full as
  # MaxText does for its default dot-product attention.
  decoder_attention = 2 * d.depth * batch_size * seq_len * seq_len * d.num_heads * d.head_dim
  images = batch_size * images_per_example
  n = v.num_patches
  vit_matmul = v.depth * (4 * v.width * v.width + 2 * v.width * v.mlp_dim) + 3 * v.patch_size**2 * v.width
  vit_matmul += v.width * d.width  # projector
  vit_attention = 2 * v.depth * images * n * n * v.width
  forward = 2 * (tokens * decoder_matmul + images * n * vit_matmul) + 2 * (decoder_attention + vit_attention)
  return 3.0 * forward

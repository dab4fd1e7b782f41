"""The paper's three Med-PaLM M sizes and their fine-tuning recipe, shared by the size configs.

PaLM 8B / 62B / 540B [Chowdhery et al. 2022, Table 1]: d_model 4096 / 8192 / 18432, 32 / 64 / 118
layers, 16 / 32 / 48 heads, head size 256, multi-query attention, SwiGLU MLP of 4 x d_model,
256k SentencePiece vocabulary. ViT-4B (PaLI's ViT-e: width 1792, depth 56, MLP 15360, 16 heads)
and ViT-22B (width 6144, depth 48, MLP 24576, 48 heads), patch 14 at 224 px = 256 tokens.
"""

from configs.mixtures import multimedbench

PALM = {
    "8b": dict(width=4096, depth=32, num_heads=16, mlp_dim=16384),
    "62b": dict(width=8192, depth=64, num_heads=32, mlp_dim=32768),
    "540b": dict(width=18432, depth=118, num_heads=48, mlp_dim=73728),
}
VIT = {
    "vit_4b": dict(width=1792, depth=56, num_heads=16, mlp_dim=15360),
    "vit_22b": dict(width=6144, depth=48, num_heads=48, mlp_dim=24576),
}


def model(palm: str, vit: str) -> dict:
  return dict(
      vit=dict(image_size=224, patch_size=14, remat="full", **VIT[vit]),
      decoder=dict(vocab_size=256_000, num_kv_heads=1, head_dim=256, remat="full", **PALM[palm]),
      image_token_id=4,
      attention="causal",
      dtype="bfloat16",
      # Fused kernels where they exist (MaxText's and big_vision's choice): Pallas splash attention
      # on TPU, cuDNN flash attention on GPU; the reference elsewhere. Accelerator figures:
      # benchmarks/RESULTS.md, "Attention implementations".
      attention_impl="tpu:splash,gpu:cudnn,cpu:xla",
  )


def training(c, *, batch_size: int, learning_rate: float) -> None:
  """The paper's fine-tuning setup (Tu et al. 2023, Table A.2 and Section 4.2), shared by the
  three sizes: the MultiMedBench mixture, 710 input and 256 output tokens, at most one image per
  context, Adafactor with momentum 0.9 at a constant learning rate. The number of steps is not
  reported; num_steps is a placeholder."""
  c.data.mixture = multimedbench.MIXTURE
  c.data.update(build_synthetic=False, max_prompt_tokens=710, max_target_tokens=256, max_images=1)
  c.data.tokenizer = ""  # set to the SentencePiece model of the checkpoint the run starts from
  c.train.update(batch_size=batch_size, grad_accum_steps=1, num_steps=10_000, log_every=10,
                 checkpoint_every=500)
  c.optimizer.update(name="adafactor", learning_rate=learning_rate, schedule="constant",
                     warmup_steps=0, b1=0.9, clip_norm=1.0)

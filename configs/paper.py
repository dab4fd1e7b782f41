"""The paper's three Med-PaLM M sizes and their fine-tuning recipe, shared by the size configs.

PaLM 8B / 62B / 540B [Chowdhery et al. 2022, Table 1]: d_model 4096 / 8192 / 18432, 32 / 64 / 118
layers, 16 / 32 / 48 heads, head size 256, multi-query attention, SwiGLU MLP of 4 x d_model,
256k SentencePiece vocabulary. ViT-4B (PaLI's ViT-e: width 1792, depth 56, MLP 15360, 16 heads,
a standard sequential block) and ViT-22B (Dehghani et al. 2023: width 6144, depth 48, MLP 24576,
48 heads, parallel block, QK-norm, no biases on QKV or in the LayerNorms), patch 14 at 224 px =
256 tokens.

Marked "ours" below: what the paper leaves open, with the reason for our choice.
"""

from configs import base
from configs.mixtures import multimedbench
from medpalm_m.data import augment

PALM = {
    "8b": dict(width=4096, depth=32, num_heads=16, mlp_dim=16384),
    "62b": dict(width=8192, depth=64, num_heads=32, mlp_dim=32768),
    "540b": dict(width=18432, depth=118, num_heads=48, mlp_dim=73728),
}
VIT = {
    "vit_4b": dict(width=1792, depth=56, num_heads=16, mlp_dim=15360),
    "vit_22b": dict(width=6144, depth=48, num_heads=48, mlp_dim=24576,
                    block="parallel", qk_norm=True, qkv_bias=False, norm_bias=False),
}
DROPOUT = 0.1  # Tu et al. 2023, Section 4.2


def model(palm: str, vit: str) -> dict:
  return dict(
      # The paper's dropout 0.1 does not say where; ours: every dropout site of both towers (the
      # residual branches), since the whole model is fine-tuned.
      vit=dict(image_size=224, patch_size=14, remat="full", dropout=DROPOUT, **VIT[vit]),
      decoder=dict(vocab_size=256_000, num_kv_heads=1, head_dim=256, remat="full", dropout=DROPOUT,
                   **PALM[palm]),
      image_token_id=4,
      attention="causal",
      dtype="bfloat16",
      # Fused kernels where they exist (MaxText's and big_vision's choice): Pallas splash attention
      # on TPU, cuDNN flash attention on GPU; the reference elsewhere. Accelerator figures:
      # benchmarks/RESULTS.md, "Attention implementations".
      attention_impl="tpu:splash,gpu:cudnn,cpu:xla",
  )


def mixture(name: str) -> dict[str, float]:
  """configs/mixtures/<name>.py's MIXTURE (e.g. the transfer ablation's)."""
  import importlib
  try:
    return dict(importlib.import_module(f"configs.mixtures.{name}").MIXTURE)
  except ModuleNotFoundError as e:
    raise ValueError(f"no mixture configs/mixtures/{name}.py; name one of that folder's files") from e


def training(c, *, batch_size: int, learning_rate: float, mixture_name: str = "multimedbench") -> None:
  """The paper's fine-tuning setup (Tu et al. 2023, Table A.2, Sections 4.2 and A.1), shared by
  the three sizes: the MultiMedBench mixture with every task in every batch and the augmented
  dermatology and mammography images, 710 input and 256 output tokens, at most one image per
  context, full fine-tuning with Adafactor (momentum 0.9) at one constant learning rate for every
  parameter, answers decoded up to 256 tokens at evaluation."""
  c.data.mixture = mixture(mixture_name)
  c.data.update(build_synthetic=False, max_prompt_tokens=710, max_target_tokens=256, max_images=1)
  c.data.tokenizer = ""  # set to the SentencePiece model of the checkpoint the run starts from
  c.data.every_task_per_batch = True  # Table A.1: every task at least once per batch
  # Section A.1's augmentation; num_ops and magnitude stay ours (base): the paper gives neither.
  c.data.augmentation.ops = {"pad_ufes_20": list(augment.PAD_UFES_20_OPS),
                             **{task: list(augment.MAMMOGRAPHY_OPS)
                                for task in ("vindr_mammo", "cbis_ddsm_mass", "cbis_ddsm_calc")}}
  c.train.update(
      batch_size=batch_size, grad_accum_steps=1, log_every=10, checkpoint_every=500,
      # Ours: the paper does not report its steps (Section 6.1 only says the 562B had fewer);
      # 10k steps of 128 is ~2.2 passes over the MultiMedBench training examples.
      num_steps=10_000,
      # Ours: PaLM's pretraining z-loss, kept for bf16 logit stability; the paper says nothing.
      z_loss=1e-4,
      # Ours: the paper's loss is the LM loss over target tokens (PaLM-E Section 5).
      loss_normalization="tokens",
  )
  c.optimizer.update(
      name="adafactor", learning_rate=learning_rate, schedule="constant", warmup_steps=0, b1=0.9,
      weight_decay=0.0,
      # Ours: global-norm clipping at 1.0 (PaLM's pretraining value); the paper does not say.
      clip_norm=1.0,
      freeze="",  # full fine-tuning: every parameter is updated
      lr_multipliers={},  # one rate for every parameter (the tiny default's ViT multipliers are not the paper's)
  )
  c.eval.update(max_decode_tokens=256)  # the paper's 256 output tokens, so reports are not cut
  evals(c)


# The tasks of Table 2 (PubMedQA is evaluated, never trained on) and of the zero-shot results (§6.2).
MULTIMEDBENCH_TASKS = (*multimedbench.MIXTURE, "pubmedqa")
ZERO_SHOT_TASKS = ("montgomery_tb", "montgomery_tb_cot", "shenzhen_tb", "shenzhen_tb_cot",
                   "mimic_cxr_two_view")


def evals(c) -> None:
  """Two suites, whatever the mixture: MultiMedBench's 14 tasks, evaluated during training every
  2,500 steps (ours: 4 times in the 10k steps), and the zero-shot tasks, on demand, with room for
  the two-view reports' second image."""
  c.evals.multimedbench = base.eval_suite(sorted(MULTIMEDBENCH_TASKS), max_decode_tokens=256, every=2500)
  c.evals.zero_shot = base.eval_suite(ZERO_SHOT_TASKS, max_decode_tokens=256, max_images=2)

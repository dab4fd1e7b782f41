"""Gemma 3 multimodal models, MedGemma among them: SigLIP, pooled image tokens, Gemma 3.

As transformers' Gemma3ForConditionalGeneration defines them. The SigLIP patch grid is
average-pooled to `mm_tokens_per_image` tokens (256), RMS-normalised (`mm_soft_emb_norm`) and
projected without a bias. Attention is causal except that the tokens of one image see each other
both ways ('causal_bidirectional_images'); local layers see a sliding window, global layers
everything, with their own RoPE wavelengths and linear RoPE scaling on the global ones.

The import records Gemma 3's processor's prompt layout (medpalm_m.convert.processor): a prompt
names each image by `<img>` alone, and preprocessing wraps its 256 slots as the processor does,
`\n\n<start_of_image>` ... `<end_of_image>\n\n`; the chat template's turn markers are text
(`generate --chat` applies them).
"""

from __future__ import annotations

from typing import Any, Mapping

from medpalm_m.convert import gemma, siglip
from medpalm_m.convert.rules import PREFIXES, Rule, copy
from medpalm_m.model.medpalm import ModelConfig

MODEL_TYPE = "gemma3"
# Gemma3Processor's inputs: a bilinear resize, each image wrapped in its delimiters.
IMAGE_RESAMPLE = "bilinear"
PROMPT_LAYOUT = dict(bos_after_images=False, image_open="\n\n<start_of_image>",
                     image_close="<end_of_image>\n\n", prompt_end="")

# Gemma 3 4B's config.json (MedGemma 4B's architecture too) in the keys transformers 4 wrote to the
# Hub: RoPE and the layer pattern as rope_theta, rope_local_base_freq, rope_scaling and
# sliding_window_pattern. What configs plan with before a checkpoint is imported.
HUB_4B_TEXT = dict(
    model_type="gemma3_text", hidden_size=2560, intermediate_size=10240, num_hidden_layers=34,
    num_attention_heads=8, num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256,
    rms_norm_eps=1e-6, sliding_window=1024, sliding_window_pattern=6, rope_theta=1_000_000.0,
    rope_local_base_freq=10_000.0, rope_scaling={"factor": 8.0, "rope_type": "linear"},
    final_logit_softcapping=None, attn_logit_softcapping=None, vocab_size=262_208,
    hidden_activation="gelu_pytorch_tanh")
HUB_4B_VISION = dict(model_type="siglip_vision_model", hidden_size=1152, intermediate_size=4304,
                     num_attention_heads=16, num_hidden_layers=27, image_size=896, patch_size=14,
                     vision_use_head=False)
HUB_4B = dict(model_type=MODEL_TYPE, text_config=HUB_4B_TEXT, vision_config=HUB_4B_VISION,
              mm_tokens_per_image=256, image_token_index=262_144, boi_token_index=255_999,
              eoi_token_index=256_000)


def model_config(hf: Mapping[str, Any], image_token_id: int, where: str) -> dict[str, Any]:
  """Our config.model for a Gemma 3 config.json; `image_token_id` is our image placeholder."""
  for key in ("vision_config", "text_config"):
    if key not in hf:
      raise ValueError(f"{where}: config.json has no {key}")
  if hf.get("tie_word_embeddings", True) is False:
    raise ValueError(f"{where}: tie_word_embeddings is false; medpalm_m shares the input and "
                     "output embedding")
  return dict(vit=siglip.vit_config(hf["vision_config"], where),
              decoder=gemma.decoder_config(hf["text_config"], "gemma3_text", where),
              image_token_id=image_token_id, attention="causal_bidirectional_images",
              projector_bias=False, projector_norm=True,
              image_pool_tokens=int(hf.get("mm_tokens_per_image", 256)))


def hf_image_token_id(hf: Mapping[str, Any]) -> int:
  return int(hf.get("image_token_index", hf.get("image_token_id", 262_144)))


def rules(cfg: ModelConfig) -> list[Rule]:
  p = PREFIXES["projector"][0]
  return siglip.vit_rules(cfg.vit) + gemma.decoder_rules(cfg.decoder) + [
      copy("projector", p + "mm_input_projection_weight", (cfg.vit.width, cfg.decoder.width)),
      copy("projector_norm/scale", p + "mm_soft_emb_norm.weight", (cfg.vit.width,)),
  ]

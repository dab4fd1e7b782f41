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

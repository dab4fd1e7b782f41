"""PaliGemma and PaliGemma 2: SigLIP, a linear projection, and Gemma or Gemma 2.

As transformers' PaliGemmaForConditionalGeneration defines them. The image tokens and the text
prefix attend to each other both ways, the suffix causally: our 'prefix_lm' attention with
mask_ar 0 on the prompt, which is how our preprocessing marks it. Only the text embeddings are
scaled by sqrt(width), the projected image tokens enter as they are.

transformers numbers PaliGemma's RoPE positions from 1, big_vision from 0; RoPE sees only
differences of positions, so the two agree. On Gemma 2's local layers transformers lets the
whole prefix see itself even beyond the sliding window (a prefix longer than the window's 4096
tokens: PaliGemma 2 at 896 px), and so do we (decoder.sliding_window_spares_blocks); big_vision
cuts the prefix too.
"""

from __future__ import annotations

from typing import Any, Mapping

from medpalm_m.convert import gemma, siglip
from medpalm_m.convert.rules import PREFIXES, Rule, copy, transpose
from medpalm_m.model.medpalm import ModelConfig

MODEL_TYPE = "paligemma"


def model_config(hf: Mapping[str, Any], image_token_id: int, where: str) -> dict[str, Any]:
  """Our config.model for a PaliGemma config.json; `image_token_id` is our image placeholder."""
  for key in ("vision_config", "text_config"):
    if key not in hf:
      raise ValueError(f"{where}: config.json has no {key}")
  vit = siglip.vit_config(hf["vision_config"], where)
  decoder = gemma.decoder_config(hf["text_config"], "gemma", where)
  projection_dim = hf.get("projection_dim", hf["vision_config"].get("projection_dim", 2048))
  if projection_dim != decoder["width"]:
    raise ValueError(f"{where}: projection_dim {projection_dim} differs from the text model's "
                     f"hidden_size {decoder['width']}")
  if hf.get("tie_word_embeddings", True) is False:
    raise ValueError(f"{where}: tie_word_embeddings is false; medpalm_m shares the input and "
                     "output embedding")
  if decoder["sliding_window"] is not None:
    decoder["sliding_window_spares_blocks"] = True
  return dict(vit=vit, decoder=decoder, image_token_id=image_token_id, attention="prefix_lm")


def hf_image_token_id(hf: Mapping[str, Any]) -> int:
  return int(hf.get("image_token_index", hf.get("image_token_id", 256_000)))


def rules(cfg: ModelConfig) -> list[Rule]:
  p = PREFIXES["projector"][0] + "linear."
  d, w = cfg.decoder.width, cfg.vit.width
  return siglip.vit_rules(cfg.vit) + gemma.decoder_rules(cfg.decoder) + [
      transpose("projector", p + "weight", (d, w), (w, d)),
      copy("projector_bias", p + "bias", (d,)),
  ]

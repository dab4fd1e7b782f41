"""PaliGemma (Gemma) and PaliGemma 2 (Gemma 2) imported from transformers checkpoints: the same
logits on images and text, the same greedy generations, and the Hub's full-size shapes."""

import numpy as np
import pytest
import torch
import transformers

from medpalm_m.convert import paligemma
from medpalm_m.data import tokenizer as tok
from medpalm_m.model.medpalm import ModelConfig
from tests.convert import parity, reference

FAMILIES = ["paligemma", "paligemma2"]


def prompts(cfg, batch=2, length=24, prefix=10, seed=1):
  """PaliGemma's layout: the image's tokens, BOS, prefix text (bidirectional), suffix (causal)."""
  rng = np.random.default_rng(seed)
  n = cfg.num_image_tokens
  tokens = rng.integers(5, 298, size=(batch, length)).astype(np.int32)
  tokens[:, :n] = tok.IMAGE_ID
  tokens[:, n] = tok.BOS_ID
  images = rng.integers(0, 256, size=(batch, 1, cfg.vit.image_size, cfg.vit.image_size, 3)).astype(np.uint8)
  mask_ar = np.zeros((batch, length), np.int32)
  mask_ar[:, prefix:] = 1
  return tokens, images, mask_ar


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_on_images_and_text_match_transformers(family, checkpoints, imported_models):
  hf_model = checkpoints[family][0]
  model, cfg = imported_models[family]
  assert cfg.attention == "prefix_lm" and cfg.decoder.head_dim * cfg.decoder.num_heads != cfg.decoder.width
  tokens, images, mask_ar = prompts(cfg)
  input_mask = np.ones(tokens.shape, bool)
  input_mask[1, -3:] = False  # a right-padded example
  ours, theirs = parity.logits(model, hf_model, tokens, images, input_mask, mask_ar, token_type_ids=mask_ar)
  difference = np.abs(ours - theirs).max()
  print(f"{family}: max |logit difference| {difference:.2e} (logits up to {np.abs(theirs).max():.1f})")
  assert difference < 1e-4
  # The comparison can fail: the other example's image moves the logits by far more.
  swapped, _ = parity.logits(model, hf_model, tokens, images[::-1], input_mask, mask_ar, mask_ar)
  assert np.abs(swapped - ours).max() > 0.05


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_generation_matches_transformers(family, checkpoints, imported_models):
  hf_model = checkpoints[family][0]
  model, cfg = imported_models[family]
  tokens, images, _ = prompts(cfg, length=10, seed=2)
  prefix_only = np.zeros(tokens.shape, np.int32)  # the whole prompt is the prefix
  ours, theirs = parity.greedy(model, hf_model, tokens, images, prefix_only, prefix_only, max_new_tokens=10)
  assert ours == theirs
  print(family, ours)
  assert ours[0] != ours[1]  # the continuation depends on the prompt and image


def test_paligemma2_fields_are_the_checkpoints_and_the_sliding_window_bites(checkpoints, imported_models):
  hf_model = checkpoints["paligemma2"][0]
  model, cfg = imported_models["paligemma2"]
  d = cfg.decoder
  assert (d.attention_pattern, d.sliding_window, d.query_pre_attn_scalar) == (("local", "global"), 12, 10.0)
  assert (d.attn_logit_softcap, d.final_logit_softcap, d.post_norms, d.norm_eps) == (5.0, 3.0, True, 1e-5)
  # The parity test's sequence is longer than the window, and there the window matters: without
  # it transformers' own logits move far more than ours differ from them.
  tokens, images, mask_ar = prompts(cfg)
  ones = np.ones(tokens.shape, bool)
  ours, windowed = parity.logits(model, hf_model, tokens, images, ones, mask_ar, mask_ar)
  text_config = hf_model.config.text_config
  text_config.sliding_window = 1000
  try:
    _, unwindowed = parity.logits(model, hf_model, tokens, images, ones, mask_ar, mask_ar)
  finally:
    text_config.sliding_window = 12
  assert np.abs(windowed - unwindowed).max() > 1e-2
  assert np.abs(ours - windowed).max() < 1e-4


@pytest.mark.parametrize("text", [
    # PaliGemma 3B (Gemma 2B): the Hub's config.json leaves head_dim and the activation out.
    dict(model_type="gemma", hidden_size=2048, intermediate_size=16384, num_attention_heads=8,
         num_hidden_layers=18, num_key_value_heads=1, vocab_size=257216),
    # PaliGemma 2 3B (Gemma 2 2B).
    dict(model_type="gemma2", hidden_size=2304, intermediate_size=9216, num_attention_heads=8,
         num_hidden_layers=26, num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256,
         sliding_window=4096, vocab_size=257216),
])
def test_full_size_configs_give_exactly_the_transformers_tensor_names_and_shapes(text):
  """The Hub's sizes, without memory (transformers on the meta device): every tensor
  transformers would hold is one our rules read, with the same shape."""
  vision = dict(model_type="siglip_vision_model", hidden_size=1152, intermediate_size=4304,
                num_attention_heads=16, num_hidden_layers=27, patch_size=14, projection_dim=2304,
                vision_use_head=False)
  hf = dict(model_type="paligemma", vision_config=vision, text_config=text,
            projection_dim=text["hidden_size"], image_token_index=257152)
  cfg = ModelConfig.from_dict(paligemma.model_config(hf, tok.IMAGE_ID, "hub config"))
  with torch.device("meta"):
    model = transformers.PaliGemmaForConditionalGeneration(transformers.PaliGemmaConfig(**hf))
  theirs = {k: tuple(v.shape) for k, v in model.state_dict().items() if k != "lm_head.weight"}
  theirs = {reference.hub_name(k): v for k, v in theirs.items()}
  ours = {n: s for rule in paligemma.rules(cfg) for n, s in zip(rule.hf, rule.hf_shapes)}
  assert ours == theirs
  assert cfg.num_image_tokens == 256


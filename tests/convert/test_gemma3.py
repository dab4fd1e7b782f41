"""Gemma 3 multimodal (MedGemma's architecture) imported from a transformers checkpoint: the same
logits and greedy generations with two images per example, pooled image tokens, bidirectional
attention within each image, local and global layers, QK norms, and the Hub's full-size shapes."""

import contextlib
import copy

import numpy as np
import pytest
import torch
import transformers

from medpalm_m.convert import gemma, gemma3
from medpalm_m.data import tokenizer as tok
from medpalm_m.model.medpalm import ModelConfig
from tests.convert import parity, reference

BOI, EOI = 298, 299  # the checkpoint's <start_of_image> and <end_of_image>


def prompts(cfg, batch=2, length=24, seed=3):
  """[BOS] text <boi> image <eoi> text <boi> image <eoi> text: two images per example."""
  rng = np.random.default_rng(seed)
  n = cfg.num_image_tokens
  tokens = rng.integers(5, 298, size=(batch, length)).astype(np.int32)
  tokens[:, 0] = tok.BOS_ID
  for start in (3, 12):
    tokens[:, start - 1], tokens[:, start:start + n], tokens[:, start + n] = BOI, tok.IMAGE_ID, EOI
  size = cfg.vit.image_size
  images = rng.integers(0, 256, size=(batch, 2, size, size, 3)).astype(np.uint8)
  token_type_ids = (tokens == tok.IMAGE_ID).astype(np.int32)
  return tokens, images, token_type_ids


def test_logits_on_two_images_and_text_match_transformers(checkpoints, imported_models):
  hf_model = checkpoints["gemma3"][0]
  model, cfg = imported_models["gemma3"]
  tokens, images, token_type_ids = prompts(cfg)
  input_mask = np.ones(tokens.shape, bool)
  input_mask[1, -2:] = False
  mask_ar = np.ones(tokens.shape, np.int32)  # unused: the attention mode decides
  ours, theirs = parity.logits(model, hf_model, tokens, images, input_mask, mask_ar, token_type_ids)
  difference = np.abs(ours - theirs).max()
  print(f"gemma3: max |logit difference| {difference:.2e} (logits up to {np.abs(theirs).max():.1f})")
  assert difference < 1e-4
  swapped, _ = parity.logits(model, hf_model, tokens, images[:, ::-1], input_mask, mask_ar,
                             token_type_ids)
  assert np.abs(swapped - ours).max() > 0.05


def test_the_gemma3_features_are_the_checkpoints_and_each_one_matters(checkpoints, imported_models):
  hf_model = checkpoints["gemma3"][0]
  model, cfg = imported_models["gemma3"]
  d = cfg.decoder
  assert (cfg.attention, cfg.image_pool_tokens, cfg.projector_norm, cfg.projector_bias) == (
      "causal_bidirectional_images", 4, True, False)
  assert cfg.vit.num_patches == 16  # 56 px / 14: a 4x4 grid averaged in 2x2 windows
  assert (d.attention_pattern, d.sliding_window, d.qk_norm, d.query_pre_attn_scalar) == (
      ("local", "local", "global"), 8, True, 10.0)
  assert (d.rope_max_wavelength, d.local_rope_max_wavelength, d.rope_scale_factor) == (
      1e6, 1e4, 4.0)
  tokens, images, token_type_ids = prompts(cfg)  # the shapes of the test above: compiled once
  ones = np.ones(tokens.shape, bool)
  mask_ar = ones.astype(np.int32)
  ours, reference = parity.logits(model, hf_model, tokens, images, ones, mask_ar, token_type_ids)
  assert np.abs(ours - reference).max() < 1e-4
  # Each feature changes transformers' logits on this input far more than ours differ from
  # them: bidirectional image blocks, the sliding window, the RoPE scaling and local wavelength.
  causal_type_ids = np.zeros_like(token_type_ids)
  rope = hf_model.config.text_config.rope_parameters
  unscaled = {**rope, "full_attention": dict(rope_type="default", rope_theta=1e6)}
  local_like_global = {**rope, "sliding_attention": dict(rope_type="default", rope_theta=1e6)}
  variants = {"image blocks": ({}, causal_type_ids),
              "sliding window": (dict(sliding_window=1000), token_type_ids),
              "rope scaling": (dict(rope_parameters=unscaled), token_type_ids),
              "local wavelength": (dict(rope_parameters=local_like_global), token_type_ids)}
  for name, (changes, type_ids) in variants.items():
    with transformers_variant(hf_model, **changes):
      _, changed = parity.logits(model, hf_model, tokens, images, ones, mask_ar, type_ids)
    assert np.abs(changed - reference).max() > 1e-2, name


@contextlib.contextmanager
def transformers_variant(hf_model, **changes):
  """transformers' model with text_config fields changed (RoPE tables rebuilt), restored after."""
  text_config, language_model = hf_model.config.text_config, hf_model.model.language_model
  saved, rotary = {k: getattr(text_config, k) for k in changes}, language_model.rotary_emb
  for key, value in changes.items():
    setattr(text_config, key, value)
  language_model.rotary_emb = type(rotary)(text_config)
  try:
    yield
  finally:
    for key, value in saved.items():
      setattr(text_config, key, value)
    language_model.rotary_emb = rotary


def test_greedy_generation_matches_transformers(checkpoints, imported_models):
  hf_model = checkpoints["gemma3"][0]
  model, cfg = imported_models["gemma3"]
  tokens, images, token_type_ids = prompts(cfg, length=18, seed=4)
  mask_ar = np.ones(tokens.shape, np.int32)
  ours, theirs = parity.greedy(model, hf_model, tokens, images, mask_ar, token_type_ids,
                               max_new_tokens=10)
  print("gemma3", ours)
  assert ours == theirs
  assert ours[0] != ours[1]


def test_a_full_size_transformers_4_config_reads_as_transformers_reads_it():
  hf = copy.deepcopy(gemma3.HUB_4B)  # transformers may rewrite the dicts it is given
  cfg = ModelConfig.from_dict(gemma3.model_config(hf, tok.IMAGE_ID, "hub config"))
  their_config = transformers.Gemma3Config(**hf)
  text = their_config.text_config
  kinds = {"sliding_attention": "local", "full_attention": "global"}
  assert [cfg.decoder.attention_pattern[i % 6] for i in range(34)] == [kinds[t] for t in text.layer_types]
  assert cfg.decoder.attention_pattern == ("local",) * 5 + ("global",)
  full, sliding = text.rope_parameters["full_attention"], text.rope_parameters["sliding_attention"]
  assert cfg.decoder.rope_max_wavelength == full["rope_theta"]
  assert cfg.decoder.rope_scale_factor == full["factor"]
  assert cfg.decoder.local_rope_max_wavelength == sliding["rope_theta"] and sliding["rope_type"] == "default"
  assert cfg.num_image_tokens == 256 and cfg.vit.num_patches == 64 * 64
  with torch.device("meta"):
    model = transformers.Gemma3ForConditionalGeneration(their_config)
  theirs = {reference.hub_name(k): tuple(v.shape) for k, v in model.state_dict().items()
            if k != "lm_head.weight"}
  ours = {n: s for rule in gemma3.rules(cfg) for n, s in zip(rule.hf, rule.hf_shapes)}
  assert ours == theirs


@pytest.mark.parametrize("change, message", [
    (dict(rope_scaling={"rope_type": "yarn", "factor": 8.0}), "RoPE type 'yarn'"),
    (dict(use_bidirectional_attention=True), "use_bidirectional_attention"),
    (dict(hidden_activation="gelu"), "activation"),
])
def test_unsupported_text_configs_are_refused_by_name(change, message):
  with pytest.raises(ValueError, match=message):
    gemma.decoder_config({**gemma3.HUB_4B_TEXT, **change}, "gemma3_text", "config.json")

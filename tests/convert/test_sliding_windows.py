"""Local layers whose sliding window is shorter than a bidirectional block, as transformers has them:
a Gemma 3 image longer than the window, a PaliGemma 2 prefix (image + prompt) longer than it.
Logits within 1e-4 and the same greedy tokens, in the reference implementation and the blocked
one, on the random checkpoints of conftest.py."""

import numpy as np
import pytest

from tests.convert import parity
from tests.convert.test_gemma3 import prompts as gemma3_prompts, transformers_variant
from tests.convert.test_paligemma import prompts as paligemma_prompts

GEMMA3_WINDOW = 3  # the checkpoint's image is 4 tokens: its last token cannot see its first


def imported_with(workdir: str, **model):
  """Our imported model with config.model keys changed, as `--config.model.KEY=...` changes them."""
  from medpalm_m.runtime import Runtime, load_config
  cfg = load_config(workdir)
  for key, value in model.items():
    section, _, field = key.rpartition(".")
    setattr(cfg.model[section] if section else cfg.model, field, value)
  runtime = Runtime(cfg)
  params, _ = runtime.restore_params(workdir)
  return runtime.template.bind(params), runtime.model_cfg


@pytest.fixture(scope="module")
def gemma3_short_window(checkpoints):
  """{impl: our Gemma 3 with a window shorter than an image}; transformers' is made alike by
  `transformers_variant(hf_model, sliding_window=GEMMA3_WINDOW)`."""
  workdir = checkpoints["gemma3"][2]
  return {impl: imported_with(workdir, **{"decoder.sliding_window": GEMMA3_WINDOW, "attention_impl": impl})
          for impl in ("xla", "blocked")}


@pytest.mark.parametrize("impl", ["xla", "blocked"])
def test_gemma3_image_longer_than_the_window_matches_transformers(impl, checkpoints, gemma3_short_window):
  hf_model = checkpoints["gemma3"][0]
  model, cfg = gemma3_short_window[impl]
  assert cfg.num_image_tokens > cfg.decoder.sliding_window == GEMMA3_WINDOW
  assert not cfg.decoder.sliding_window_spares_blocks
  tokens, images, token_type_ids = gemma3_prompts(cfg)  # text after each image too
  input_mask = np.ones(tokens.shape, bool)
  input_mask[1, -2:] = False
  mask_ar = np.ones(tokens.shape, np.int32)
  with transformers_variant(hf_model, sliding_window=GEMMA3_WINDOW):
    ours, theirs = parity.logits(model, hf_model, tokens, images, input_mask, mask_ar, token_type_ids)
    # The window bites inside the images: without the image blocks transformers' logits move.
    _, causal = parity.logits(model, hf_model, tokens, images, input_mask, mask_ar,
                              np.zeros_like(token_type_ids))
  difference = np.abs(ours - theirs).max()
  print(f"gemma3 window {GEMMA3_WINDOW} < image, {impl}: max |logit difference| {difference:.2e}")
  assert difference < 1e-4
  assert np.abs(causal - theirs).max() > 1e-2


def test_gemma3_greedy_decoding_under_a_window_shorter_than_an_image(checkpoints, gemma3_short_window):
  hf_model = checkpoints["gemma3"][0]
  model, cfg = gemma3_short_window["xla"]
  tokens, images, token_type_ids = gemma3_prompts(cfg, length=18, seed=4)
  with transformers_variant(hf_model, sliding_window=GEMMA3_WINDOW):
    ours, theirs = parity.greedy_with_logprobs(model, hf_model, tokens, images,
                                               np.ones(tokens.shape, np.int32), token_type_ids,
                                               max_new_tokens=12)
  print("gemma3 window 3", ours[0])
  assert_same_greedy_decoding(ours, theirs)


def assert_same_greedy_decoding(ours, theirs):
  """The same tokens, and the same log-probability for each within 1e-4."""
  assert ours[0] == theirs[0]
  assert ours[0][0] != ours[0][1]  # the continuation depends on the prompt and image
  for our_logprobs, their_logprobs in zip(ours[1], theirs[1]):
    np.testing.assert_allclose(our_logprobs, their_logprobs, atol=1e-4, rtol=0)


def long_prefix(cfg, seed=5):
  """PaliGemma's layout with a prefix (image, BOS, prompt) of 18 tokens, window 12, then 6 suffix."""
  tokens, images, mask_ar = paligemma_prompts(cfg, prefix=18, seed=seed)
  assert (mask_ar == 0).sum(axis=1).min() > cfg.decoder.sliding_window
  return tokens, images, mask_ar


@pytest.mark.parametrize("impl", ["xla", "blocked"])
def test_paligemma2_prefix_longer_than_the_window_matches_transformers(impl, checkpoints):
  hf_model, _, workdir, _ = checkpoints["paligemma2"]
  model, cfg = imported_with(workdir, attention_impl=impl)
  assert cfg.decoder.sliding_window_spares_blocks  # the import sets it for PaliGemma 2
  tokens, images, mask_ar = long_prefix(cfg)
  input_mask = np.ones(tokens.shape, bool)
  input_mask[1, -3:] = False
  ours, theirs = parity.logits(model, hf_model, tokens, images, input_mask, mask_ar, mask_ar)
  difference = np.abs(ours - theirs).max()
  print(f"paligemma2 prefix 18 > window 12, {impl}: max |logit difference| {difference:.2e}")
  assert difference < 1e-4


def test_paligemma2_without_sparing_the_prefix_would_differ(checkpoints):
  """The setting matters on this input: cutting the prefix to the window (big_vision's way)
  moves the logits far beyond the tolerance."""
  hf_model, _, workdir, _ = checkpoints["paligemma2"]
  model, cfg = imported_with(workdir, **{"decoder.sliding_window_spares_blocks": False})
  tokens, images, mask_ar = long_prefix(cfg)
  ones = np.ones(tokens.shape, bool)
  ours, theirs = parity.logits(model, hf_model, tokens, images, ones, mask_ar, mask_ar)
  assert np.abs(ours - theirs).max() > 1e-2


def test_paligemma2_greedy_decoding_after_a_prefix_longer_than_the_window(checkpoints, imported_models):
  hf_model = checkpoints["paligemma2"][0]
  model, cfg = imported_models["paligemma2"]
  tokens, images, _ = paligemma_prompts(cfg, length=20, seed=6)
  prefix_only = np.zeros(tokens.shape, np.int32)  # 20 prompt tokens, window 12
  ours, theirs = parity.greedy_with_logprobs(model, hf_model, tokens, images, prefix_only, prefix_only,
                                             max_new_tokens=16)
  print("paligemma2 prefix 20", ours[0])
  assert_same_greedy_decoding(ours, theirs)

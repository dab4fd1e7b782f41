"""KV-cache decoding against full forward passes."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from medpalm_m.data import tokenizer as tok
from medpalm_m.model import decode
from medpalm_m.model.medpalm import MedPaLMM
from tests.model.test_model import IMG, small_config


def prompts(seed=0):
  """Three right-padded prompts of different lengths, one with an image, one text-only."""
  rng = np.random.default_rng(seed)
  length = 14
  tokens = rng.integers(5, 64, size=(3, length)).astype(np.int32)
  tokens[0, 1:5] = IMG
  tokens[2, 3:7] = IMG
  prompt_length = np.array([9, 14, 11], np.int32)
  for b, n in enumerate(prompt_length):
    tokens[b, n:] = tok.PAD_ID
  images = rng.integers(0, 256, size=(3, 1, 16, 16, 3)).astype(np.uint8)
  return tokens, images, prompt_length


def greedy_by_full_forward(model, tokens, images, prompt_length, steps):
  """Reference: append argmax of a full (cache-free) forward pass, one token at a time."""
  width = tokens.shape[1] + steps
  forward = nnx.jit(lambda m, t, i, mask: m(t, i, mask, jnp.ones_like(t)))
  out = []
  for b in range(tokens.shape[0]):
    seq = list(tokens[b, :prompt_length[b]])
    generated = []
    for _ in range(steps):
      padded = np.zeros((1, width), np.int32)
      padded[0, :len(seq)] = seq
      mask = np.arange(width)[None] < len(seq)
      logits = forward(model, jnp.asarray(padded), jnp.asarray(images[b:b + 1]), jnp.asarray(mask))
      nxt = int(jnp.argmax(logits[0, len(seq) - 1]))
      generated.append(nxt)
      seq.append(nxt)
    out.append(generated)
  return np.asarray(out)


def test_cached_greedy_equals_argmax_of_full_forward_passes():
  model = MedPaLMM(small_config(), rngs=nnx.Rngs(1))
  tokens, images, prompt_length = prompts()
  cfg = decode.SamplingConfig(max_new_tokens=6)
  got, logprobs = decode.generate(model, jnp.asarray(tokens), jnp.asarray(images),
                                  jnp.asarray(prompt_length), jnp.ones_like(tokens), cfg, eos_id=-1)
  want = greedy_by_full_forward(model, tokens, images, prompt_length, 6)
  np.testing.assert_array_equal(np.asarray(got), want)
  assert np.all(np.asarray(logprobs) <= 0)


def test_generation_stops_at_eos_and_pads_with_it():
  model = MedPaLMM(small_config(), rngs=nnx.Rngs(1))
  tokens, images, prompt_length = prompts()
  cfg = decode.SamplingConfig(max_new_tokens=6)
  free, _ = decode.generate(model, jnp.asarray(tokens), jnp.asarray(images),
                            jnp.asarray(prompt_length), jnp.ones_like(tokens), cfg, eos_id=-1)
  eos = int(np.asarray(free)[0, 2])  # pretend the third greedy token of example 0 is EOS
  got, _ = decode.generate(model, jnp.asarray(tokens), jnp.asarray(images),
                           jnp.asarray(prompt_length), jnp.ones_like(tokens), cfg, eos_id=eos)
  got = np.asarray(got)
  first = list(got[0]).index(eos)
  assert first <= 2 and (got[0, first:] == eos).all()


def test_sampling_is_seeded_and_top_k_1_is_greedy():
  model = MedPaLMM(small_config(), rngs=nnx.Rngs(1))
  tokens, images, prompt_length = prompts()
  args = (model, jnp.asarray(tokens), jnp.asarray(images), jnp.asarray(prompt_length), jnp.ones_like(tokens))
  greedy, _ = decode.generate(*args, decode.SamplingConfig(max_new_tokens=5), eos_id=-1)
  top1, _ = decode.generate(*args, decode.SamplingConfig(max_new_tokens=5, temperature=1.0, top_k=1),
                            eos_id=-1, key=jax.random.key(3))
  np.testing.assert_array_equal(np.asarray(top1), np.asarray(greedy))
  hot = decode.SamplingConfig(max_new_tokens=5, temperature=5.0, top_p=0.9)
  a, _ = decode.generate(*args, hot, eos_id=-1, key=jax.random.key(0))
  b, _ = decode.generate(*args, hot, eos_id=-1, key=jax.random.key(0))
  c, _ = decode.generate(*args, hot, eos_id=-1, key=jax.random.key(1))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert (np.asarray(a) != np.asarray(c)).any()


def test_prefix_lm_decoding_matches_full_forward_with_prefix_mask():
  model = MedPaLMM(small_config("prefix_lm"), rngs=nnx.Rngs(2))
  tokens, images, prompt_length = prompts()
  mask_ar = np.zeros_like(tokens)
  cfg = decode.SamplingConfig(max_new_tokens=1)
  got, _ = decode.generate(model, jnp.asarray(tokens), jnp.asarray(images), jnp.asarray(prompt_length),
                           jnp.asarray(mask_ar), cfg, eos_id=-1)
  input_mask = np.arange(tokens.shape[1])[None] < prompt_length[:, None]
  logits = model(jnp.asarray(tokens), jnp.asarray(images), jnp.asarray(input_mask), jnp.asarray(mask_ar))
  want = np.asarray(jnp.argmax(logits, -1))[np.arange(3), prompt_length - 1]
  np.testing.assert_array_equal(np.asarray(got)[:, 0], want)


def test_beam_search_width_1_is_greedy_and_wider_beams_score_at_least_as_well():
  model = MedPaLMM(small_config(), rngs=nnx.Rngs(1))
  tokens, images, prompt_length = prompts()
  args = (model, jnp.asarray(tokens), jnp.asarray(images), jnp.asarray(prompt_length), jnp.ones_like(tokens))
  greedy, greedy_logprobs = decode.generate(*args, decode.SamplingConfig(max_new_tokens=5), eos_id=-1)
  beam1, score1 = decode.beam_search(*args, max_new_tokens=5, beam_width=1, eos_id=-1)
  np.testing.assert_array_equal(np.asarray(beam1), np.asarray(greedy))
  np.testing.assert_allclose(np.asarray(score1), np.asarray(greedy_logprobs).sum(1), rtol=1e-5)
  beam4, score4 = decode.beam_search(*args, max_new_tokens=5, beam_width=4, eos_id=-1)
  assert (np.asarray(score4) >= np.asarray(score1) - 1e-5).all()
  # The reported score is the model's own log-likelihood of the returned sequence.
  full = np.concatenate([tokens, np.zeros((3, 5), np.int32)], axis=1)
  for b in range(3):
    n = prompt_length[b]
    full[b, n:n + 5] = np.asarray(beam4)[b]
  mask = np.arange(full.shape[1])[None] < (prompt_length[:, None] + 5)
  loss_mask = mask & (np.arange(full.shape[1])[None] >= prompt_length[:, None])
  want = decode.score_continuations(model, jnp.asarray(full), jnp.asarray(images), jnp.asarray(mask),
                                    jnp.ones_like(full), jnp.asarray(loss_mask))
  np.testing.assert_allclose(np.asarray(score4), np.asarray(want), rtol=1e-4)

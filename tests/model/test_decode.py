"""KV-cache decoding against full forward passes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
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


def cut_at_eos(free: np.ndarray, eos: int) -> np.ndarray:
  """Rows of an EOS-free run as decoding with `eos` writes them: EOS from the first one on."""
  out = free.copy()
  for row in out:
    hits = np.flatnonzero(row == eos)
    if hits.size:
      row[hits[0]:] = eos
  return out


def decode_by_full_forward(model, tokens, images, prompt_length, cfg, eos, key):
  """Reference: all max_new_tokens steps, each a full (cache-free) forward pass of the whole
  batch, the key split once per step; a row that has produced EOS only appends EOS."""
  steps = cfg.max_new_tokens
  width = tokens.shape[1] + steps
  forward = nnx.jit(lambda m, t, i, mask: m(t, i, mask, jnp.ones_like(t)))
  sequences = [list(tokens[b, :n]) for b, n in enumerate(prompt_length)]
  done = np.zeros(len(sequences), bool)
  out = []
  for _ in range(steps):
    padded = np.zeros((len(sequences), width), np.int32)
    for b, seq in enumerate(sequences):
      padded[b, :len(seq)] = seq
    lengths = np.array([len(seq) for seq in sequences])
    mask = np.arange(width)[None] < lengths[:, None]
    logits = forward(model, jnp.asarray(padded), jnp.asarray(images), jnp.asarray(mask))
    key, sub = jax.random.split(key)
    chosen = np.asarray(decode._choose(logits[np.arange(len(sequences)), lengths - 1], sub, cfg))
    chosen = np.where(done, eos, chosen)
    done |= chosen == eos
    for seq, token in zip(sequences, chosen):
      seq.append(int(token))
    out.append(chosen)
  return np.stack(out, axis=1)


def eos_ending_some_rows(free: np.ndarray) -> int:
  """A token that row 0 produces at step 1 and some other row never produces."""
  token = int(free[0, 1])
  assert any(token not in row for row in free[1:]), "pick another seed: every row has the token"
  return token


@pytest.mark.parametrize("sampling", [decode.SamplingConfig(max_new_tokens=8),
                                      decode.SamplingConfig(max_new_tokens=8, temperature=2.0, top_k=20)],
                         ids=["greedy", "sampled"])
def test_stopping_early_gives_the_tokens_of_full_length_decoding(sampling):
  model = MedPaLMM(small_config(), rngs=nnx.Rngs(1))
  tokens, images, prompt_length = prompts()
  args = (model, jnp.asarray(tokens), jnp.asarray(images), jnp.asarray(prompt_length), jnp.ones_like(tokens))
  run = jax.jit(lambda eos, limit: decode.generate(*args, sampling, eos_id=eos, key=jax.random.key(5),
                                                   limit=limit), static_argnums=0)
  free, free_logprobs = (np.asarray(a) for a in run(-1, 8))  # no row ever stops
  np.testing.assert_array_equal(
      free, decode_by_full_forward(model, tokens, images, prompt_length, sampling, -1, jax.random.key(5)))
  eos = eos_ending_some_rows(free)
  got, logprobs = (np.asarray(a) for a in run(eos, 8))
  np.testing.assert_array_equal(
      got, decode_by_full_forward(model, tokens, images, prompt_length, sampling, eos, jax.random.key(5)))
  assert (got[0, 2:] == eos).all() and (got != eos).all(axis=1).any()  # one stops, one never does
  up_to_eos = np.cumsum(got == eos, axis=1) - (got == eos) == 0  # up to and including the first EOS
  np.testing.assert_allclose(logprobs[up_to_eos], free_logprobs[up_to_eos], rtol=1e-5)
  assert (logprobs[~up_to_eos] == 0).all()
  # A traced limit: the first `limit` tokens, then EOS, from the program already compiled.
  limited = np.asarray(run(-1, 3)[0])
  np.testing.assert_array_equal(limited[:, :3], free[:, :3])
  assert (limited[:, 3:] == -1).all() and run._cache_size() == 2  # one program per eos id


def test_beam_search_stops_when_every_beam_has_finished():
  model = MedPaLMM(small_config(), rngs=nnx.Rngs(1))
  tokens, images, prompt_length = prompts()
  args = (model, jnp.asarray(tokens), jnp.asarray(images), jnp.asarray(prompt_length), jnp.ones_like(tokens))
  free, _ = decode.generate(*args, decode.SamplingConfig(max_new_tokens=6), eos_id=-1)
  eos = eos_ending_some_rows(np.asarray(free))
  beam1, _ = decode.beam_search(*args, max_new_tokens=6, beam_width=1, eos_id=eos)
  np.testing.assert_array_equal(np.asarray(beam1), cut_at_eos(np.asarray(free), eos))
  limited, _ = decode.beam_search(*args, max_new_tokens=6, beam_width=3, eos_id=-1, limit=2)
  assert (np.asarray(limited)[:, 2:] == -1).all()


def option_batch(option_ids: list[int], seed: int = 0):
  """The training layout `[prompt] [option EOS] pad` of `prompts()` with one option as target,
  with the masks the preprocessor gives it (prefix: mask_ar 0; target: mask_ar 1 and the loss)."""
  tokens, images, prompt_length = prompts(seed)
  target = list(option_ids) + [tok.EOS_ID]
  width = tokens.shape[1] + len(target)
  full = np.zeros((3, width), np.int32)
  input_mask = np.zeros((3, width), bool)
  mask_ar = np.zeros((3, width), np.int32)
  mask_loss = np.zeros((3, width), bool)
  for b, n in enumerate(prompt_length):
    full[b, :n] = tokens[b, :n]
    full[b, n:n + len(target)] = target
    input_mask[b, :n + len(target)] = True
    mask_ar[b, n:] = 1
    mask_loss[b, n:n + len(target)] = True
  return full, images, prompt_length, input_mask, mask_ar, mask_loss


@pytest.mark.parametrize("attention", ["causal", "prefix_lm", "causal_bidirectional_images"])
def test_options_scored_through_one_prefill_equal_full_forward_passes(attention):
  model = MedPaLMM(small_config(attention), rngs=nnx.Rngs(3))
  options = [[7], [9, 12, 30], [40, 41]]
  width = 4  # room for the longest option and its EOS
  tokens, images, prompt_length = prompts()
  mask_ar = np.zeros_like(tokens)
  cache, last = decode.prefill(model, jnp.asarray(tokens), jnp.asarray(images), jnp.asarray(prompt_length),
                               jnp.asarray(mask_ar), width)
  for option in options:
    continuation = np.zeros((3, width), np.int32)
    continuation[:, :len(option) + 1] = option + [tok.EOS_ID]
    shared = decode.continuation_logprob(model, cache, last, jnp.asarray(prompt_length),
                                         jnp.asarray(continuation), jnp.asarray(continuation > 0))
    full = decode.score_continuations(model, *(jnp.asarray(a) for a in option_batch(option)[:2]),
                                      *(jnp.asarray(a) for a in option_batch(option)[3:]))
    np.testing.assert_allclose(np.asarray(shared), np.asarray(full), atol=1e-5, rtol=1e-5)

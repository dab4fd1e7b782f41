"""Decoding with a KV cache: prefill the multimodal prompt, then extend one token at a time.

Static shapes throughout: prompts are right-padded to a fixed length T, the cache holds T + the
maximum number of new tokens, and generated token t of every example goes into cache slot T + t
(at RoPE position prompt_length + t, so padding between a short prompt and slot T is simply
masked out). One compiled program serves every batch of the same shape: the loop stops when
every row has produced EOS, or at a limit passed as a traced value, so a batch of one-token
answers costs one step and a task's shorter limit compiles nothing new.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from medpalm_m.model.attention import attention_mask
from medpalm_m.model.medpalm import MedPaLMM


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  max_new_tokens: int = 64
  temperature: float = 0.0  # 0 = greedy (the paper's evaluation)
  top_k: int = 0  # 0 = no top-k filter
  top_p: float = 1.0
  # Ids from here on are never sampled (0: every id may be): embedding rows past the tokenizer,
  # which an imported checkpoint never trained as outputs (Gemma 3: 262,208 rows, 262,144 pieces).
  # Greedy decoding keeps the plain argmax, as transformers' does.
  vocab_limit: int = 0


def _choose(logits: jax.Array, key: jax.Array, cfg: SamplingConfig) -> jax.Array:
  if cfg.temperature == 0.0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = logits / cfg.temperature
  if cfg.vocab_limit:
    logits = jnp.where(jnp.arange(logits.shape[-1]) < cfg.vocab_limit, logits, -jnp.inf)
  if cfg.top_k:
    kth = jax.lax.top_k(logits, cfg.top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  if cfg.top_p < 1.0:
    sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
    cumulative = jnp.cumsum(jax.nn.softmax(sorted_logits, axis=-1), axis=-1)
    # Keep the smallest set whose probability reaches top_p (always at least the best token).
    cutoff_index = jnp.sum(cumulative < cfg.top_p, axis=-1, keepdims=True)
    cutoff = jnp.take_along_axis(sorted_logits, cutoff_index, axis=-1)
    logits = jnp.where(logits < cutoff, -jnp.inf, logits)
  return jax.random.categorical(key, logits).astype(jnp.int32)


# Places a KV cache (a list of per-layer dicts, axes `decoder.CACHE_AXES`) on the mesh, e.g. a
# sharding constraint over the batch axes; the identity when decoding runs on one device.
CacheConstraint = Callable[[list], list]


def _unconstrained(cache: list) -> list:
  return cache


def prefill(model: MedPaLMM, tokens, images, prompt_length, mask_ar, max_new_tokens: int,
             constrain_cache: CacheConstraint = _unconstrained):
  """Run the prompt through the model, filling cache slots [0, T) of a cache with room for
  `max_new_tokens` more; returns the cache and the logits at each example's last prompt token."""
  batch, length = tokens.shape
  positions = jnp.arange(length)[None, :]
  input_mask = positions < prompt_length[:, None]
  prompt_mask = attention_mask(input_mask, model.autoregressive_mask(tokens, mask_ar))  # [B, T, T]
  prefill_mask = jnp.pad(prompt_mask, ((0, 0), (0, 0), (0, max_new_tokens)))
  cache = constrain_cache(model.decoder.init_cache(batch, length + max_new_tokens, model.dtype))
  x = model.embed_inputs(tokens, images)
  logits, cache = model.decoder(x, jnp.broadcast_to(positions, (batch, length)), prefill_mask, cache, 0,
                                logits_at=prompt_length - 1)
  return constrain_cache(cache), logits[:, 0]


def _extend(model: MedPaLMM, cache, token, prompt_length, length: int, t):
  """Feed generated token t (into cache slot T + t); returns (next logits [B, V], cache)."""
  total = cache[0]["k"].shape[1]
  slots = jnp.arange(total)[None, :]
  visible = (slots < prompt_length[:, None]) | ((slots >= length) & (slots <= length + t))
  x = model.decoder.embed(token[:, None], model.dtype)
  logits, cache = model.decoder(x, (prompt_length + t)[:, None], visible[:, None, :], cache, length + t)
  return logits[:, 0], cache


def prompt_only(tokens: jax.Array, prompt_length: jax.Array, pad_id: int) -> jax.Array:
  """Rows laid out as for training (prompt, then target) with everything from prompt_length on
  replaced by padding: what decoding starts from, so that it never sees the target."""
  positions = jnp.arange(tokens.shape[1])[None, :]
  return jnp.where(positions < prompt_length[:, None], tokens, pad_id)


def _decode_limit(limit: jax.Array | int | None, max_new_tokens: int) -> jax.Array:
  """How many tokens to decode at most: a traced value, so that a task's shorter limit reuses the
  program compiled for max_new_tokens (the buffers' static width); at least 1."""
  if limit is None:
    return jnp.asarray(max_new_tokens, jnp.int32)
  return jnp.clip(jnp.asarray(limit, jnp.int32), 1, max_new_tokens)


def generate(model: MedPaLMM, tokens: jax.Array, images: jax.Array | None, prompt_length: jax.Array,
             mask_ar: jax.Array, cfg: SamplingConfig, eos_id: int, key: jax.Array | None = None,
             constrain_cache: CacheConstraint = _unconstrained,
             limit: jax.Array | int | None = None) -> tuple[jax.Array, jax.Array]:
  """tokens [B, T] right-padded prompts (ending before the target); prompt_length [B].

  Returns (new tokens [B, max_new_tokens] padded with eos after the first eos, their log-probs,
  0 after the first eos). Decoding stops once every row has produced EOS or `limit` tokens
  (default max_new_tokens) are out: the rest of the buffers stays EOS (log-prob 0), exactly what
  decoding on would have written, so the tokens are those of full-length decoding; the key is
  split once per token as before, so sampling with the same key draws the same tokens.
  """
  cache, logits = prefill(model, tokens, images, prompt_length, mask_ar, cfg.max_new_tokens,
                           constrain_cache)
  return generate_from_prefill(model, cache, logits, prompt_length, tokens.shape[1], cfg, eos_id, key,
                               constrain_cache, limit)


def generate_from_prefill(model: MedPaLMM, cache: list, logits: jax.Array, prompt_length: jax.Array,
                          length: int, cfg: SamplingConfig, eos_id: int, key: jax.Array | None = None,
                          constrain_cache: CacheConstraint = _unconstrained,
                          limit: jax.Array | int | None = None) -> tuple[jax.Array, jax.Array]:
  """`generate` after its prefill: `cache` and `logits` from `prefill` of prompts padded to
  `length`, with room for at least cfg.max_new_tokens; the same tokens as `generate`, so that
  option scoring (`continuation_logprob`) and decoding can share one prefill."""
  batch = logits.shape[0]
  key = key if key is not None else jax.random.key(0)
  limit = _decode_limit(limit, cfg.max_new_tokens)

  def choose(t, logits, done, key, new_tokens, logprobs):
    """Token t of every row (EOS once a row is done), written into the buffers."""
    key, sub = jax.random.split(key)
    token = _choose(logits, sub, cfg)
    logprob = jnp.take_along_axis(jax.nn.log_softmax(logits), token[:, None], axis=-1)[:, 0]
    token = jnp.where(done, eos_id, token)
    logprob = jnp.where(done, 0.0, logprob)
    new_tokens = jax.lax.dynamic_update_slice_in_dim(new_tokens, token[:, None], t, axis=1)
    logprobs = jax.lax.dynamic_update_slice_in_dim(logprobs, logprob[:, None], t, axis=1)
    return token, done | (token == eos_id), key, new_tokens, logprobs

  # Token 0 comes from the prefill's logits; each later token t first feeds token t - 1 through
  # the cache, so no forward pass runs for a token that is never chosen.
  new_tokens = jnp.full((batch, cfg.max_new_tokens), eos_id, jnp.int32)
  logprobs = jnp.zeros((batch, cfg.max_new_tokens), jnp.float32)
  first = choose(0, logits, jnp.zeros((batch,), bool), key, new_tokens, logprobs)

  def unfinished(carry):
    t, _, _, done, *_ = carry
    return (t < limit) & ~jnp.all(done)

  def step(carry):
    t, cache, token, done, key, new_tokens, logprobs = carry
    logits, cache = _extend(model, cache, token, prompt_length, length, t - 1)
    token, done, key, new_tokens, logprobs = choose(t, logits, done, key, new_tokens, logprobs)
    return t + 1, constrain_cache(cache), token, done, key, new_tokens, logprobs

  token, done, key, new_tokens, logprobs = first
  init = (jnp.asarray(1, jnp.int32), cache, token, done, key, new_tokens, logprobs)
  *_, new_tokens, logprobs = jax.lax.while_loop(unfinished, step, init)
  return new_tokens, logprobs


def beam_search(model: MedPaLMM, tokens: jax.Array, images: jax.Array | None, prompt_length: jax.Array,
                mask_ar: jax.Array, max_new_tokens: int, beam_width: int, eos_id: int,
                length_penalty: float = 0.0, constrain_cache: CacheConstraint = _unconstrained,
                limit: jax.Array | int | None = None) -> tuple[jax.Array, jax.Array]:
  """Beam search; returns the best beam's tokens [B, max_new_tokens] and its total log-prob [B].

  Finished beams keep their score and only extend with EOS. Scores are ranked by
  sum(log p) / length**length_penalty (0: plain sum, so width 1 is exactly greedy). The search
  stops once every beam has finished or `limit` tokens (default max_new_tokens) are out: from
  then on every step would only append EOS at no cost.
  """
  batch, length = tokens.shape
  w = beam_width
  cache, last = prefill(model, tokens, images, prompt_length, mask_ar, max_new_tokens, constrain_cache)
  limit = _decode_limit(limit, max_new_tokens)
  # Every example's prompt is shared by its beams: repeat cache and logits W times.
  cache = constrain_cache(jax.tree.map(lambda c: jnp.repeat(c, w, axis=0), cache))
  logits = jnp.repeat(last, w, axis=0)
  lengths_p = jnp.repeat(prompt_length, w)
  scores = jnp.tile(jnp.asarray([0.0] + [-jnp.inf] * (w - 1)), batch)  # one live beam at first
  sequences = jnp.full((batch * w, max_new_tokens), eos_id, jnp.int32)
  done = jnp.zeros((batch * w,), bool)
  generated_len = jnp.zeros((batch * w,), jnp.int32)

  def unfinished(carry):
    t, *_, done, _ = carry
    return (t < limit) & ~jnp.all(done)

  def step(carry):
    t, cache, logits, scores, sequences, done, generated_len = carry
    vocab = logits.shape[-1]
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    eos_only = jnp.full((vocab,), -jnp.inf).at[eos_id].set(0.0)
    logp = jnp.where(done[:, None], eos_only[None, :], logp)
    candidates = (scores[:, None] + logp).reshape(batch, w * vocab)
    top_scores, top_index = jax.lax.top_k(candidates, w)  # [B, W]
    origin = (top_index // vocab + jnp.arange(batch)[:, None] * w).reshape(-1)
    token = (top_index % vocab).reshape(-1).astype(jnp.int32)
    cache = jax.tree.map(lambda c: c[origin], cache)
    sequences = jax.lax.dynamic_update_slice_in_dim(sequences[origin], token[:, None], t, axis=1)
    was_done = done[origin]
    generated_len = generated_len[origin] + (~was_done).astype(jnp.int32)
    done = was_done | (token == eos_id)
    logits, cache = _extend(model, cache, token, lengths_p, length, t)
    return t + 1, cache, logits, top_scores.reshape(-1), sequences, done, generated_len

  init = (jnp.asarray(0, jnp.int32), cache, logits, scores, sequences, done, generated_len)
  _, _, _, scores, sequences, _, generated_len = jax.lax.while_loop(unfinished, step, init)
  ranked = scores / jnp.maximum(generated_len, 1).astype(jnp.float32) ** length_penalty
  best = jnp.argmax(ranked.reshape(batch, w), axis=1) + jnp.arange(batch) * w
  return sequences[best], scores[best]


def continuation_logprob(model: MedPaLMM, cache: list, last_logits: jax.Array, prompt_length: jax.Array,
                         continuation: jax.Array, continuation_mask: jax.Array,
                         length: int | None = None) -> jax.Array:
  """Sum of log-probabilities [B] of `continuation` [B, W] (where continuation_mask [B, W]) after
  each prompt of a `prefill` (its cache and last logits) of prompts padded to `length` (default:
  the cache's slots less W, a cache with room for exactly W new tokens).

  The continuation is teacher-forced in one pass through cache slots T..T+W-1 at RoPE positions
  prompt_length + j, each token seeing the prompt and the continuation up to itself: what a full
  forward of prompt + continuation computes for it (`score_continuations`), without running the
  prompt again. The cache comes back unchanged, so every option of a question reuses it.
  """
  width = continuation.shape[1]
  total = cache[0]["k"].shape[1]
  length = total - width if length is None else length  # the prompt's padded length T
  slots = jnp.arange(total)
  offsets = jnp.arange(width)
  sees_prompt = (slots[None, :] < prompt_length[:, None])[:, None, :]  # [B, 1, S]
  sees_continuation = ((slots[None, :] >= length) & (slots[None, :] - length <= offsets[:, None]))[None]
  x = model.decoder.embed(continuation, model.dtype)
  logits, _ = model.decoder(x, prompt_length[:, None] + offsets[None, :], sees_prompt | sees_continuation,
                            cache, length)
  # The prompt's last logits predict token 0; continuation token j's logits predict token j + 1.
  logits = jnp.concatenate([last_logits[:, None], logits[:, :-1]], axis=1)
  logp = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), continuation[..., None], axis=-1)[..., 0]
  return (logp * continuation_mask).sum(axis=1)


def score_continuations(model: MedPaLMM, tokens: jax.Array, images: jax.Array | None,
                        input_mask: jax.Array, mask_ar: jax.Array, mask_loss: jax.Array) -> jax.Array:
  """Sum of log-probabilities of the target tokens (mask_loss) of each sequence [B]."""
  logits = model(tokens, images, input_mask, mask_ar)
  logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
  target = jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
  return (target * mask_loss[:, 1:]).sum(axis=1)

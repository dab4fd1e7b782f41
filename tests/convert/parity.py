"""Our imported model next to transformers on the same inputs: logits and greedy generation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

from medpalm_m.data import tokenizer as tok
from medpalm_m.model import decode
from tests.convert import reference


def logits(model, hf_model, tokens, images, input_mask, mask_ar, token_type_ids
           ) -> tuple[np.ndarray, np.ndarray]:
  """(ours, transformers') logits at the real (non-padding) positions, both [N, vocab]."""
  ours = np.asarray(_forward(model)(jnp.asarray(tokens), jnp.asarray(images), jnp.asarray(input_mask),
                                    jnp.asarray(mask_ar)))
  with torch.no_grad():
    theirs = hf_model(input_ids=reference.hf_tokens(tokens, tok.IMAGE_ID),
                      pixel_values=reference.pixel_values(_flat(images)),
                      token_type_ids=torch.from_numpy(np.asarray(token_type_ids, np.int64)),
                      attention_mask=torch.from_numpy(input_mask.astype(np.int64))).logits.numpy()
  return ours[input_mask], theirs[input_mask]


_COMPILED: dict[int, object] = {}


def _forward(model):
  """One compiled forward per model: the tests call it several times on the same shapes."""
  if id(model) not in _COMPILED:
    _COMPILED[id(model)] = jax.jit(lambda *inputs: model(*inputs))
  return _COMPILED[id(model)]


def greedy(model, hf_model, tokens, images, mask_ar, token_type_ids, max_new_tokens: int
           ) -> tuple[list[list[int]], list[list[int]]]:
  """Greedy continuations of equal-length prompts, each cut after its first EOS: (ours, theirs)."""
  (ours, _), (theirs, _) = greedy_with_logprobs(model, hf_model, tokens, images, mask_ar, token_type_ids,
                                                max_new_tokens)
  return ours, theirs


def greedy_with_logprobs(model, hf_model, tokens, images, mask_ar, token_type_ids, max_new_tokens: int):
  """((our tokens, their log-probabilities), (their tokens, their log-probabilities)) of greedy
  decoding, each row cut after its first EOS: the log-probabilities show a difference in the
  cached decoding that is too small to change an argmax."""
  batch, length = tokens.shape
  fn = jax.jit(lambda t, i, p, m: decode.generate(
      model, t, i, p, m, decode.SamplingConfig(max_new_tokens=max_new_tokens), tok.EOS_ID))
  ours, our_logprobs = (np.asarray(x) for x in fn(
      jnp.asarray(tokens), jnp.asarray(images), jnp.full((batch,), length, jnp.int32), jnp.asarray(mask_ar)))
  with torch.no_grad():
    out = hf_model.generate(
        input_ids=reference.hf_tokens(tokens, tok.IMAGE_ID),
        pixel_values=reference.pixel_values(_flat(images)),
        token_type_ids=torch.from_numpy(np.asarray(token_type_ids, np.int64)),
        attention_mask=torch.ones(tokens.shape, dtype=torch.long), max_new_tokens=max_new_tokens,
        min_new_tokens=0, do_sample=False, eos_token_id=tok.EOS_ID, pad_token_id=tok.PAD_ID,
        output_logits=True, return_dict_in_generate=True)
  theirs = out.sequences.numpy()[:, length:]
  logits = torch.stack(out.logits, dim=1).float()  # [B, steps, vocab]
  chosen = torch.from_numpy(theirs.astype(np.int64))[..., None]
  their_logprobs = torch.log_softmax(logits, dim=-1).gather(-1, chosen)[..., 0].numpy()
  return _cut(ours, our_logprobs), _cut(theirs, their_logprobs)


def _cut(tokens: np.ndarray, logprobs: np.ndarray) -> tuple[list[list[int]], list[np.ndarray]]:
  rows = [_until_eos(row) for row in tokens]
  return rows, [lp[:len(row)] for row, lp in zip(rows, logprobs)]


def _flat(images: np.ndarray) -> np.ndarray:
  """[B, K, H, W, 3] -> [B * K, H, W, 3] in reading order: transformers takes a batch's images
  as one list (every example here uses all K of its images)."""
  return images.reshape(-1, *images.shape[2:])


def _until_eos(row) -> list[int]:
  row = [int(t) for t in row]
  return row[: row.index(tok.EOS_ID) + 1] if tok.EOS_ID in row else row

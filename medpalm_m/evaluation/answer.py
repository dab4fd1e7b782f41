"""One prompt with its images in, one answer out: what `python -m medpalm_m.generate` prints."""

from __future__ import annotations

import os

import jax
import numpy as np

from medpalm_m import runtime as runtime_lib
from medpalm_m.data import images as images_lib
from medpalm_m.data import preprocess
from medpalm_m.data import tokenizer as tok
from medpalm_m.evaluation.evaluator import Evaluator
from medpalm_m.model import decode


def answer(cfg, workdir: str, prompt: str, image_paths: list[str], *, step: int | None = None,
           sampling: decode.SamplingConfig, beam_width: int = 1, seed: int = 0) -> dict:
  """Greedy (or sampled, or beam-searched) answer of the workdir's checkpoint to `prompt`, whose
  `<img>` placeholders take the images of `image_paths` in order."""
  tokenizer = tok.Tokenizer(runtime_lib.tokenizer_path(cfg))
  runtime = runtime_lib.Runtime(cfg)
  params, step = runtime.restore_params(workdir, step)
  spec = runtime.spec
  # A prompt cut to fit would be another question (or, cut inside an image, none): refused.
  prompt_tokens = len(tokenizer.encode_prompt(prompt, spec.image_slots)[0])
  if prompt_tokens > spec.max_prompt_tokens:
    raise ValueError(f"the prompt is {prompt_tokens} tokens (image slots included), "
                     f"{prompt_tokens - spec.max_prompt_tokens} more than config.data.max_prompt_tokens="
                     f"{spec.max_prompt_tokens}; shorten it, or pass a --config with a larger "
                     "max_prompt_tokens")
  example = {"id": "cli", "task": "cli", "prompt": prompt, "target": "",
             "images": [images_lib.read_image(os.path.expanduser(p)) for p in image_paths]}
  features = preprocess.Preprocessor(tokenizer, spec, {"cli": 0})(example)
  # One prompt: every device (and every process of a multi-host run) decodes the whole batch.
  evaluator = Evaluator(runtime, tokenizer, sampling=sampling, beam_width=beam_width, batch_size=1,
                        data_parallel=False)
  new_tokens, logprobs = evaluator.decode_batch(params, evaluator.global_batch([features]),
                                                jax.random.key(seed))
  ids = [int(i) for i in np.asarray(new_tokens)[0]]
  n = ids.index(tok.EOS_ID) if tok.EOS_ID in ids else len(ids)
  result = {"step": int(step), "answer": tokenizer.decode(ids), "token_ids": ids[:n]}
  if logprobs is not None:
    result["token_probs"] = [float(np.exp(p)) for p in np.asarray(logprobs)[0][:n]]
    result["tokens"] = [tokenizer.sp.id_to_piece(i) for i in ids[:n]]
  return result

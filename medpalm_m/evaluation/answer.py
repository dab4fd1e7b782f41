"""One prompt with its images in, one answer out: what `python -m medpalm_m.generate` prints.

The prompt and images reach the model as the workdir's config says (config.data: image resize,
prompt layout): medpalm_m's own for a model trained here, the checkpoint's processor's for an
imported one. `chat=True` first puts the prompt into the checkpoint's chat template.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from medpalm_m import runtime as runtime_lib
from medpalm_m.data import chat as chat_lib
from medpalm_m.data import images as images_lib
from medpalm_m.data import preprocess
from medpalm_m.data import tokenizer as tok
from medpalm_m.evaluation.evaluator import Evaluator
from medpalm_m.model import decode


def prompt_features(cfg, spec: preprocess.SequenceSpec, tokenizer: tok.Tokenizer, prompt: str,
                    image_paths: list[str], *, chat: bool = False) -> dict[str, np.ndarray]:
  """The model's inputs for `prompt` (with the chat turn around it when `chat`) and the image
  files, one per `<img>` in order: token ids, masks and the resized uint8 pixels."""
  if chat:
    prompt = chat_lib.user_turn(cfg.data.chat_template, prompt)
  # A prompt cut to fit would be another question (or, cut inside an image, none): refused.
  prompt_tokens = len(spec.prompt_layout.prompt_ids(tokenizer, prompt, spec.image_slots)[0])
  if prompt_tokens > spec.max_prompt_tokens:
    raise ValueError(f"the prompt is {prompt_tokens} tokens (image slots included), "
                     f"{prompt_tokens - spec.max_prompt_tokens} more than config.data.max_prompt_tokens="
                     f"{spec.max_prompt_tokens}; shorten it, or pass a --config with a larger "
                     "max_prompt_tokens")
  example = {"id": "cli", "task": "cli", "prompt": prompt, "target": "",
             "images": [images_lib.read_image(os.path.expanduser(p)) for p in image_paths]}
  return preprocess.Preprocessor(tokenizer, spec, {"cli": 0})(example)


def answer(cfg, workdir: str, prompt: str, image_paths: list[str], *, step: int | None = None,
           sampling: decode.SamplingConfig, beam_width: int = 1, seed: int = 0,
           chat: bool = False) -> dict:
  """Greedy (or sampled, or beam-searched) answer of the workdir's checkpoint to `prompt`, whose
  `<img>` placeholders take the images of `image_paths` in order. The answer ends at EOS or at
  one of config.data.stop_token_ids (a chat model's end of turn)."""
  tokenizer = tok.Tokenizer(runtime_lib.tokenizer_path(cfg))
  runtime = runtime_lib.Runtime(cfg)
  params, step = runtime.restore_params(workdir, step)
  features = prompt_features(cfg, runtime.spec, tokenizer, prompt, image_paths, chat=chat)
  # One prompt: every device (and every process of a multi-host run) decodes the whole batch.
  evaluator = Evaluator(runtime, tokenizer, sampling=sampling, beam_width=beam_width, batch_size=1,
                        data_parallel=False)
  new_tokens, logprobs = evaluator.decode_batch(params, evaluator.global_batch([features]),
                                                jax.random.key(seed))
  ids = [int(i) for i in np.asarray(new_tokens)[0]]
  stops = {tok.EOS_ID, *cfg.data.stop_token_ids}
  n = next((k for k, i in enumerate(ids) if i in stops), len(ids))
  result = {"step": int(step), "answer": tokenizer.decode(ids[:n]), "token_ids": ids[:n],
            "tokens": [tokenizer.piece(i) for i in ids[:n]],
            "prompt_token_ids": [int(i) for i in features["tokens"][:features["prompt_length"]]]}
  if logprobs is not None:
    result["token_probs"] = [float(np.exp(p)) for p in np.asarray(logprobs)[0][:n]]
  return result

"""Ask a trained checkpoint a question about images, at a terminal.

    python -m medpalm_m.generate --workdir=DIR --image=scan.dcm --prompt="Given <img>. Q: Is there an effusion? A:"

The workdir's config.json describes the model (or pass --config). Images are PNG, JPEG or DICOM,
one per `<img>` in the prompt, in order. Greedy by default (the paper's evaluation);
--temperature/--top_k/--top_p sample, --beam_width searches. --json prints token ids and their
probabilities too.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags

from medpalm_m.data import images as images_lib
from medpalm_m.data import preprocess
from medpalm_m.data import tokenizer as tok
from medpalm_m.model import decode


def load_config(workdir: str, config=None) -> ml_collections.ConfigDict:
  if config is not None:
    return config
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: pass --config=... or a workdir written by medpalm_m.train")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def answer(cfg, workdir: str, prompt: str, image_paths: list[str], *, step: int | None = None,
           sampling: decode.SamplingConfig, beam_width: int = 1, seed: int = 0) -> dict:
  from medpalm_m.evaluate import load_params
  from medpalm_m.train import sequence_spec
  from medpalm_m.data import synthetic
  data_dir = os.path.expanduser(cfg.data.data_dir)
  tokenizer = tok.Tokenizer(os.path.expanduser(cfg.data.tokenizer) if cfg.data.tokenizer
                            else synthetic.tokenizer_path(data_dir))
  trainer, params, step = load_params(cfg, workdir, step)
  spec = sequence_spec(cfg, trainer.model_cfg)
  example = {"id": "cli", "task": "cli", "prompt": prompt, "target": "",
             "images": [images_lib.read_image(p) for p in image_paths]}
  features = preprocess.Preprocessor(tokenizer, spec, {"cli": 0})(example)
  if features["prompt_truncated"] or features["dropped"]:
    print(f"warning: the prompt is longer than config.data.max_prompt_tokens="
          f"{spec.max_prompt_tokens} and was {'dropped' if features['dropped'] else 'truncated'}",
          file=sys.stderr)
  batch = {k: jnp.asarray(v)[None] for k, v in features.items()}

  # Jitted: one compiled program is several times faster than running the decoding scan op by op.
  @jax.jit
  def run(params, batch, key):
    model = trainer.template.bind(params)
    prompt_only = jnp.where(jnp.arange(spec.length)[None] < batch["prompt_length"][:, None], batch["tokens"], 0)
    if beam_width > 1:
      new_tokens, _ = decode.beam_search(model, prompt_only, batch["images"], batch["prompt_length"],
                                         batch["mask_ar"], sampling.max_new_tokens, beam_width, tok.EOS_ID)
      return new_tokens, None
    return decode.generate(model, prompt_only, batch["images"], batch["prompt_length"],
                           batch["mask_ar"], sampling, tok.EOS_ID, key)

  new_tokens, logprobs = run(params, batch, jax.random.key(seed))
  ids = [int(i) for i in np.asarray(new_tokens)[0]]
  n = ids.index(tok.EOS_ID) if tok.EOS_ID in ids else len(ids)
  result = {"step": int(step), "answer": tokenizer.decode(ids), "token_ids": ids[:n]}
  if logprobs is not None:
    result["token_probs"] = [float(np.exp(p)) for p in np.asarray(logprobs)[0][:n]]
    result["tokens"] = [tokenizer.sp.id_to_piece(i) for i in ids[:n]]
  return result


def main(argv) -> None:
  del argv
  from medpalm_m.train import quiet_libraries
  FLAGS = flags.FLAGS
  quiet_libraries()
  try:
    cfg = load_config(FLAGS.workdir, FLAGS.config)
    sampling = decode.SamplingConfig(max_new_tokens=FLAGS.max_new_tokens, temperature=FLAGS.temperature,
                                     top_k=FLAGS.top_k, top_p=FLAGS.top_p)
    result = answer(cfg, FLAGS.workdir, FLAGS.prompt, FLAGS.image or [], step=FLAGS.step,
                    sampling=sampling, beam_width=FLAGS.beam_width, seed=FLAGS.seed)
  except (FileNotFoundError, ValueError, images_lib.ImageError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  print(json.dumps(result, indent=2) if FLAGS.json else result["answer"])


if __name__ == "__main__":
  from ml_collections import config_flags
  config_flags.DEFINE_config_file("config", None, "Config file; default: the workdir's config.json.")
  flags.DEFINE_string("workdir", None, "Training workdir (checkpoints/ and config.json).", required=True)
  flags.DEFINE_string("prompt", None, "Prompt with one <img> per --image.", required=True)
  flags.DEFINE_multi_string("image", None, "Image file (PNG, JPEG, DICOM); repeat for several.")
  flags.DEFINE_integer("step", None, "Checkpoint step; default: the latest.")
  flags.DEFINE_integer("max_new_tokens", 64, "Most tokens to generate.")
  flags.DEFINE_float("temperature", 0.0, "0 = greedy.")
  flags.DEFINE_integer("top_k", 0, "Sample among the k most likely tokens (0 = all).")
  flags.DEFINE_float("top_p", 1.0, "Nucleus sampling threshold.")
  flags.DEFINE_integer("beam_width", 1, "Beam search when > 1.")
  flags.DEFINE_integer("seed", 0, "Sampling seed.")
  flags.DEFINE_bool("json", False, "Print JSON with token ids and probabilities.")
  app.run(main)

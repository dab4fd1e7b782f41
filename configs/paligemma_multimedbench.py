"""Fine-tune an imported PaliGemma, PaliGemma 2 or MedGemma (Gemma 3) on the real MultiMedBench.

First import the open checkpoint from a local Hugging Face folder (config.json, safetensors,
tokenizer.model):

    python -m medpalm_m.convert import --hf_dir=/ckpt/paligemma2-3b-pt-224 --workdir=/ckpt/pg2

then train from it; the argument after ':' is the imported workdir, which gives the model's
shape, the tokenizer and the starting weights:

    python -m medpalm_m.train --config=configs/paligemma_multimedbench.py:/ckpt/pg2 --workdir=W \\
      --config.data.data_dir=/data/tfds --config.data.manual_dirs.medqa=/dl/MedQA/data_clean ...

`config.init_from` (set here to the imported workdir) is read by the trainer when W has no
checkpoint of its own: the parameters are read from init_from's latest checkpoint straight into
their shards on the mesh and the optimizer state starts fresh. Once W has checkpoints, a restart
resumes from them and init_from is no longer used. `evaluate` and `generate` work on W as on any
run, and on the imported workdir itself (step 0).

Without the ':' argument this is the base config that `medpalm_m.convert import` writes into an
imported workdir around the checkpoint's model (config.model is filled in by the import).

Settings: the paper's 12B recipe where it carries over (Table A.2, §4.2): full fine-tuning,
Adafactor with momentum 0.9, constant learning rate 5e-5, batch 128, dropout 0.1, outputs up to
256 tokens, at most one image per context, the Table A.1 mixture. The 710 input tokens of the
paper hold 256 image slots and 454 text tokens; the same 454 text tokens are kept here on top of
the checkpoint's image tokens (256 for PaliGemma at 224 px and for Gemma 3, 1024 at 448 px).
Untuned for these models: a starting point, not a reproduction.
"""

import json
import os

import ml_collections

from configs import base, paper
from configs.mixtures import multimedbench

_TEXT_TOKENS = 710 - 256  # the paper's input budget without its 256 image slots
# config.data keys `convert import` sets from the checkpoint, which a run from it keeps.
_INPUT_PIPELINE = ("image_resize", "image_resample", "prompt_layout", "chat_template", "stop_token_ids")


def get_config(imported_workdir: str = "") -> ml_collections.ConfigDict:
  c = base.get_config()
  paper.training(c, batch_size=128, learning_rate=5e-5)
  c.data.update(
      data_dir="~/tensorflow_datasets/medpalm_m",
      # Task -> folder of its manual download; empty: already prepared under data_dir.
      manual_dirs={task: "" for task in (*multimedbench.MIXTURE, "pubmedqa")},
      max_prompt_tokens=256 + _TEXT_TOKENS,
      num_workers=8,
  )
  if imported_workdir:
    imported_workdir = os.path.abspath(os.path.expanduser(imported_workdir))
    path = os.path.join(imported_workdir, "config.json")
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path} not found: give the workdir written by "
                              "`python -m medpalm_m.convert import`")
    with open(path) as f:
      imported = json.load(f)
    c.init_from = imported_workdir
    use_model(c, imported["model"])  # the checkpoint's architecture, whole
    c.data.tokenizer = imported["data"]["tokenizer"]  # the imported checkpoint's, with <img> at id 4
    # The checkpoint's own image preprocessing, prompt layout and chat format (a workdir imported
    # before these keys existed has none, and keeps the base's).
    for key in _INPUT_PIPELINE:
      if key in imported["data"]:
        c.data[key] = imported["data"][key]
  c.mesh = dict(data=1, fsdp=-1, tensor=1)
  c.train.update(log_every=50, checkpoint_every=1000, keep_checkpoints=3)
  c.eval.update(batch_size=32, max_decode_tokens=256)
  return c


def use_model(c: ml_collections.ConfigDict, model: dict) -> None:
  """An imported checkpoint's config.model, set up for fine-tuning: bfloat16 compute (parameters
  and optimizer state stay float32), the paper's dropout, full remat; the prompt budget is its
  image tokens plus the paper's 454 text tokens."""
  c.model = model
  c.model.dtype = "bfloat16"
  c.model.decoder.update(dropout=0.1, remat="full")
  c.model.vit.remat = "full"
  # .get: a workdir imported before image_pool_tokens existed does not name it.
  image_tokens = model.get("image_pool_tokens") or (model["vit"]["image_size"] // model["vit"]["patch_size"]) ** 2
  c.data.max_prompt_tokens = image_tokens + _TEXT_TOKENS

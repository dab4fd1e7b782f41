"""A checkpoint's own input pipeline, recorded with its import: how its processor resizes images
and lays out prompts, its chat template and the ids that end a chat answer.

An imported model answers best on the inputs it was trained on, so the import writes them into
the workdir's config.data, which `generate`, `evaluate` and `train` read (medpalm_m.data.preprocess):

- PaliGemma (SiglipImageProcessor): images stretched to the square with PIL's bicubic filter; the
  prompt as `<image> x N [BOS] text \\n`.
- Gemma 3 (Gemma3ImageProcessor): stretched with the bilinear filter, no pan-and-scan; each
  image as `\\n\\n<start_of_image> <image> x N <end_of_image>\\n\\n` inside `[BOS] text`.

Both normalise pixels to [-1, 1] (mean 0.5, std 0.5), as the model does. A folder's
preprocessor_config.json, when there is one, gives the filter and is checked against the rest;
a setting medpalm_m would not reproduce is refused by name.
"""

from __future__ import annotations

import json
import os
from typing import Any

from medpalm_m.data import tokenizer as tok

CHAT_TEMPLATE = "chat_template.jinja"
_PREPROCESSOR = "preprocessor_config.json"
# PIL's Image.Resampling values, as preprocessor_config.json stores them.
_PIL_FILTERS = {2: "bilinear", 3: "bicubic"}
_NORMALISATION = {"image_mean": 0.5, "image_std": 0.5, "rescale_factor": 1 / 255}


def input_pipeline(hf_dir: str, family, image_size: int, workdir: str) -> dict[str, Any]:
  """config.data's input keys for the checkpoint in `hf_dir`; its chat template, if it has one,
  is written to WORKDIR/chat_template.jinja."""
  resample = image_resample(hf_dir, family.IMAGE_RESAMPLE, image_size)
  template = chat_template(hf_dir)
  template_path = ""
  if template is not None:
    template_path = os.path.join(workdir, CHAT_TEMPLATE)
    with open(template_path, "w") as f:
      f.write(template)
  return dict(image_resize="stretch", image_resample=resample,
              prompt_layout=dict(family.PROMPT_LAYOUT), chat_template=template_path,
              stop_token_ids=stop_token_ids(hf_dir))


def image_resample(hf_dir: str, default: str, image_size: int) -> str:
  """The filter of the folder's preprocessor_config.json (the family's when it has none), after
  checking that its other settings are what medpalm_m computes."""
  path = os.path.join(hf_dir, _PREPROCESSOR)
  if not os.path.exists(path):
    return default
  with open(path) as f:
    processor_json = json.load(f)
  for key, expected in _NORMALISATION.items():
    values = processor_json.get(key, expected)
    values = values if isinstance(values, list) else [values]
    if any(abs(float(v) - expected) > 1e-6 for v in values):
      raise ValueError(f"{path}: {key} is {processor_json[key]}; medpalm_m's ViT reads pixels "
                       f"normalised to [-1, 1] ({key} {expected:.6g}) and cannot reproduce this "
                       "processor")
  for key in ("do_pan_and_scan", "do_center_crop"):
    if processor_json.get(key):
      raise ValueError(f"{path}: {key} is true; medpalm_m resizes each image whole, once. Set it "
                       "to false, or use the checkpoint in transformers")
  size = processor_json.get("size") or {}
  sides = {size.get("height", image_size), size.get("width", image_size)}
  if sides != {image_size}:
    raise ValueError(f"{path}: size is {size}, but the vision model's config.json image_size is "
                     f"{image_size}; the two must agree")
  code = processor_json.get("resample")
  if code is None:
    return default
  if code not in _PIL_FILTERS:
    raise ValueError(f"{path}: resample is {code}; medpalm_m supports "
                     f"{', '.join(f'{k} ({v})' for k, v in _PIL_FILTERS.items())}")
  return _PIL_FILTERS[code]


def chat_template(hf_dir: str) -> str | None:
  """The folder's chat template: chat_template.jinja, chat_template.json, or tokenizer_config.json's
  `chat_template` (its "default" when it holds several); None when it has none."""
  jinja = os.path.join(hf_dir, CHAT_TEMPLATE)
  if os.path.exists(jinja):
    with open(jinja) as f:
      return f.read()
  for name in ("chat_template.json", "tokenizer_config.json"):
    path = os.path.join(hf_dir, name)
    if os.path.exists(path):
      with open(path) as f:
        template = json.load(f).get("chat_template")
      if isinstance(template, list):  # [{"name": ..., "template": ...}, ...]
        template = {t["name"]: t["template"] for t in template}.get("default")
      if template:
        return template
  return None


def stop_token_ids(hf_dir: str) -> list[int]:
  """generation_config.json's eos_token_id besides EOS itself: the -it models end a turn with
  <end_of_turn> (id 106 in Gemma's vocabulary)."""
  path = os.path.join(hf_dir, "generation_config.json")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    eos = json.load(f).get("eos_token_id")
  ids = eos if isinstance(eos, list) else [] if eos is None else [eos]
  return sorted({int(i) for i in ids} - {tok.EOS_ID})


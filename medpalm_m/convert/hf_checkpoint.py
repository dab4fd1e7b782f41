"""A Hugging Face checkpoint folder <-> a medpalm_m workdir.

Import reads config.json and the safetensors weights of a PaliGemma, PaliGemma 2 or Gemma 3
(MedGemma) checkpoint and writes a workdir that `evaluate` and `generate` load like any trained
one, and that `train` starts from (config.init_from):

    WORKDIR/config.json      the run config: a base config whose `model` comes from the checkpoint,
                             and whose data section has its processor's image preprocessing, prompt
                             layout and chat format (processor.py)
    WORKDIR/chat_template.jinja  the checkpoint's chat template, when it has one (-it models)
    WORKDIR/checkpoints/0/   orbax: the float32 parameters (no optimizer state)
    WORKDIR/tokenizer.model  the checkpoint's tokenizer with medpalm_m's special ids (tokenizer.py)
    WORKDIR/hf/              the checkpoint's other files (config.json, tokenizer files, index)
    WORKDIR/hf_source.json   each tensor's file, name and dtype as stored, for the export

Export writes a workdir's parameters (the import itself, or a run that started from it) back
into that layout, every tensor in its original file, name and dtype, next to the copied files:
exporting an unchanged import gives back the original bytes. A run with LoRA adapters
(config.model.lora) is exported with each adapter merged into its kernel, W + (alpha / rank) A B,
so the folder loads in transformers as the plain model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from medpalm_m import checkpoint as ckpt_lib
from medpalm_m.convert import gemma3, paligemma, processor, safetensors_io
from medpalm_m.convert.rules import (EMBEDDING, LM_HEAD, CheckpointMismatchError, Layout,
                                     check_tensors)
from medpalm_m.convert.tokenizer import convert_tokenizer
from medpalm_m.data import tokenizer as tok
from medpalm_m.model.lora import LoRAConfig, merge_adapters
from medpalm_m.model.medpalm import ModelConfig
from medpalm_m.model.template import ModelTemplate
from medpalm_m.runtime import Runtime, load_config, write_config

FAMILIES = {paligemma.MODEL_TYPE: paligemma, gemma3.MODEL_TYPE: gemma3}
SOURCE_FILE = "hf_source.json"
HF_FILES = "hf"
TOKENIZER = "tokenizer.model"
# The checkpoint's files besides the weights that travel with it. Nothing else is read: pickled
# weights (*.bin, *.pt) never are.
_COPIED_SUFFIXES = (".json", ".model", ".txt", ".jinja", ".md")


def family_of(hf_config: dict[str, Any], where: str):
  model_type = hf_config.get("model_type")
  if model_type not in FAMILIES:
    raise ValueError(f"{where}: config.json model_type is {model_type!r}; supported: {sorted(FAMILIES)}")
  return FAMILIES[model_type]


def _read_json(path: str) -> dict[str, Any]:
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found")
  with open(path) as f:
    return json.load(f)


def import_checkpoint(hf_dir: str, workdir: str,
                      base_config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Convert the checkpoint in `hf_dir` into a new workdir; returns a summary with timings."""
  start = time.perf_counter()
  hf_dir, workdir = os.path.abspath(hf_dir), os.path.abspath(workdir)
  if os.path.exists(os.path.join(workdir, "checkpoints")):
    raise FileExistsError(f"{workdir} already has checkpoints/; import into a new workdir")
  hf_config = _read_json(os.path.join(hf_dir, "config.json"))
  family = family_of(hf_config, hf_dir)
  if not os.path.exists(os.path.join(hf_dir, TOKENIZER)):
    # Without it the workdir would fall back to the synthetic benchmark's tokenizer, whose ids
    # mean nothing to this model.
    raise FileNotFoundError(f"{hf_dir} has no {TOKENIZER}, the checkpoint's SentencePiece "
                            f"tokenizer; copy it from the checkpoint's Hub repository into {hf_dir}")
  model_dict = family.model_config(hf_config, tok.IMAGE_ID, hf_dir)
  model_cfg = ModelConfig.from_dict(model_dict)

  files = safetensors_io.WeightFiles(hf_dir)
  layout, file_names, unknown = Layout.detect(files.names, hf_dir)
  shapes = {hub: files.shape[name] for hub, name in file_names.items()}
  tied_head = shapes.pop(LM_HEAD, None) is not None
  rules = family.rules(model_cfg)
  check_tensors(rules, shapes, layout, unknown, hf_dir)
  if tied_head and not np.array_equal(files.load(file_names[LM_HEAD]),
                                      files.load(file_names[EMBEDDING])):
    raise CheckpointMismatchError(f"{hf_dir}: {file_names[LM_HEAD]} differs from "
                                  f"{file_names[EMBEDDING]}; medpalm_m shares the output embedding")
  params = {}
  for rule in rules:
    arrays = [files.load(file_names[hub]) for hub in rule.hf]
    params[rule.ours] = np.asarray(rule.to_ours(*arrays), dtype=np.float32)
  _check_covers_model(params, model_cfg)
  convert_seconds = time.perf_counter() - start

  os.makedirs(workdir, exist_ok=True)
  cfg = base_config.to_dict()
  cfg["model"], cfg["init_from"] = model_dict, ""
  replaced_piece = convert_tokenizer(os.path.join(hf_dir, TOKENIZER), os.path.join(workdir, TOKENIZER))
  cfg["data"]["tokenizer"] = os.path.join(workdir, TOKENIZER)
  inputs = processor.input_pipeline(hf_dir, family, model_cfg.vit.image_size, workdir)
  cfg["data"].update(inputs)
  cfg = ml_collections.ConfigDict(cfg)
  _save(cfg, workdir, params, hf_dir)
  copied = _copy_files(hf_dir, os.path.join(workdir, HF_FILES))
  record = {
      "family": family.MODEL_TYPE, "source": hf_dir, "layout": layout.prefixes,
      "hf_image_token_id": family.hf_image_token_id(hf_config),
      "tied_lm_head": file_names.get(LM_HEAD),
      "tensors": {name: {"file": files.file_of[name], "dtype": files.dtype[name]} for name in files.names},
      "file_metadata": files.file_metadata,
  }
  with open(os.path.join(workdir, SOURCE_FILE), "w") as f:
    json.dump(record, f, indent=2)
  return {"family": family.MODEL_TYPE, "workdir": workdir, "tensors": len(files.names),
          "parameters": int(sum(p.size for p in params.values())), "copied_files": copied,
          "tokenizer": cfg.data.tokenizer, "tokenizer_id4_was": replaced_piece,
          "inputs": inputs, "convert_seconds": convert_seconds,
          "total_seconds": time.perf_counter() - start}


def _check_covers_model(params: dict[str, np.ndarray], cfg: ModelConfig) -> None:
  """The rules must produce exactly the model's parameters (a bug here is ours, not the user's)."""
  _, abstract = ModelTemplate.abstract(cfg)
  expected = {k: tuple(v.shape) for k, v in abstract.items()}
  produced = {k: tuple(v.shape) for k, v in params.items()}
  if expected != produced:
    diff = sorted(set(expected.items()) ^ set(produced.items()))
    raise AssertionError(f"conversion rules and model disagree on: {diff[:10]}")


def _save(cfg: ml_collections.ConfigDict, workdir: str, params: dict[str, np.ndarray], hf_dir: str) -> None:
  """config.json and checkpoint step 0: the parameters alone, each placed in its shard. No
  optimizer state: a run that starts from the import (config.init_from, or `train` in this very
  workdir) starts its optimizer fresh, and the checkpoint is half the size of params + momentum."""
  runtime = Runtime(cfg)
  state = {"params": {k: jax.device_put(v, runtime.param_shardings[k]) for k, v in params.items()}}
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
  meta = {"params": ckpt_lib.param_signature(state["params"]), "tasks": [], "mixture": {},
          "imported_from": hf_dir}
  checkpointer.save(0, state, None, meta, force=True)
  checkpointer.close()
  write_config(cfg, workdir)


def _copy_files(source: str, destination: str) -> list[str]:
  os.makedirs(destination, exist_ok=True)
  copied = []
  for name in sorted(os.listdir(source)):
    path = os.path.join(source, name)
    if os.path.isfile(path) and name.endswith(_COPIED_SUFFIXES):
      shutil.copy2(path, os.path.join(destination, name))
      copied.append(name)
  return copied


def source_dir(workdir: str, cfg: ml_collections.ConfigDict, source: str | None = None) -> str:
  """The imported workdir a workdir's weights descend from: itself, or config.init_from."""
  candidates = [source] if source else [workdir, cfg.init_from]
  for candidate in candidates:
    if candidate and os.path.exists(os.path.join(os.path.expanduser(candidate), SOURCE_FILE)):
      return os.path.abspath(os.path.expanduser(candidate))
  raise FileNotFoundError(f"no {SOURCE_FILE} in {' or '.join(c for c in candidates if c)}: export needs "
                          "the workdir `python -m medpalm_m.convert import` wrote (pass --source=...)")


def _architecture(cfg: ModelConfig) -> ModelConfig:
  """The config without what changes neither the exported weights' shapes nor the function
  (dtype, remat, dropout, and LoRA adapters, which the export merges into their kernels)."""
  return dataclasses.replace(
      cfg, dtype="float32", lora=LoRAConfig(),
      vit=dataclasses.replace(cfg.vit, remat="none", dropout=0.0),
      decoder=dataclasses.replace(cfg.decoder, remat="none", dropout=0.0))


def export_checkpoint(workdir: str, out_dir: str, *, step: int | None = None,
                      source: str | None = None) -> dict[str, Any]:
  """Write `workdir`'s parameters (its latest step, or `step`) as a Hugging Face folder."""
  start = time.perf_counter()
  workdir, out_dir = os.path.abspath(workdir), os.path.abspath(out_dir)
  cfg = load_config(workdir)
  origin = source_dir(workdir, cfg, source)
  record = _read_json(os.path.join(origin, SOURCE_FILE))
  hf_config = _read_json(os.path.join(origin, HF_FILES, "config.json"))
  family = FAMILIES[record["family"]]
  model_cfg = ModelConfig.from_dict(cfg.model)
  imported = ModelConfig.from_dict(family.model_config(hf_config, tok.IMAGE_ID, origin))
  if _architecture(model_cfg) != _architecture(imported):
    ours, theirs = dataclasses.asdict(_architecture(model_cfg)), dataclasses.asdict(_architecture(imported))
    raise ValueError(f"{workdir}: config.model is not the architecture of {origin}'s config.json; "
                     f"the export would mislabel the weights. config.model: {ours}; "
                     f"config.json: {theirs}")

  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
  step = step if step is not None else checkpointer.latest_step()
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {checkpointer.directory}")
  _, abstract = ModelTemplate.abstract(model_cfg)
  params = merge_adapters(checkpointer.restore_params(step, abstract), model_cfg.lora)
  checkpointer.close()

  layout = Layout(record["layout"])
  stored = record["tensors"]
  tensors = {}
  for rule in family.rules(model_cfg):
    for hub, array in zip(rule.hf, rule.to_hf(np.asarray(params[rule.ours]))):
      name = layout.file_name(hub)
      tensors[name] = array.astype(safetensors_io.numpy_dtype(stored[name]["dtype"]))
  head = record["tied_lm_head"]
  if head:
    embedding = tensors[layout.file_name(EMBEDDING)]
    tensors[head] = embedding.astype(safetensors_io.numpy_dtype(stored[head]["dtype"]))
  missing = sorted(set(stored) - set(tensors))
  if missing:
    raise AssertionError(f"export produced no value for {missing[:10]}")
  written = safetensors_io.write(out_dir, tensors, {n: stored[n]["file"] for n in tensors},
                                 record["file_metadata"])
  copied = _copy_files(os.path.join(origin, HF_FILES), out_dir)
  return {"family": record["family"], "step": int(step), "out_dir": out_dir,
          "weight_files": written, "copied_files": copied, "seconds": time.perf_counter() - start}

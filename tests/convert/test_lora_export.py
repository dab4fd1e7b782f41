"""configs/medgemma_lora.py on an imported (random, small) MedGemma: the run starts as the
imported model, trains its adapters only, and `convert export` merges them into a checkpoint
that transformers loads as a plain Gemma 3 with the LoRA model's logits."""

import dataclasses

import jax
import numpy as np
import torch
import transformers

from medpalm_m.model.lora import LoRAConfig, is_adapter, merge_adapters
from medpalm_m.model.template import ModelTemplate
from tests.convert import parity
from tests.convert.test_gemma3 import prompts
from tests.convert.test_roundtrip import saved_and_exported, training_batch


def lora_config(imported: str):
  from configs import medgemma_lora
  cfg = medgemma_lora.get_config(imported)
  cfg.mesh = dict(data=-1, fsdp=1, tensor=1)
  cfg.model.dtype = "float32"
  cfg.model.vit.remat = cfg.model.decoder.remat = "none"  # parity.logits jits a bound module
  cfg.data.update(max_prompt_tokens=24, max_target_tokens=8)
  cfg.train.update(batch_size=2, grad_accum_steps=1)
  cfg.optimizer.update(learning_rate=3e-2, warmup_steps=0, schedule="constant")
  return cfg


def test_a_lora_run_exports_merged_into_a_checkpoint_transformers_loads(checkpoints, tmp_path):
  from medpalm_m.trainer import Trainer
  hf_model, _, imported, _ = checkpoints["gemma3"]
  cfg = lora_config(imported)
  trainer = Trainer(cfg, num_tasks=1)
  state = trainer.init_state_from(cfg.init_from)  # the import has no adapters: they start fresh
  start = jax.device_get(state["params"])
  adapters = sorted(k for k in start if is_adapter(k))
  assert len(adapters) == 2 * 7 * trainer.model_cfg.decoder.depth  # A, B of every decoder kernel
  assert all(not start[k].any() for k in adapters if k.endswith("/b"))

  tokens, images, token_type_ids = prompts(trainer.model_cfg)
  ones, mask_ar = np.ones(tokens.shape, bool), np.ones(tokens.shape, np.int32)
  target = np.repeat((np.arange(tokens.shape[1]) >= 20)[None], 2, axis=0)
  batch = training_batch(tokens, images, mask_ar, target)
  for _ in range(3):
    state, metrics = trainer.train_step(state, trainer.global_batch(batch))
  assert np.isfinite(float(metrics["loss"]))
  params = jax.device_get(state["params"])
  assert all(params[k].tobytes() == start[k].tobytes() for k in start if not is_adapter(k))
  assert all(params[k].any() for k in adapters if k.endswith("/b"))

  exported = saved_and_exported(cfg, state, tmp_path)

  unmerged = trainer.template.bind(params)
  plain, _ = ModelTemplate.abstract(dataclasses.replace(trainer.model_cfg, lora=LoRAConfig()))
  merged = plain.bind(merge_adapters(params, trainer.model_cfg.lora))
  tuned = transformers.Gemma3ForConditionalGeneration.from_pretrained(
      exported, attn_implementation="eager").eval()
  ours, theirs = parity.logits(unmerged, tuned, tokens, images, ones, mask_ar, token_type_ids)
  ours_merged, before = parity.logits(merged, hf_model, tokens, images, ones, mask_ar, token_type_ids)
  print(f"LoRA export: |merged - unmerged| {np.abs(ours_merged - ours).max():.1e}, "
        f"|transformers - ours| {np.abs(theirs - ours).max():.1e}, "
        f"changed by training {np.abs(before - ours).max():.2f}")
  assert np.abs(ours_merged - ours).max() < 1e-5
  assert np.abs(theirs - ours).max() < 1e-4  # the tolerance of every transformers parity test
  assert np.abs(before - ours).max() > 1e-2  # the adapters trained into something else
  assert not any(name.endswith(("lora_A.weight", "lora_B.weight")) for name, _ in tuned.named_parameters())
  changed = {name for name, p in tuned.named_parameters()
             if not torch.equal(p, dict(hf_model.named_parameters())[name])}
  assert changed and all(".layers." in name and name.endswith("proj.weight") for name in changed)

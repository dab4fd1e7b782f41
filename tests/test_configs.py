"""Every config under configs/ is configs/base.py plus overrides: no key the base does not declare,
and the code reads each key without a fallback default of its own."""

import importlib
import os
import re

import jax
import ml_collections
import pytest

from configs import base

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Helpers of the experiment configs, not experiments.
NOT_EXPERIMENTS = {"base", "paper", "__init__"}
EXPERIMENTS = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "configs"))
                     if f.endswith(".py") and f[:-3] not in NOT_EXPERIMENTS)
# Values that are whole, not schemas: their keys are data (task names, regexes, axis names).
FREE_FORM = {"data.mixture", "data.opening.mixture", "data.manual_dirs", "data.builder_options",
             "data.augmentation.ops", "data.upsample", "train.task_loss_weights",
             "optimizer.lr_multipliers", "evals"}


def keys(tree, prefix=""):
  out = set()
  for key in tree.keys():
    path = f"{prefix}{key}"
    out.add(path)
    value = tree[key]
    if isinstance(value, (dict, ml_collections.ConfigDict)) and path not in FREE_FORM:
      out |= keys(value, path + ".")
  return out


BASE_KEYS = keys(base.get_config())


def test_experiments_are_found():
  assert {"tiny", "medpalm_m_12b", "medpalm_m_84b", "medpalm_m_562b"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_key_of_every_config_is_declared_by_the_base(name):
  cfg = importlib.import_module(f"configs.{name}").get_config()
  undeclared = sorted(keys(cfg) - BASE_KEYS)
  assert not undeclared, f"configs/{name}.py sets keys configs/base.py does not declare: {undeclared}"


@pytest.mark.parametrize("name", ["paligemma_multimedbench", "medgemma_lora"])
def test_an_imported_workdir_config_is_declared_too(name, tmp_path):
  """paligemma_multimedbench.py:WORKDIR (and medgemma_lora.py:WORKDIR) takes the model an import
  wrote, whole."""
  import json

  imported = base.get_config()
  imported.model.update(vit=dict(image_size=224, patch_size=14, width=32, depth=1, num_heads=2,
                                 mlp_dim=64),
                        decoder=dict(vocab_size=300, width=32, depth=2, num_heads=2, num_kv_heads=1,
                                     head_dim=16, mlp_dim=64), image_token_id=4)
  imported.data.tokenizer = str(tmp_path / "tokenizer.model")
  (tmp_path / "config.json").write_text(imported.to_json_best_effort())
  cfg = importlib.import_module(f"configs.{name}").get_config(str(tmp_path))
  assert cfg.init_from == str(tmp_path) and cfg.model.decoder.vocab_size == 300
  assert cfg.data.max_prompt_tokens == 256 + 454
  assert not sorted(keys(cfg) - BASE_KEYS)
  json.loads(cfg.to_json_best_effort())


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_evaluation_suite_has_the_schema_and_registered_tasks(name):
  """config.evals' keys are suite names; each suite is configs/base.py's eval_suite, whole."""
  from medpalm_m.data import tasks
  cfg = importlib.import_module(f"configs.{name}").get_config()
  schema = set(base.eval_suite(["t"], max_decode_tokens=1))
  for suite_name, suite in cfg.evals.items():
    assert set(suite) == schema, f"configs/{name}.py: suite {suite_name} has {sorted(suite)}"
    for task in suite.tasks:
      tasks.get(task)


def test_the_paper_configs_have_a_multimedbench_and_a_zero_shot_suite():
  for name in PAPER_RECIPES:
    cfg = importlib.import_module(f"configs.{name}").get_config()
    assert len(cfg.evals.multimedbench.tasks) == 14 and "pubmedqa" in cfg.evals.multimedbench.tasks
    assert {"montgomery_tb", "mimic_cxr_two_view"} <= set(cfg.evals.zero_shot.tasks)
    assert cfg.evals.zero_shot.max_images == 2
  ablation = importlib.import_module("configs.medpalm_m_84b").get_config("multimedbench_without_cxr_classification")
  assert "mimic_cxr_classification" not in ablation.data.mixture
  assert "mimic_cxr_classification" in ablation.evals.multimedbench.tasks  # still evaluated


def test_the_check_sees_an_undeclared_key():
  cfg = base.get_config()
  cfg.train.num_stepz = 3
  assert keys(cfg) - BASE_KEYS == {"train.num_stepz"}


_FALLBACK = re.compile(r"\b(cfg|config)(\.\w+)*\.get\(")


def test_the_code_reads_config_keys_without_fallback_defaults():
  found = []
  for directory, _, files in os.walk(os.path.join(ROOT, "medpalm_m")):
    for file in files:
      if file.endswith(".py"):
        path = os.path.join(directory, file)
        for number, line in enumerate(open(path), 1):
          if _FALLBACK.search(line):
            found.append(f"{os.path.relpath(path, ROOT)}:{number}: {line.strip()}")
  assert not found, "a config key has one default, in configs/base.py:\n" + "\n".join(found)


# Tu et al. 2023, Table A.2 and Section 4.2; the ViTs of PaLI (ViT-e) and Dehghani et al. (ViT-22B).
PAPER_RECIPES = {
    "medpalm_m_12b": dict(batch_size=128, learning_rate=5e-5, vit="vit_e"),
    "medpalm_m_84b": dict(batch_size=128, learning_rate=5e-5, vit="vit_22b"),
    "medpalm_m_562b": dict(batch_size=256, learning_rate=2.5e-5, vit="vit_22b"),
}
VITS = {
    "vit_e": dict(width=1792, depth=56, mlp_dim=15360, num_heads=16, patch_size=14, block="sequential",
                  qk_norm=False, qkv_bias=True, norm_bias=True),
    "vit_22b": dict(width=6144, depth=48, mlp_dim=24576, num_heads=48, patch_size=14, block="parallel",
                    qk_norm=True, qkv_bias=False, norm_bias=False),
}


def learning_rates(cfg) -> set[float]:
  """Every parameter's learning rate at steps 0 and 10^6, from the abstract model (no allocation)."""
  from flax import nnx

  from medpalm_m.model.medpalm import ModelConfig
  from medpalm_m.model.template import abstract_model
  from medpalm_m.trainer import optimizer
  abstract = abstract_model(ModelConfig.from_dict(cfg.model))
  factors = optimizer.parameter_multipliers(dict(cfg.optimizer.lr_multipliers), nnx.state(abstract, nnx.Param))
  schedule = optimizer.learning_rate_schedule(cfg)
  return {float(schedule(step)) * f for step in (0, 10**6) for f in jax.tree.leaves(factors)}


@pytest.mark.parametrize("name", sorted(PAPER_RECIPES))
def test_paper_configs_are_the_papers_recipe(name):
  recipe = PAPER_RECIPES[name]
  cfg = importlib.import_module(f"configs.{name}").get_config()
  assert (cfg.optimizer.name, cfg.optimizer.b1, cfg.optimizer.schedule) == ("adafactor", 0.9, "constant")
  assert (cfg.train.batch_size, cfg.train.grad_accum_steps) == (recipe["batch_size"], 1)
  assert (cfg.model.decoder.dropout, cfg.model.vit.dropout) == (0.1, 0.1)
  assert (cfg.data.max_prompt_tokens, cfg.data.max_target_tokens, cfg.data.max_images) == (710, 256, 1)
  assert cfg.eval.max_decode_tokens == 256
  assert cfg.optimizer.freeze == ""
  assert cfg.data.every_task_per_batch and not cfg.data.packing.enabled
  assert sorted(cfg.data.augmentation.ops) == ["cbis_ddsm_calc", "cbis_ddsm_mass", "pad_ufes_20", "vindr_mammo"]
  # One constant rate for every parameter, ViT and projector included.
  assert learning_rates(cfg) == {recipe["learning_rate"]}
  assert {k: cfg.model.vit[k] for k in VITS[recipe["vit"]]} == VITS[recipe["vit"]]


def test_the_rate_check_sees_a_second_rate():
  cfg = importlib.import_module("configs.tiny").get_config()  # its ViT blocks train at 0.3x
  cfg.optimizer.update(schedule="constant", warmup_steps=0)
  assert learning_rates(cfg) == {3e-3, 3e-3 * 0.3}


def test_the_grafting_config_trains_only_a_fresh_adapter_between_loaded_towers():
  """configs/grafting.py: ViT and decoder from init_from and frozen; the adapter (the attention
  pooler and the projector) initialised fresh and the only trained part, on the synthetic mixture."""
  from medpalm_m.model.medpalm import ModelConfig
  from medpalm_m.model.template import ModelTemplate
  from medpalm_m.trainer import state
  from medpalm_m.trainer.optimizer import partition
  from configs.mixtures import synthetic
  cfg = importlib.import_module("configs.grafting").get_config()
  assert cfg.init_from and dict(cfg.data.mixture) == synthetic.MIXTURE
  model_cfg = ModelConfig.from_dict(cfg.model)
  assert model_cfg.adapter == "attention_pooler"
  _, params = ModelTemplate.abstract(model_cfg)
  trained, frozen = partition(cfg, params)
  assert set(trained) == state.fresh_parameters(cfg, params)  # what trains starts fresh
  assert {n.split("/")[0] for n in trained} == {"projector", "projector_bias", "adapter"}
  assert {n.split("/")[0] for n in frozen} == {"vit", "decoder"}
  # The decoder gets as many image tokens per example as in the default run it was trained in.
  tiny = importlib.import_module("configs.tiny").get_config()
  assert model_cfg.num_image_tokens == ModelConfig.from_dict(tiny.model).num_image_tokens

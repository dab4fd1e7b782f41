"""Every config under configs/ is configs/base.py plus overrides: no key the base does not declare,
and the code reads each key without a fallback default of its own."""

import importlib
import os
import re

import ml_collections
import pytest

from configs import base

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Helpers of the experiment configs, not experiments.
NOT_EXPERIMENTS = {"base", "paper", "__init__"}
EXPERIMENTS = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "configs"))
                     if f.endswith(".py") and f[:-3] not in NOT_EXPERIMENTS)
# Values that are whole, not schemas: their keys are data (task names, regexes, axis names).
FREE_FORM = {"data.mixture", "data.manual_dirs", "optimizer.lr_multipliers"}


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


def test_an_imported_workdir_config_is_declared_too(tmp_path):
  """paligemma_multimedbench.py:WORKDIR takes the model an import wrote, whole."""
  import json

  from configs import paligemma_multimedbench
  imported = base.get_config()
  imported.model.update(vit=dict(image_size=224, patch_size=14, width=32, depth=1, num_heads=2,
                                 mlp_dim=64),
                        decoder=dict(vocab_size=300, width=32, depth=2, num_heads=2, num_kv_heads=1,
                                     head_dim=16, mlp_dim=64), image_token_id=4)
  imported.data.tokenizer = str(tmp_path / "tokenizer.model")
  (tmp_path / "config.json").write_text(imported.to_json_best_effort())
  cfg = paligemma_multimedbench.get_config(str(tmp_path))
  assert cfg.init_from == str(tmp_path) and cfg.model.decoder.vocab_size == 300
  assert cfg.data.max_prompt_tokens == 256 + 454
  assert not sorted(keys(cfg) - BASE_KEYS)
  json.loads(cfg.to_json_best_effort())


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

"""The runtime: parameters restored without any optimizer, configs read back over the base."""

import json
import os

import jax
import numpy as np
import pytest

from medpalm_m import checkpoint as ckpt_lib
from medpalm_m import runtime
from medpalm_m.model.medpalm import ModelConfig
from medpalm_m.trainer import Trainer
from tests import small_config


def test_restored_parameters_equal_the_train_states_and_build_no_optimizer(evaluated_workdir, monkeypatch):
  cfg = runtime.load_config(evaluated_workdir)
  # Building an optimizer anywhere on this path would be the old twin of the trainer.
  import medpalm_m.trainer.optimizer as optimizer
  monkeypatch.setattr(optimizer, "make_optimizer", lambda *a, **k: pytest.fail("optimizer built"))
  rt = runtime.Runtime(cfg)
  params, step = rt.restore_params(evaluated_workdir)
  monkeypatch.undo()
  assert step == 4
  trainer = Trainer(cfg, num_tasks=len(cfg.data.mixture))
  checkpointer = ckpt_lib.Checkpointer(os.path.join(evaluated_workdir, "checkpoints"), async_save=False)
  state, _ = checkpointer.restore(4, trainer.abstract_state, None, trainer.abstract_state["params"])
  checkpointer.close()
  assert set(params) == set(state["params"])
  for name, value in params.items():
    assert value.sharding == rt.param_shardings[name]
    np.testing.assert_array_equal(jax.device_get(value), jax.device_get(state["params"][name]))


def test_restoring_from_an_empty_workdir_names_it(tmp_path):
  rt = runtime.Runtime(small_config.get_config())
  with pytest.raises(FileNotFoundError, match="no checkpoint in .*checkpoints; train first"):
    rt.restore_params(str(tmp_path))


def test_a_workdir_config_is_read_over_the_base(tmp_path):
  """A config.json written before a key existed still has that key (its base default); whole
  values such as the mixture are the saved ones, not merged with the base's."""
  cfg = small_config.get_config()
  saved = json.loads(cfg.to_json_best_effort())
  del saved["eval"]["bootstrap"], saved["data"]["manual_dirs"]
  (tmp_path / "config.json").write_text(json.dumps(saved))
  loaded = runtime.load_config(str(tmp_path))
  assert loaded.eval.bootstrap == runtime.base_config().eval.bootstrap
  assert dict(loaded.data.mixture) == dict(cfg.data.mixture)
  assert ModelConfig.from_dict(loaded.model) == ModelConfig.from_dict(cfg.model)
  with pytest.raises(FileNotFoundError, match="config.json not found"):
    runtime.load_config(str(tmp_path / "missing"))


def test_the_sequence_layout_and_tokenizer_path_have_one_definition():
  cfg = small_config.get_config()
  spec = runtime.sequence_spec(cfg)
  assert spec.length == 1 + cfg.data.max_prompt_tokens + cfg.data.max_target_tokens + 1
  assert runtime.tokenizer_path(cfg).endswith("medpalm_m_synthetic_spm.model")
  cfg.data.tokenizer = "~/spm.model"
  assert runtime.tokenizer_path(cfg) == os.path.expanduser("~/spm.model")


def test_an_unset_model_shape_is_refused_naming_it():
  cfg = runtime.base_config()
  cfg.data.mixture = {"synthetic_medqa": 1.0}
  with pytest.raises(ValueError, match="config.model does not set image_token_id"):
    runtime.Runtime(cfg)

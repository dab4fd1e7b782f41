"""config.init_from with config.init_from_fresh: a new adapter grafted onto a trained ViT and
decoder starts from its seeded initialisation, everything else from the checkpoint."""

import jax
import numpy as np
import pytest

from medpalm_m import checkpoint as ckpt_lib
from medpalm_m.trainer import Trainer
from tests import small_config


def _grafted(**fields):
  cfg = small_config.get_config()
  cfg.model.update(adapter="attention_pooler", adapter_queries=6)
  cfg.update(fields)
  return cfg


def test_fresh_parameters_start_seeded_and_the_rest_from_the_checkpoint(evaluated_workdir):
  source = Trainer(small_config.get_config(), num_tasks=3)
  saved, _ = source.runtime.restore_params(evaluated_workdir)
  saved = jax.device_get(saved)
  trainer = Trainer(_grafted(init_from_fresh="^(projector|adapter/)"), num_tasks=3)
  state = jax.device_get(trainer.init_state_from(evaluated_workdir))
  seeded = jax.device_get(trainer.init_state()["params"])
  fresh = {k for k in state["params"] if k.startswith(("projector", "adapter/"))}
  assert "projector" in fresh and "adapter/queries" in fresh
  for name, value in state["params"].items():
    expected = seeded[name] if name in fresh else saved[name]
    np.testing.assert_array_equal(value, expected, err_msg=name)
  assert not np.array_equal(saved["projector"], seeded["projector"])  # the two sources differ
  assert int(state["step"]) == 0


def test_an_init_from_without_the_new_adapter_names_the_way_out(evaluated_workdir):
  trainer = Trainer(_grafted(), num_tasks=3)
  with pytest.raises(ckpt_lib.IncompatibleCheckpointError) as error:
    trainer.init_state_from(evaluated_workdir)
  assert "only in the config: adapter/" in str(error.value)
  assert "--config.init_from_fresh=" in str(error.value)


def test_an_init_from_fresh_regex_that_matches_nothing_is_refused_before_the_run():
  with pytest.raises(ValueError, match="config.init_from_fresh='\\^lora/' matches no parameter"):
    Trainer(_grafted(init_from_fresh="^lora/"), num_tasks=3)

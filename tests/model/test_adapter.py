"""config.model.adapter: the affine default unchanged, the MLP and the attention pooler, and the
image-token count that the pooler's queries set for the whole sequence layout."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from medpalm_m.model.medpalm import MedPaLMM, ModelConfig
from medpalm_m.runtime import sequence_spec
from tests import small_config
from tests.model.test_model import batch_with_images, forward
from tests.model.test_model import small_config as model_config


def _config(**fields) -> ModelConfig:
  return dataclasses.replace(model_config(), **fields)


def _params(model) -> dict[str, jax.Array]:
  return {"/".join(map(str, path)): v.value for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def test_the_affine_default_keeps_its_parameter_names_so_old_checkpoints_load():
  names = set(_params(MedPaLMM(model_config(), rngs=nnx.Rngs(0))))
  assert {n for n in names if not n.startswith(("vit/", "decoder/"))} == {"projector", "projector_bias"}


@pytest.mark.parametrize("fields", [dict(adapter="mlp"), dict(adapter="attention_pooler"),
                                    dict(adapter="attention_pooler", adapter_queries=3)])
def test_each_adapter_runs_counts_its_parameters_and_uses_the_images(fields):
  cfg = _config(**fields)
  model = MedPaLMM(cfg, rngs=nnx.Rngs(0))
  params = _params(model)
  assert sum(x.size for x in params.values()) == cfg.num_params()["total"]
  # The affine projector stays the map into the decoder; the adapter's own parameters are apart.
  assert {"projector", "projector_bias"} <= set(params) and any(n.startswith("adapter/") for n in params)
  tokens = model.encode_images(jnp.zeros((2, 1, 16, 16, 3), jnp.uint8))
  assert tokens.shape == (2, 1, cfg.num_image_tokens, cfg.decoder.width)
  n = cfg.num_image_tokens
  batch = list(batch_with_images([1, 0]))
  batch[0][0, 2:6] = 5
  batch[0][0, 2:2 + n] = 4  # the image's slots: n of them
  base = forward(model, *batch)
  batch[1] = 255 - batch[1]
  changed = forward(model, *batch)
  assert np.abs(changed[0, 2:] - base[0, 2:]).max() > 1e-4  # the image reaches the logits
  np.testing.assert_array_equal(changed[1], base[1])  # the example without one is untouched


def test_the_attention_pooler_sets_the_image_tokens_independently_of_the_patch_grid():
  for patch_size in (4, 8):  # a 4x4 and a 2x2 grid
    cfg = _config(adapter="attention_pooler", adapter_queries=7,
                  vit=dataclasses.replace(model_config().vit, patch_size=patch_size))
    model = MedPaLMM(cfg, rngs=nnx.Rngs(0))
    assert model.encode_images(jnp.zeros((1, 2, 16, 16, 3), jnp.uint8)).shape[2] == 7
  # The sequence layout follows: each image takes 7 slots of the prompt.
  c = small_config.get_config()
  c.model.update(adapter="attention_pooler", adapter_queries=7)
  assert sequence_spec(c).image_slots == 7


@pytest.mark.parametrize("fields, message", [
    (dict(adapter="qformer"), "model.adapter must be one of"),
    (dict(adapter="mlp", adapter_queries=4), "needs model.adapter='attention_pooler'"),
    (dict(adapter="attention_pooler", adapter_queries=0), "a positive count"),
])
def test_a_bad_adapter_config_is_refused_naming_the_key(fields, message):
  c = small_config.get_config()
  c.model.update(fields)
  with pytest.raises(ValueError, match=message):
    ModelConfig.from_dict(c.model)

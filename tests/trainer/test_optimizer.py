"""config.optimizer: per-parameter learning-rate multipliers and freezing."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from medpalm_m.trainer.optimizer import make_optimizer, partition


def _cfg(name="adafactor", **optimizer):
  c = ml_collections.ConfigDict()
  c.train = dict(num_steps=10)
  c.optimizer = dict(name=name, learning_rate=1e-2, schedule="constant", warmup_steps=0, b1=0.9,
                     b2=0.999, weight_decay=0.0, clip_norm=0.0, freeze="", lr_multipliers={})
  c.optimizer.update(optimizer)
  return c


def _params():
  rng = np.random.default_rng(0)
  return {name: jnp.asarray(rng.normal(size=shape), jnp.float32)
          for name, shape in (("vit/patch_embed", (12, 4)), ("vit/blocks/0/qkv", (4, 3)),
                              ("decoder/embedding", (8, 4)))}


def _first_update(cfg, params):
  tx, _ = make_optimizer(cfg, params)
  grads = jax.tree.map(lambda p: jnp.sin(p) + 0.1, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  return updates


@pytest.mark.parametrize("name", ["adafactor", "adamw", "sgd"])
def test_lr_multiplier_scales_exactly_the_matching_parameters(name):
  params = _params()
  plain = _first_update(_cfg(name), params)
  scaled = _first_update(_cfg(name, lr_multipliers={"^vit/": 0.25}), params)
  np.testing.assert_allclose(scaled["vit/patch_embed"], 0.25 * plain["vit/patch_embed"], rtol=1e-6)
  np.testing.assert_allclose(scaled["vit/blocks/0/qkv"], 0.25 * plain["vit/blocks/0/qkv"], rtol=1e-6)
  np.testing.assert_array_equal(scaled["decoder/embedding"], plain["decoder/embedding"])
  assert np.abs(plain["vit/patch_embed"]).max() > 0


def test_zero_multiplier_leaves_the_parameter_unchanged():
  updates = _first_update(_cfg(lr_multipliers={"patch_embed$": 0.0}), _params())
  assert not np.any(updates["vit/patch_embed"])
  assert np.any(updates["vit/blocks/0/qkv"])


@pytest.mark.parametrize("multipliers, message", [
    ({"^vit/": 0.5, "patch": 0.1}, "all match parameter 'vit/patch_embed'"),
    ({"^projector": 0.5}, "match no parameter"),
    ({"^vit/": -1.0}, "must be >= 0"),
])
def test_bad_lr_multipliers_are_refused_naming_the_key(multipliers, message):
  with pytest.raises(ValueError, match="config.optimizer.lr_multipliers") as error:
    make_optimizer(_cfg(lr_multipliers=multipliers), _params())
  assert message in str(error.value)


def test_freeze_composes_with_lr_multipliers_and_leaves_frozen_parameters_out():
  """The tiny default's ViT multiplier stays valid when part of the ViT is frozen: it scales the
  trained ViT parameters, and the frozen ones have no optimizer state at all."""
  params = _params()
  cfg = _cfg(freeze="^vit/blocks/", lr_multipliers={"^vit/": 0.25})
  trained, frozen = partition(cfg, params)
  assert sorted(frozen) == ["vit/blocks/0/qkv"]
  assert sorted(trained) == ["decoder/embedding", "vit/patch_embed"]
  tx, _ = make_optimizer(cfg, params)
  state = tx.init(trained)
  names = {getattr(k, "key", None) for path, _ in jax.tree_util.tree_leaves_with_path(state) for k in path}
  assert "vit/blocks/0/qkv" not in names and {"decoder/embedding", "vit/patch_embed"} <= names
  grads = jax.tree.map(lambda p: jnp.sin(p) + 0.1, trained)
  updates, _ = tx.update(grads, state, trained)
  plain = _first_update(_cfg(), params)
  np.testing.assert_allclose(updates["vit/patch_embed"], 0.25 * plain["vit/patch_embed"], rtol=1e-6)
  np.testing.assert_array_equal(updates["decoder/embedding"], plain["decoder/embedding"])


@pytest.mark.parametrize("freeze, message", [
    ("^projector", "matches no parameter"),
    ("^(vit|decoder)/", "matches every parameter"),
])
def test_a_freeze_regex_that_freezes_nothing_or_everything_is_refused(freeze, message):
  with pytest.raises(ValueError, match="config.optimizer.freeze") as error:
    make_optimizer(_cfg(freeze=freeze), _params())
  assert message in str(error.value)

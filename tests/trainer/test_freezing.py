"""config.optimizer.freeze in the trainer: frozen parameters are not differentiated, not updated
and have no optimizer state; grad_norm counts the trained ones only. LoRA (config.model.lora)
is the case where everything but the adapters is frozen."""

import jax
import numpy as np
import pytest

from medpalm_m import planning
from medpalm_m.data import pipeline, preprocess
from medpalm_m.runtime import prepare_data, sequence_spec
from medpalm_m.trainer import Trainer
from tests import small_config


def _config(synthetic_data_dir, **optimizer):
  cfg = small_config.get_config()  # inherits tiny's lr_multipliers (ViT blocks 0.3x)
  cfg.data.data_dir = synthetic_data_dir
  cfg.optimizer.update(optimizer)
  return cfg


@pytest.fixture(scope="module")
def batch(synthetic_data_dir):
  """One packed training batch of tests/small_config.py (with images)."""
  cfg = _config(synthetic_data_dir)
  _, tokenizer = prepare_data(cfg)
  mixture = {t: 1.0 for t in small_config.TASKS}
  pre = preprocess.Preprocessor(tokenizer, sequence_spec(cfg), pipeline.task_ids(list(mixture)))
  batch = next(iter(pipeline.train_dataset(mixture, synthetic_data_dir, pre, batch_size=8, seed=0,
                                           packing=pipeline.Packing.from_config(cfg.data))))
  assert batch["images"].any()
  return batch


def _names_in(tree, params) -> set[str]:
  """The parameter names that key the leaves of an optimizer state."""
  return {k.key for path, _ in jax.tree_util.tree_leaves_with_path(tree) for k in path
          if getattr(k, "key", None) in params}


def test_frozen_parameters_stay_bit_identical_and_have_no_optimizer_state(synthetic_data_dir, batch):
  """Three Adafactor steps with the ViT blocks and one decoder block frozen, the rest of the ViT
  trained at tiny's multipliers (freeze composes with lr_multipliers)."""
  cfg = _config(synthetic_data_dir, freeze="^vit/blocks/|^decoder/blocks/0/")
  trainer = Trainer(cfg, num_tasks=3)
  state = trainer.init_state()
  start = jax.device_get(state["params"])
  for _ in range(3):
    state, metrics = trainer.train_step(state, trainer.global_batch(batch))
  end = jax.device_get(state["params"])
  frozen = {k for k in start if k.startswith(("vit/blocks/", "decoder/blocks/0/"))}
  assert frozen and frozen < set(start)
  for name in start:
    if name in frozen:
      assert end[name].tobytes() == start[name].tobytes(), name
    else:
      assert not np.array_equal(end[name], start[name]), f"{name} did not train"
  assert _names_in(state["opt_state"], start) == set(start) - frozen
  assert trainer.num_trained == sum(start[k].size for k in set(start) - frozen)
  assert np.isfinite(metrics["grad_norm"])


def test_grad_norm_counts_only_the_trained_parameters(synthetic_data_dir, batch):
  """With SGD at rate 1 the update is minus the gradient: the unfrozen step's change of the
  trained parameters is their gradient, and the frozen step's grad_norm is its norm; the frozen
  step updates them exactly as the unfrozen one does."""
  sgd = dict(name="sgd", b1=0.0, learning_rate=1.0, clip_norm=0.0)
  results = {}
  for freeze in ("", "^vit/"):
    trainer = Trainer(_config(synthetic_data_dir, freeze=freeze, **sgd), num_tasks=3)
    state = trainer.init_state()
    start = jax.device_get(state["params"])
    state, metrics = trainer.train_step(state, trainer.global_batch(batch))
    results[freeze] = (start, jax.device_get(state["params"]), float(metrics["grad_norm"]))
  start, full, full_norm = results[""]
  _, frozen, frozen_norm = results["^vit/"]
  trained = [k for k in start if not k.startswith("vit/")]
  trained_norm = np.sqrt(sum(np.sum((start[k] - full[k]).astype(np.float64) ** 2) for k in trained))
  np.testing.assert_allclose(frozen_norm, trained_norm, rtol=1e-4)
  assert frozen_norm < full_norm
  for k in trained:
    np.testing.assert_allclose(frozen[k], full[k], rtol=1e-5, atol=1e-7, err_msg=k)


def test_a_frozen_vit_is_not_differentiated_in_the_compiled_step(synthetic_data_dir):
  """XLA's cost analysis of the compiled step: freezing the ViT removes at least 90% of the
  ViT's backward FLOPs (twice its forward matmuls), the projector's weight gradient aside."""
  flops, memory = {}, {}
  for freeze in ("", "^vit/"):
    trainer = Trainer(_config(synthetic_data_dir, freeze=freeze), num_tasks=3)
    compiled = planning.compiled_step(trainer)
    analysis = compiled.cost_analysis()
    flops[freeze] = (analysis[0] if isinstance(analysis, list) else analysis)["flops"]
    memory[freeze] = compiled.memory_analysis().temp_size_in_bytes
  cfg = _config(synthetic_data_dir)
  v = trainer.model_cfg.vit
  tokens = cfg.train.batch_size * pipeline.images_per_row(cfg.data) * v.num_patches
  vit_forward = 2 * tokens * (v.depth * (4 * v.width**2 + 2 * v.width * v.mlp_dim)
                              + 3 * v.patch_size**2 * v.width)
  assert flops[""] - flops["^vit/"] >= 0.9 * 2 * vit_forward, (flops, vit_forward)
  assert memory["^vit/"] < memory[""]


def test_a_resume_that_changes_what_is_frozen_is_refused_even_when_allowed(tmp_path):
  """The checkpoint's optimizer state holds the parameters that trained: the user is pointed to
  init_from, which keeps the parameters and starts a fresh optimizer state."""
  from medpalm_m.trainer import workdir as workdir_lib
  cfg = small_config.get_config()
  workdir_lib.start(str(tmp_path), cfg, 0)
  cfg.optimizer.freeze = "^vit/"
  cfg.train.allow_config_changes = "optimizer.*"
  with pytest.raises(workdir_lib.ConfigChangedError, match="optimizer.freeze is '\\^vit/'") as error:
    workdir_lib.check_config_unchanged(str(tmp_path), cfg, 4)
  assert f"--config.init_from={tmp_path}" in str(error.value)
  cfg.optimizer.freeze = ""
  workdir_lib.check_config_unchanged(str(tmp_path), cfg, 4)  # what is allowed still is


def test_lora_trains_only_the_adapters_and_its_loss_falls(synthetic_data_dir, batch):
  """Rank-4 adapters on every decoder and ViT kernel, the base weights frozen (lora.BASE_WEIGHTS):
  after 6 AdamW steps on one batch the base is bit-identical, every adapter moved, the optimizer
  state holds the adapters alone, and the loss has fallen."""
  from medpalm_m.model.lora import BASE_WEIGHTS, is_adapter
  cfg = _config(synthetic_data_dir, name="adamw", learning_rate=1e-2, freeze=BASE_WEIGHTS)
  cfg.model.lora.update(rank=4, vit=True)
  trainer = Trainer(cfg, num_tasks=3)
  state = trainer.init_state()
  start = jax.device_get(state["params"])
  adapters = {k for k in start if is_adapter(k)}
  losses = []
  for _ in range(6):
    state, metrics = trainer.train_step(state, trainer.global_batch(batch))
    losses.append(float(metrics["loss"]))
  end = jax.device_get(state["params"])
  for name in start:
    if name in adapters:
      assert not np.array_equal(end[name], start[name]), f"{name} did not train"
    else:
      assert end[name].tobytes() == start[name].tobytes(), name
  assert _names_in(state["opt_state"], start) == adapters
  assert trainer.num_trained == sum(start[k].size for k in adapters) < trainer.num_params / 10
  assert losses[-1] < 0.8 * losses[0], losses

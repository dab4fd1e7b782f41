"""LoRA by config: adapters beside the chosen kernels only, the base model's logits at
initialisation, sharding by the kernels' logical axes, and merging back into the kernels."""

import dataclasses
import re

import jax
import numpy as np
import pytest
from jax.sharding import AbstractMesh, PartitionSpec as P

from medpalm_m import sharding
from medpalm_m.model.lora import BASE_WEIGHTS, LoRAConfig, is_adapter, merge_adapters
from medpalm_m.model.medpalm import ModelConfig
from medpalm_m.model.template import ModelTemplate
from tests.model.test_model import batch_with_images, small_config


def with_lora(cfg: ModelConfig, **lora) -> ModelConfig:
  return dataclasses.replace(cfg, lora=LoRAConfig(**lora))


@pytest.fixture(scope="module")
def base():
  return ModelTemplate.create(small_config(), seed=0)


def logits(template, params, jit=False):
  tokens, images, input_mask, mask_ar = batch_with_images([1, 2])
  forward = lambda p: template.bind(p)(tokens, images, input_mask, mask_ar)
  return np.asarray(jax.jit(forward)(params) if jit else forward(params))


def test_at_initialisation_the_logits_are_exactly_the_base_models(base):
  template, params = base
  lora_template, lora_params = ModelTemplate.create(with_lora(small_config(), rank=4, vit=True), seed=0)
  adapters = sorted(k for k in lora_params if is_adapter(k))
  assert len(adapters) == 2 * (2 * 7 + 1 * 4)  # A and B of 7 decoder kernels x 2 layers, 4 ViT ones
  # The base weights are drawn first, so they are the base model's, and B starts at zero.
  assert all(np.array_equal(lora_params[k], params[k]) for k in params)
  assert all(not lora_params[k].any() for k in adapters if k.endswith("/b"))
  assert all(lora_params[k].std() > 0 for k in adapters if k.endswith("/a"))
  np.testing.assert_array_equal(logits(lora_template, lora_params), logits(template, params))
  # Compiled, XLA fuses the residual sums around the (zero) updates differently: the last bit.
  np.testing.assert_allclose(logits(lora_template, lora_params, jit=True),
                             logits(template, params, jit=True), rtol=0, atol=2e-6)


def test_targets_choose_the_kernels_and_the_vit_only_when_asked():
  _, params = ModelTemplate.abstract(with_lora(small_config(), rank=2, targets=r"attn/(query|value)$|qkv"))
  assert sorted(k for k in params if is_adapter(k)) == [
      f"decoder/blocks/{i}/attn/lora/{kernel}/{ab}" for i in (0, 1) for kernel in ("query", "value")
      for ab in "ab"]
  _, params = ModelTemplate.abstract(with_lora(small_config(), rank=2, targets="qkv|query", vit=True))
  assert "vit/blocks/0/lora/qkv/a" in params and "decoder/blocks/1/attn/lora/query/b" in params
  assert params["vit/blocks/0/lora/qkv/b"].shape == (2, 3, 2, 12)  # [rank, 3, heads, head_dim]
  with pytest.raises(ValueError, match=r"model.lora.targets='vit/' matches no adaptable kernel of "
                                       r"the decoder \(model.lora.vit is off\)"):
    ModelTemplate.abstract(with_lora(small_config(), rank=2, targets="vit/"))


def test_the_config_is_checked_by_name():
  fields = dict(vit=dict(image_size=16, patch_size=8, width=24, depth=1, num_heads=2, mlp_dim=48),
                decoder=dict(vocab_size=64, width=32, depth=2, num_heads=4, num_kv_heads=2,
                             head_dim=16, mlp_dim=64), image_token_id=4)
  with pytest.raises(ValueError, match=r"unknown keys under config.model.lora: \['ranks'\]"):
    ModelConfig.from_dict({**fields, "lora": dict(ranks=4)})
  with pytest.raises(ValueError, match="model.lora.targets='attn/\\(' is not a regex"):
    ModelConfig.from_dict({**fields, "lora": dict(rank=4, targets="attn/(")})
  assert ModelConfig.from_dict(fields).lora == LoRAConfig()  # a workdir saved before LoRA existed


def test_adapters_shard_like_their_kernel_with_the_rank_replicated():
  template, params = ModelTemplate.abstract(with_lora(small_config(), rank=4))
  mesh = AbstractMesh((1, 2, 2), sharding.MESH_AXES)
  spec = lambda name: sharding.logical_to_spec(template.logical_axes[name], params[name].shape, mesh,
                                               sharding.DEFAULT_RULES)
  block = "decoder/blocks/0"
  assert template.logical_axes[f"{block}/attn/lora/out/a"] == ("heads", "head_dim", "lora_rank")
  assert spec(f"{block}/attn/query") == P("fsdp", "tensor", None)
  assert spec(f"{block}/attn/lora/query/a") == P("fsdp", None)
  assert spec(f"{block}/attn/lora/query/b") == P(None, "tensor", None)
  assert spec(f"{block}/mlp/lora/down/a") == P("tensor", None)
  assert spec(f"{block}/mlp/lora/down/b") == P(None, "fsdp")


def test_merged_adapters_give_the_unmerged_logits(base):
  template, _ = base
  lora_template, params = ModelTemplate.create(with_lora(small_config(), rank=4, alpha=8.0, vit=True), seed=0)
  rng = np.random.default_rng(0)
  trained = {k: (rng.normal(0, 0.3, v.shape).astype(np.float32) if k.endswith("/b") else np.asarray(v))
             for k, v in params.items()}
  unmerged = logits(lora_template, trained)
  assert np.abs(unmerged - logits(lora_template, params)).max() > 1e-2  # the adapters matter
  merged = merge_adapters(trained, LoRAConfig(rank=4, alpha=8.0, vit=True))
  assert sorted(merged) == sorted(template.logical_axes)  # the plain model's parameters
  np.testing.assert_allclose(logits(template, merged), unmerged, rtol=0, atol=1e-5)


def test_base_weights_is_every_parameter_but_the_adapters():
  _, params = ModelTemplate.abstract(with_lora(small_config(), rank=2, vit=True))
  frozen = {k for k in params if re.search(BASE_WEIGHTS, k)}
  assert frozen and frozen == {k for k in params if not is_adapter(k)}

"""config.model.attention_impl: every implementation that runs on a CPU against the reference.

The reference is 'xla' (today's attention). 'blocked' runs as it would anywhere; 'splash' runs its
Pallas TPU kernel in interpret mode. Each must give the reference's logits and parameter gradients
within 1e-5 in fp32 for every kind of mask the model builds, and the same KV-cache decoding.
Rows that see no key at all (the padding of a packed row) are left out of the comparison: the
fused kernels skip them, and they carry no loss.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medpalm_m.model import attention_impl, decode
from medpalm_m.model.medpalm import ModelConfig
from medpalm_m.model.template import ModelTemplate
from tests.model.test_decode import prompts
from tests.model.test_model import batch_with_images, small_config

TOL = 1e-5
ON_CPU = ["blocked", "splash"]


@pytest.fixture(autouse=True)
def small_key_blocks(monkeypatch):
  """Key blocks of 8 so that the test's 20-token rows span three blocks, the last one padded."""
  monkeypatch.setattr(attention_impl, "KEY_BLOCK", 8)


# Every mask the model builds: (ModelConfig overrides, batch overrides).
MASKS = {
    "prefix_lm": (dict(attention="prefix_lm"), {}),
    "causal": (dict(attention="causal"), {}),
    "packed_segments": (dict(attention="prefix_lm"), dict(packed=True)),
    "sliding_window": (dict(attention="causal", decoder=dict(attention_pattern=("local", "global"),
                                                               sliding_window=3)), {}),
    "softcap": (dict(attention="prefix_lm", decoder=dict(attn_logit_softcap=0.5)), {}),
    # Windows shorter than a bidirectional block: Gemma 3's images (4 slots, window 2) and
    # PaliGemma 2's prefix (12 tokens, window 3, spared).
    "window_in_images": (dict(attention="causal_bidirectional_images",
                              decoder=dict(attention_pattern=("local", "global"), sliding_window=2)), {}),
    "window_spares_prefix": (dict(attention="prefix_lm",
                                  decoder=dict(attention_pattern=("local", "global"), sliding_window=3,
                                               sliding_window_spares_blocks=True)), {}),
}


def config(impl: str, attention: str, decoder=None) -> ModelConfig:
  return dataclasses.replace(small_config(attention, **(decoder or {})), attention_impl=impl)


def bind(template: ModelTemplate, params, impl: str):
  model = template.bind(params)
  if impl == "splash":
    model.set_attributes(interpret_kernels=True)
  return model


def packed_batch():
  """Two examples per row: segments 1 and 2 with positions restarting at 0, then padding
  (segment 0), which sees no key at all."""
  tokens, images, input_mask, mask_ar = batch_with_images([1, 0])
  segment_ids = np.zeros_like(tokens)
  segment_ids[:, :10], segment_ids[:, 10:17] = 1, 2
  positions = np.concatenate([np.arange(10), np.arange(7), np.zeros(3, int)])[None].repeat(2, 0)
  input_mask = segment_ids > 0
  return tokens, images, input_mask, mask_ar, segment_ids, positions.astype(np.int32)


def logits_and_grads(impl: str, overrides: dict, packed: bool = False):
  overrides = dict(overrides)
  cfg = config(impl, overrides.pop("attention"), overrides.pop("decoder", None))
  template, params = ModelTemplate.create(cfg, seed=3)
  if packed:
    tokens, images, input_mask, mask_ar, segment_ids, positions = packed_batch()
    extra = dict(segment_ids=jnp.asarray(segment_ids), positions=jnp.asarray(positions))
  else:
    tokens, images, input_mask, mask_ar = batch_with_images([1, 2])
    extra = {}
  weights = np.random.default_rng(1).normal(size=(*tokens.shape, cfg.decoder.vocab_size))
  weights = jnp.asarray(weights * input_mask[..., None], jnp.float32)  # only rows that see a key

  def forward(params):
    return bind(template, params, impl)(jnp.asarray(tokens), jnp.asarray(images), jnp.asarray(input_mask),
                                        jnp.asarray(mask_ar), **extra)

  def loss(params):
    return jnp.sum(forward(params) * weights)

  logits = jax.jit(forward)(params)
  grads = jax.jit(jax.grad(loss))(params)
  return np.asarray(logits)[input_mask], {k: np.asarray(g) for k, g in grads.items()}


@pytest.mark.parametrize("mask", [m for m in MASKS if m != "window_spares_prefix"])
@pytest.mark.parametrize("impl", ON_CPU)
def test_logits_and_gradients_match_the_reference(impl, mask):
  overrides, batch = MASKS[mask]
  want_logits, want_grads = logits_and_grads("xla", overrides, **batch)
  got_logits, got_grads = logits_and_grads(impl, overrides, **batch)
  np.testing.assert_allclose(got_logits, want_logits, atol=TOL, rtol=0)
  assert got_grads.keys() == want_grads.keys()
  for path in want_grads:
    scale = max(1.0, float(np.abs(want_grads[path]).max()))
    np.testing.assert_allclose(got_grads[path], want_grads[path], atol=TOL * scale, rtol=0, err_msg=path)


# (Training sees the spared prefix like any other dense mask; decoding must also spare it in the
# prefill, whose queries are the cache's first slots.)
@pytest.mark.parametrize("mask", ["prefix_lm", "sliding_window", "softcap", "window_spares_prefix"])
@pytest.mark.parametrize("impl", ON_CPU)
def test_kv_cache_decoding_matches_the_reference(impl, mask):
  overrides = dict(MASKS[mask][0])
  attention, decoder = overrides.pop("attention"), overrides.pop("decoder", None)
  tokens, images, prompt_length = prompts()
  mask_ar = np.zeros_like(tokens)  # the prompt is the prefix
  sampling = decode.SamplingConfig(max_new_tokens=5)
  results = {}
  for name in ("xla", impl):
    template, params = ModelTemplate.create(config(name, attention, decoder), seed=3)
    run = jax.jit(lambda params: decode.generate(
        bind(template, params, name), jnp.asarray(tokens), jnp.asarray(images),
        jnp.asarray(prompt_length), jnp.asarray(mask_ar), sampling, eos_id=-1))
    results[name] = [np.asarray(x) for x in run(params)]
  np.testing.assert_array_equal(results[impl][0], results["xla"][0])
  np.testing.assert_allclose(results[impl][1], results["xla"][1], atol=TOL, rtol=0)


def test_blocked_attention_matches_where_a_row_sees_no_key():
  """blocked keeps the reference's finite mask value, so even a row that sees nothing (the uniform
  average over the real keys, padding keys excluded) and its gradients are the reference's."""
  keys = jax.random.split(jax.random.key(0), 3)
  q = jax.random.normal(keys[0], (2, 5, 4, 8))
  k, v = (jax.random.normal(key, (2, 11, 2, 8)) for key in keys[1:])
  mask = jax.random.bernoulli(jax.random.key(1), 0.6, (2, 5, 11)).at[0, 2].set(False)
  scores = dict(mask=mask, logit_scale=0.3, softcap=2.0)

  def loss(fn, q, k, v):
    return jnp.sum(jnp.sin(fn(q, k, v, **scores)))

  for argnum in range(3):
    want = jax.grad(lambda *a: loss(attention_impl.xla_attention, *a), argnum)(q, k, v)
    got = jax.grad(lambda *a: loss(attention_impl.blocked_attention, *a), argnum)(q, k, v)
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
  np.testing.assert_allclose(attention_impl.blocked_attention(q, k, v, **scores),
                             attention_impl.xla_attention(q, k, v, **scores), atol=TOL, rtol=0)


def test_fused_kernels_name_what_they_cannot_do_here():
  q = jnp.zeros((1, 4, 2, 8))
  with pytest.raises(ValueError, match="'cudnn' needs a GPU.*computes on cpu"):
    attention_impl.attend(q, q, q, None, impl="cudnn", logit_scale=1.0, softcap=None)
  with pytest.raises(ValueError, match="'cudnn' cannot express attention logit soft-capping"):
    attention_impl.attend(q, q, q, None, impl="cudnn", logit_scale=1.0, softcap=30.0)
  with pytest.raises(ValueError, match="'splash' needs a TPU.*computes on cpu"):
    attention_impl.attend(q, q, q, None, impl="splash", logit_scale=1.0, softcap=None)


def test_per_backend_choice():
  spec = "tpu:splash,gpu:cudnn,cpu:blocked"
  assert [attention_impl.resolve(spec, b) for b in ("tpu", "gpu", "cpu", "cuda")] == \
      ["splash", "cudnn", "blocked", "cudnn"]
  assert attention_impl.resolve("blocked", "tpu") == "blocked"
  with pytest.raises(ValueError, match="names no implementation for cpu"):
    attention_impl.parse_choice("tpu:splash,gpu:cudnn")
  misspelt = dict(dataclasses.asdict(small_config()), attention_impl="flash")
  with pytest.raises(ValueError, match="model.attention_impl 'flash' is not one of"):
    ModelConfig.from_dict(misspelt)

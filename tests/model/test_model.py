"""The PaLM-E model: causality, prefix-LM, image injection, gradients, loss masking, sizes."""

import dataclasses
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from medpalm_m.data import preprocess, tokenizer as tok
from medpalm_m.model.loss import next_token_loss, per_example_weights
from medpalm_m.model.medpalm import MedPaLMM, ModelConfig
from medpalm_m.model.template import abstract_model

IMG = tok.IMAGE_ID


def small_config(attention="causal", **decoder_overrides) -> ModelConfig:
  decoder = dict(vocab_size=64, width=32, depth=2, num_heads=4, num_kv_heads=2, head_dim=16,
                 mlp_dim=64)
  decoder.update(decoder_overrides)
  return ModelConfig.from_dict(dict(
      vit=dict(image_size=16, patch_size=8, width=24, depth=1, num_heads=2, mlp_dim=48),
      decoder=decoder, image_token_id=IMG, attention=attention))


def batch_with_images(num_images_per_example, length=20, seed=0):
  """Right-padded batch; example b has its images' 4 slots each starting at position 2 + 5k."""
  rng = np.random.default_rng(seed)
  b = len(num_images_per_example)
  k = max(max(num_images_per_example), 1)
  tokens = rng.integers(5, 64, size=(b, length)).astype(np.int32)
  for i, n in enumerate(num_images_per_example):
    for j in range(n):
      tokens[i, 2 + 5 * j: 6 + 5 * j] = IMG
  images = rng.integers(0, 256, size=(b, k, 16, 16, 3)).astype(np.uint8)
  input_mask = np.ones((b, length), bool)
  input_mask[:, -3:] = False
  mask_ar = np.zeros((b, length), np.int32)
  mask_ar[:, 12:] = 1
  return tokens, images, input_mask, mask_ar


def forward(model, tokens, images, input_mask, mask_ar):
  return np.asarray(model(jnp.asarray(tokens), jnp.asarray(images), jnp.asarray(input_mask),
                          jnp.asarray(mask_ar)))


def test_changing_a_target_token_never_changes_earlier_logits():
  for attention in ("causal", "prefix_lm"):
    model = MedPaLMM(small_config(attention), rngs=nnx.Rngs(0))
    tokens, images, input_mask, mask_ar = batch_with_images([1, 0])
    base = forward(model, tokens, images, input_mask, mask_ar)
    changed = tokens.copy()
    changed[:, 14] = (changed[:, 14] + 7) % 59 + 5
    out = forward(model, changed, images, input_mask, mask_ar)
    np.testing.assert_allclose(out[:, :14], base[:, :14], atol=1e-5)
    assert np.abs(out[:, 14:17] - base[:, 14:17]).max() > 1e-4, attention


def test_prefix_lm_prompt_sees_later_prompt_tokens_and_causal_does_not():
  tokens, images, input_mask, mask_ar = batch_with_images([0, 0])
  changed = tokens.copy()
  changed[:, 10] = (changed[:, 10] + 7) % 59 + 5  # a late prompt token (prefix ends at 12)
  prefix = MedPaLMM(small_config("prefix_lm"), rngs=nnx.Rngs(0))
  delta = np.abs(forward(prefix, changed, images, input_mask, mask_ar)
                 - forward(prefix, tokens, images, input_mask, mask_ar))
  assert delta[:, 3].max() > 1e-4  # an earlier prompt position sees position 10
  causal = MedPaLMM(small_config("causal"), rngs=nnx.Rngs(0))
  delta = np.abs(forward(causal, changed, images, input_mask, mask_ar)
                 - forward(causal, tokens, images, input_mask, mask_ar))
  assert delta[:, :10].max() < 1e-5


def test_an_image_changes_only_its_own_example():
  model = MedPaLMM(small_config(), rngs=nnx.Rngs(0))
  tokens, images, input_mask, mask_ar = batch_with_images([1, 1])
  base = forward(model, tokens, images, input_mask, mask_ar)
  other = images.copy()
  other[0, 0] = 255 - other[0, 0]
  out = forward(model, tokens, other, input_mask, mask_ar)
  assert np.abs(out[0, 2:] - base[0, 2:]).max() > 1e-3
  np.testing.assert_allclose(out[1], base[1], atol=1e-6)
  # Causal attention: positions before the image slots do not see the image.
  np.testing.assert_allclose(out[0, :2], base[0, :2], atol=1e-6)


def test_swapping_two_images_changes_the_output_and_their_slots_follow_order():
  model = MedPaLMM(small_config(), rngs=nnx.Rngs(0))
  tokens, images, input_mask, mask_ar = batch_with_images([2, 0])
  swapped = images.copy()
  swapped[0, [0, 1]] = images[0, [1, 0]]
  base = forward(model, tokens, images, input_mask, mask_ar)
  out = forward(model, tokens, swapped, input_mask, mask_ar)
  assert np.abs(out[0, 2:] - base[0, 2:]).max() > 1e-3
  # Image k's projected patch tokens land exactly in the slots of placeholder k.
  embedded = np.asarray(model.embed_inputs(jnp.asarray(tokens), jnp.asarray(images)))
  patches = np.asarray(model.encode_images(jnp.asarray(images)))
  np.testing.assert_allclose(embedded[0, 2:6], patches[0, 0], atol=1e-6)
  np.testing.assert_allclose(embedded[0, 7:11], patches[0, 1], atol=1e-6)
  # Example 1 has no image: its embedding is the plain token embedding everywhere.
  text_only = np.asarray(model.decoder.embed(jnp.asarray(tokens), jnp.float32))
  np.testing.assert_allclose(embedded[1], text_only[1], atol=1e-6)


def test_image_count_mismatch_is_reported_with_the_example_before_any_model_call(tmp_path):
  sentences = [f"Given the image {i}. Q: what is shown? A: a chest" for i in range(200)]
  tokenizer = tok.train_tokenizer(sentences, 320, tmp_path / "t.model")
  spec = preprocess.SequenceSpec(max_prompt_tokens=40, max_target_tokens=8, max_images=2,
                                 image_size=16, image_slots=4)
  pre = preprocess.Preprocessor(tokenizer, spec, {"t": 0})
  example = {"id": "ex-7", "task": "t", "prompt": "Given <img> and <img>. Q: what? A:",
             "target": "a chest", "images": [np.zeros((8, 8), np.uint8)]}
  with pytest.raises(preprocess.ExampleError, match=r"ex-7.*2 <img> marker\(s\) but 1 image"):
    pre(example)
  # The escaped literal of an exemplar is text, not a slot: one marker, one image is fine.
  example["prompt"] = "Example: \\<img> Q: what? A: lung. Given <img>. Q: what? A:"
  features = pre(example)
  assert (features["tokens"] == IMG).sum() == 4


def test_gradients_reach_every_parameter():
  model = MedPaLMM(small_config(), rngs=nnx.Rngs(0))
  tokens, images, input_mask, mask_ar = batch_with_images([1, 1])
  loss_mask = np.logical_and(mask_ar == 1, input_mask)

  def loss_fn(m):
    logits = m(jnp.asarray(tokens), jnp.asarray(images), jnp.asarray(input_mask), jnp.asarray(mask_ar))
    return next_token_loss(logits, jnp.asarray(tokens), jnp.asarray(loss_mask))[0]

  grads = nnx.grad(loss_fn)(model)
  flat = jax.tree_util.tree_flatten_with_path(nnx.state(grads, nnx.Param))[0]
  dead = [jax.tree_util.keystr(path) for path, g in flat if not np.abs(np.asarray(g)).max() > 0]
  assert not dead, f"no gradient reaches {dead}"
  names = " ".join(jax.tree_util.keystr(p) for p, _ in flat)
  assert "vit" in names and "projector" in names and "decoder" in names


def test_prompt_and_padding_tokens_contribute_nothing_to_the_loss():
  model = MedPaLMM(small_config(), rngs=nnx.Rngs(0))
  tokens, images, input_mask, mask_ar = batch_with_images([1, 0])
  loss_mask = np.logical_and(mask_ar == 1, input_mask)
  logits = model(jnp.asarray(tokens), jnp.asarray(images), jnp.asarray(input_mask), jnp.asarray(mask_ar))
  loss, _ = next_token_loss(logits, jnp.asarray(tokens), jnp.asarray(loss_mask))
  # Change logits at prompt positions that do not predict a target token, and at padding.
  noisy = logits.at[:, :10].add(50.0).at[:, -3:].add(-50.0)
  loss2, _ = next_token_loss(noisy, jnp.asarray(tokens), jnp.asarray(loss_mask))
  np.testing.assert_allclose(loss, loss2, rtol=1e-6)
  # And the loss equals the mean NLL over target tokens computed by hand.
  logp = jax.nn.log_softmax(np.asarray(logits), -1)
  nll = [-logp[b, t - 1, tokens[b, t]] for b in range(2) for t in range(20) if loss_mask[b, t]]
  np.testing.assert_allclose(loss, np.mean(nll), rtol=1e-5)


def test_example_normalization_averages_each_example_then_the_examples():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(2, 8, 11)), jnp.float32)
  tokens = jnp.asarray(rng.integers(0, 11, size=(2, 8)))
  # Row 0 packs two examples (3 target tokens, then 1); row 1 is one example with 2, then padding.
  segment_ids = jnp.asarray([[1, 1, 1, 1, 2, 2, 2, 0], [1, 1, 1, 1, 1, 0, 0, 0]])
  loss_mask = jnp.asarray([[0, 1, 1, 1, 0, 0, 1, 0], [0, 0, 0, 1, 1, 0, 0, 0]], bool)
  logp = jax.nn.log_softmax(np.asarray(logits), -1)
  nll = lambda b, t: -logp[b, t - 1, int(tokens[b, t])]
  per_example = [np.mean([nll(0, 1), nll(0, 2), nll(0, 3)]), nll(0, 6), np.mean([nll(1, 3), nll(1, 4)])]
  loss, stats = next_token_loss(logits, tokens, loss_mask,
                                token_weights=per_example_weights(loss_mask, segment_ids))
  np.testing.assert_allclose(loss, np.mean(per_example), rtol=1e-5)
  np.testing.assert_allclose(stats["loss_weights"].sum(), 3.0)
  tokens_loss, _ = next_token_loss(logits, tokens, loss_mask)
  np.testing.assert_allclose(tokens_loss, np.mean([nll(0, 1), nll(0, 2), nll(0, 3), nll(0, 6),
                                                   nll(1, 3), nll(1, 4)]), rtol=1e-5)
  # Unpacked rows (no segment ids) are one example each.
  row_loss, _ = next_token_loss(logits, tokens, loss_mask, token_weights=per_example_weights(loss_mask, None))
  np.testing.assert_allclose(row_loss, np.mean([np.mean([nll(0, t) for t in (1, 2, 3, 6)]),
                                                per_example[2]]), rtol=1e-5)


def test_a_tie_is_not_a_correct_prediction():
  """A collapsed model (uniform logits) scores 0 token accuracy, not 100%; a strict winner counts."""
  tokens = jnp.asarray([[5, 7, 3, 0]])
  loss_mask = jnp.asarray([[0, 1, 1, 0]])  # positions 0 and 1 predict the targets 7 and 3
  _, stats = next_token_loss(jnp.zeros((1, 4, 16)), tokens, loss_mask)
  assert float(stats["correct"].sum()) == 0.0
  logits = jnp.zeros((1, 4, 16)).at[0, 0, 7].set(1.0).at[0, 1, 3].set(1.0).at[0, 1, 9].set(1.0)
  _, stats = next_token_loss(logits, tokens, loss_mask)
  np.testing.assert_array_equal(stats["correct"][0], [1, 0, 0, 0])  # position 1 ties with token 9


def test_gemma_style_fields_build_and_run():
  cfg = small_config(block="sequential", norm="rmsnorm", mlp_activation="geglu",
                     scale_embeddings=True, post_norms=True, attn_logit_softcap=50.0,
                     final_logit_softcap=30.0, num_kv_heads=1)
  model = MedPaLMM(cfg, rngs=nnx.Rngs(0))
  out = forward(model, *batch_with_images([1, 0]))
  assert np.isfinite(out).all() and np.abs(out).max() <= 30.0
  n = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  assert n == cfg.num_params()["total"]


def test_the_shapes_only_model_has_the_shapes_axes_and_dtypes_of_the_initialised_one():
  """abstract_model skips the random initialisers: every parameter still has the path, shape,
  dtype and logical axes of the model as nnx.eval_shape builds it with them."""
  from configs import tiny
  cfg = ModelConfig.from_dict(tiny.get_config().model)
  cfg = dataclasses.replace(cfg, lora=dataclasses.replace(cfg.lora, rank=2, vit=True))
  def described(model):
    return {path: (v.value.shape, v.value.dtype, v.get_metadata().get("out_sharding"))
            for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
  drawn = described(nnx.eval_shape(lambda: MedPaLMM(cfg, rngs=nnx.Rngs(params=0, dropout=1))))
  assert len(drawn) > 50 and any("lora" in "/".join(map(str, p)) for p in drawn)
  assert described(abstract_model(cfg)) == drawn


@pytest.mark.parametrize("name,expected", [("medpalm_m_12b", 12e9), ("medpalm_m_84b", 84e9),
                                           ("medpalm_m_562b", 562e9)])
def test_paper_configs_have_the_paper_sizes_without_allocating(name, expected):
  cfg = ModelConfig.from_dict(importlib.import_module(f"configs.{name}").get_config().model)
  abstract = abstract_model(cfg)
  leaves = jax.tree.leaves(nnx.state(abstract, nnx.Param))
  assert all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)
  total = sum(x.size for x in leaves)
  assert abs(total - expected) / expected < 0.05, total
  assert total == cfg.num_params()["total"]


def test_tiny_model_overfits_a_fixed_multimodal_batch():
  cfg = ModelConfig.from_dict(importlib.import_module("configs.tiny").get_config().model)
  model = MedPaLMM(cfg, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  b, n = 8, cfg.num_image_tokens
  length = n + 24
  tokens = rng.integers(5, cfg.decoder.vocab_size, size=(b, length)).astype(np.int32)
  tokens[:, 1:1 + n] = IMG
  size = cfg.vit.image_size
  images = rng.integers(0, 256, size=(b, 1, size, size, 3)).astype(np.uint8)
  input_mask = np.ones((b, length), bool)
  mask_ar = np.zeros((b, length), np.int32)
  mask_ar[:, n + 8:] = 1
  loss_mask = mask_ar.astype(bool)
  batch = tuple(jnp.asarray(x) for x in (tokens, images, input_mask, mask_ar, loss_mask))
  optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer, batch):
    tokens, images, input_mask, mask_ar, loss_mask = batch
    def loss_fn(m):
      return next_token_loss(m(tokens, images, input_mask, mask_ar), tokens, loss_mask)[0]
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  losses = [float(step(model, optimizer, batch)) for _ in range(40)]  # below 0.05 from step 15 on
  assert losses[0] > 5.0
  assert losses[-1] < 0.05, losses[-10:]


def _layer_norm(x, scale, bias=None, eps=1e-6):
  mean = x.mean(-1, keepdims=True)
  y = (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps) * scale
  return y if bias is None else y + bias


def _gelu_tanh(x):
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def test_vit_22b_block_is_the_parallel_block_with_qk_norm_and_no_qkv_or_norm_biases():
  # ViT-22B (Dehghani et al. 2023): y = LN(x); x + attn(y) + mlp(y); LayerNorm on q and k per
  # head; no bias on QKV or in any LayerNorm, the MLP keeps its biases. Written out in numpy
  # from the paper, with random (not initial) parameters so every term counts.
  from medpalm_m.model.vit import ViTBlock, ViTConfig
  cfg = ViTConfig(image_size=16, patch_size=8, width=8, depth=1, num_heads=2, mlp_dim=16,
                  block="parallel", qk_norm=True, qkv_bias=False, norm_bias=False)
  block = ViTBlock(cfg, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  state = nnx.state(block, nnx.Param)
  state = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), state)
  nnx.update(block, state)
  names = {jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(state)[0]}
  assert not any("qkv_bias" in n or "out_bias" in n or "norm2" in n or "/bias" in n.replace("'", "/")
                 for n in names if "mlp" not in n), names
  p = lambda module: np.asarray(module.value)
  x = rng.normal(size=(2, 4, 8)).astype(np.float32)

  y = _layer_norm(x, p(block.norm1.scale))
  qkv = np.einsum("bnd,dchk->cbnhk", y, p(block.qkv))
  q = _layer_norm(qkv[0], p(block.query_norm.scale))
  k = _layer_norm(qkv[1], p(block.key_norm.scale))
  logits = np.einsum("bqhk,bshk->bhqs", q, k) / np.sqrt(4)
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  attn = np.einsum("bhqs,bshk,hkd->bqd", weights, qkv[2], p(block.out))
  mlp = _gelu_tanh(y @ p(block.mlp_in) + p(block.mlp_in_bias)) @ p(block.mlp_out) + p(block.mlp_out_bias)
  np.testing.assert_allclose(np.asarray(block(jnp.asarray(x))), x + attn + mlp, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("fields", [dict(), dict(block="parallel", qk_norm=True, qkv_bias=False, norm_bias=False),
                                    dict(qk_norm=True), dict(block="parallel")])
def test_vit_num_params_counts_every_variant(fields):
  from medpalm_m.model.vit import ViT, ViTConfig
  cfg = ViTConfig(image_size=16, patch_size=8, width=8, depth=2, num_heads=2, mlp_dim=16, **fields)
  vit = ViT(cfg, rngs=nnx.Rngs(0))
  assert sum(x.size for x in jax.tree.leaves(nnx.state(vit, nnx.Param))) == cfg.num_params()


def test_bfloat16_matmul_operands_reach_every_weight_matmul_of_the_model_and_its_decoding():
  from medpalm_m.model import decode
  cfg = small_config()
  rounded_cfg = dataclasses.replace(cfg, matmul_operand_dtype="bfloat16")
  exact = MedPaLMM(cfg, rngs=nnx.Rngs(0))
  rounded = MedPaLMM(rounded_cfg, rngs=nnx.Rngs(0))  # same seed: the same parameters
  batch = batch_with_images([1, 2])
  want, got = forward(exact, *batch), forward(rounded, *batch)
  assert not np.array_equal(want, got)
  np.testing.assert_allclose(got, want, rtol=0.05, atol=0.05)
  # Every weight matmul (ViT, projector, decoder, logits) takes bfloat16 operands; only
  # attention's two products per layer (scores, weighted values) stay float32, in the jitted
  # forward and in decoding.
  tokens, images, input_mask, mask_ar = map(jnp.asarray, batch)

  def dots(model, fn, *args):
    graph, state = nnx.split(model)
    text = jax.jit(lambda s, *a: fn(nnx.merge(graph, s), *a)).lower(state, *args).as_text()
    lines = [line for line in text.splitlines() if "dot_general" in line]
    return sum("bf16" in line for line in lines), sum("bf16" not in line for line in lines)

  attention_products = 2 * (cfg.vit.depth + cfg.decoder.depth)
  call = lambda m, *a: m(*a)
  bf16, f32 = dots(exact, call, tokens, images, input_mask, mask_ar)
  assert bf16 == 0 and f32 > attention_products
  bf16, f32 = dots(rounded, call, tokens, images, input_mask, mask_ar)
  assert f32 == attention_products and bf16 >= cfg.vit.depth * 4 + 1 + cfg.decoder.depth * 6 + 1
  sampling = decode.SamplingConfig(max_new_tokens=2)
  generate = lambda m, *a: decode.generate(m, *a, sampling, eos_id=1)[0]
  bf16, f32 = dots(rounded, generate, tokens, images, jnp.asarray([12, 12]), mask_ar)
  assert bf16 > 0 and f32 == attention_products + 2 * cfg.decoder.depth  # the prefill, the loop


def test_matmul_operand_dtype_is_checked_and_auto_follows_the_hardware(monkeypatch):
  from medpalm_m.model import medpalm
  with pytest.raises(ValueError, match="model.matmul_operand_dtype"):
    ModelConfig.from_dict({**dataclasses.asdict(small_config()), "matmul_operand_dtype": "float16"})
  assert medpalm.resolve_matmul_operand_dtype("float32") == "float32"
  assert medpalm.resolve_matmul_operand_dtype("bfloat16") == "bfloat16"
  for has_amx, want in ((True, "bfloat16"), (False, "float32")):
    monkeypatch.setattr(medpalm, "_cpu_has_amx_bf16", lambda has_amx=has_amx: has_amx)
    assert medpalm.resolve_matmul_operand_dtype("auto") == want  # the tests run on a CPU


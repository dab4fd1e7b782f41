"""Attention capture: off by default and output-neutral; answer attention from a real checkpoint."""

import jax
import numpy as np
from flax import nnx

from medpalm_m.data import pipeline, tasks
from medpalm_m.data import tokenizer as tok
from medpalm_m.inspection import attention
from medpalm_m.inspection.workdir import Workdir
from medpalm_m.model.attention import attention_mask
from medpalm_m.model.template import ModelTemplate
from tests.model.test_model import batch_with_images, small_config


def test_capture_is_off_by_default_and_leaves_the_output_unchanged():
  # Random parameters from numpy: JAX's initialisers take longer to run or compile than the test.
  template, shapes = ModelTemplate.abstract(small_config(attention="prefix_lm"))
  rng = np.random.default_rng(0)
  params = {k: rng.normal(0, 0.3, v.shape).astype(np.float32) for k, v in shapes.items()}

  @jax.jit
  def forward_three_ways(params, *inputs):
    model = template.bind(params)
    plain = model(*inputs)
    _, nothing = nnx.capture(model, nnx.Intermediate)(*inputs)
    model.set_attributes(capture_attention=True)
    captured, sown = nnx.capture(model, nnx.Intermediate)(*inputs)
    return plain, nothing, captured, sown

  tokens, images, input_mask, mask_ar = batch_with_images([1, 2])
  plain, nothing, captured, sown = forward_three_ways(params, tokens, images, input_mask, mask_ar)
  assert not list(nnx.to_flat_state(nothing))
  np.testing.assert_array_equal(np.asarray(captured), np.asarray(plain))
  layers = list(nnx.to_flat_state(sown))
  assert [path[2] for path, _ in layers] == [0, 1]
  allowed = np.asarray(attention_mask(input_mask, mask_ar))  # [B, T, S]
  for _, value in layers:
    (weights,) = value.get_value()
    weights = np.asarray(weights)  # [B, kv_heads, groups, T, S]
    assert weights.shape == (2, 2, 2, 20, 20)
    rows_with_keys = allowed.any(-1)  # [B, T]
    np.testing.assert_allclose(weights.sum(-1).transpose(0, 3, 1, 2)[rows_with_keys], 1.0, rtol=1e-5)
    hidden = ~np.broadcast_to(allowed[:, None, None], weights.shape)
    assert hidden.any() and np.all(weights[hidden] == 0.0)  # nothing leaks past the mask


def test_answer_attention_rows_are_the_ones_that_chose_each_greedy_token(evaluated_workdir, synthetic_data_dir):
  run = Workdir.locate(evaluated_workdir, synthetic_data_dir)
  example = pipeline.eval_examples(tasks.get("synthetic_vqa_rad"), run.data_dir, "test", max_examples=1)[0]
  inspection = attention.inspect_answer(run, example["prompt"], example["images"])
  n = len(inspection.token_ids)
  assert 1 <= n <= run.config.eval.max_decode_tokens
  assert tok.EOS_ID not in inspection.token_ids[:-1]
  # Greedy: the teacher-forced pass must pick, at every row kept, the token the decoder chose;
  # a row off by one would not.
  assert inspection.argmax_ids == inspection.token_ids
  assert np.all((inspection.token_probs > 0) & (inspection.token_probs <= 1))
  grid = run.config.model.vit.image_size // run.config.model.vit.patch_size
  decoder = run.config.model.decoder
  assert inspection.to_images.shape == (decoder.depth, decoder.num_heads, n, 1, grid, grid)
  share = inspection.image_share
  assert np.all((share > 0) & (share < 1))  # the rest of each row goes to text tokens
  assert inspection.images.shape == (1, run.config.model.vit.image_size, run.config.model.vit.image_size, 3)

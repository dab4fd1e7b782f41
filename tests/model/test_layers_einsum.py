"""layers.einsum: the hand-written gradients equal JAX's own, in every form the model uses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medpalm_m.model import layers


@pytest.mark.parametrize("spec, shape_a, shape_b", [
    ("btd,vd->btv", (2, 3, 4), (5, 4)),  # tied-embedding logits (b's gradient is transposed back)
    ("...d,df->...f", (2, 3, 4), (4, 6)),  # MLP
    ("btd,dnh->btnh", (2, 3, 4), (4, 2, 5)),  # attention projections
    ("btnh,nhd->btd", (2, 3, 4, 5), (4, 5, 6)),
    ("bnd,dchk->cbnhk", (2, 3, 4), (4, 3, 2, 5)),  # ViT fused qkv
])
def test_gradients_equal_jax_einsum(spec, shape_a, shape_b):
  a = jax.random.normal(jax.random.key(0), shape_a)
  b = jax.random.normal(jax.random.key(1), shape_b)

  def loss(einsum):
    return lambda a, b: jnp.sum(jnp.sin(einsum(spec, a, b)))

  np.testing.assert_array_equal(layers.einsum(spec, a, b), jnp.einsum(spec, a, b))
  ours = jax.grad(loss(layers.einsum), argnums=(0, 1))(a, b)
  reference = jax.grad(loss(jnp.einsum), argnums=(0, 1))(a, b)
  for got, want in zip(ours, reference):
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _rounded(x):
  return x.astype(jnp.bfloat16).astype(jnp.float32)


@pytest.mark.parametrize("spec, shape_a, shape_b", [
    ("btd,vd->btv", (2, 3, 8), (5, 8)),
    ("...d,df->...f", (2, 3, 8), (8, 6)),
    ("btnh,nhd->btd", (2, 3, 4, 5), (4, 5, 6)),
])
def test_bfloat16_operands_round_the_inputs_accumulate_in_float32_and_keep_weight_gradients_exact(
    spec, shape_a, shape_b):
  a = jax.random.normal(jax.random.key(2), shape_a)
  b = jax.random.normal(jax.random.key(3), shape_b)
  grad = jax.random.normal(jax.random.key(4), jnp.einsum(spec, a, b).shape)

  def traced(a, b):
    with layers.matmul_operands("bfloat16"):
      return layers.einsum(spec, a, b)

  out, vjp = jax.vjp(jax.jit(traced), a, b)
  assert out.dtype == jnp.float32
  # The float32 product of the rounded operands: what a bfloat16 x bfloat16 -> float32 dot gives.
  np.testing.assert_allclose(out, jnp.einsum(spec, _rounded(a), _rounded(b)), rtol=1e-5, atol=1e-5)
  assert not np.allclose(out, jnp.einsum(spec, a, b), rtol=1e-6, atol=1e-6)  # it did round
  grad_a, grad_b = vjp(grad)
  spec_a, spec_b, spec_out = layers._einsum_operands(spec)
  np.testing.assert_allclose(grad_a, jnp.einsum(f"{spec_out},{spec_b}->{spec_a}", _rounded(grad), _rounded(b)),
                             rtol=1e-5, atol=1e-5)
  # The weight gradient from the float32 values (XLA:CPU cannot run that contraction in bfloat16).
  np.testing.assert_allclose(grad_b, jnp.einsum(f"{spec_a},{spec_out}->{spec_b}", a, grad),
                             rtol=1e-5, atol=1e-5)


def test_the_operand_dtype_is_fixed_when_traced_and_float32_or_none_changes_nothing():
  a = jax.random.normal(jax.random.key(5), (3, 8))
  b = jax.random.normal(jax.random.key(6), (8, 4))
  for plain in (None, "float32"):
    with layers.matmul_operands(plain):
      np.testing.assert_array_equal(layers.einsum("td,df->tf", a, b), jnp.einsum("td,df->tf", a, b))
  with layers.matmul_operands("bfloat16"):
    rounded = jax.jit(lambda a, b: layers.einsum("td,df->tf", a, b)).lower(a, b).as_text()
  exact = jax.jit(lambda a, b: layers.einsum("td,df->tf", a, b)).lower(a, b).as_text()
  assert "bf16" in rounded and "bf16" not in exact
  # bfloat16 inputs (config.model.dtype) are left as they are.
  with layers.matmul_operands("bfloat16"):
    half = layers.einsum("td,df->tf", a.astype(jnp.bfloat16), b.astype(jnp.bfloat16))
  assert half.dtype == jnp.bfloat16

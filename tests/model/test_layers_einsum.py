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

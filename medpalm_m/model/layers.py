"""Small layers shared by the ViT and the decoder: parameters with logical axes, norms, MLPs, and
the low-rank adapters (LoRA) that their kernels may carry."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from typing import ClassVar, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

Axes = tuple[str | None, ...]


_OPERAND_DTYPE: contextvars.ContextVar[str | None] = contextvars.ContextVar("matmul_operand_dtype",
                                                                        default=None)


@contextlib.contextmanager
def matmul_operands(dtype: str | None):
  """While tracing inside, `einsum` rounds its float32 operands to `dtype` ("bfloat16"; None or
  "float32": unchanged) and accumulates in float32. A trace-time setting: what a jitted function
  traced inside it computes is fixed in its program."""
  token = _OPERAND_DTYPE.set(None if dtype in (None, "float32") else dtype)
  try:
    yield
  finally:
    _OPERAND_DTYPE.reset(token)


def einsum(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
  """`jnp.einsum(spec, a, b)` whose gradients are two more einsums, written out, with the operand
  dtype of an enclosing `matmul_operands`.

  With JAX's own transpose rule for dot_general, XLA:CPU writes the incoming gradient a second
  time in transposed order for the weight-gradient dot, fused into the elementwise op that
  produced it (the GeGLU derivative, recomputed): in the bench-small decoder MLP
  that fusion alone took ~80 ms of a 430 ms forward + backward (xprof). Stated as
  einsum(out, b -> a) and einsum(a, out -> b), the same contractions compile to plain dots and
  the MLP takes 310 ms, torch's time. Same values up to float reassociation. `spec` is
  "a,b->out" with every index of one operand in the other or in the output.
  """
  return _einsum(spec, _OPERAND_DTYPE.get(), a, b)


def _product(spec: str, x: jax.Array, y: jax.Array, operand_dtype: str | None) -> jax.Array:
  if operand_dtype is None or x.dtype != jnp.float32:
    return jnp.einsum(spec, x, y)
  # float32 accumulation and result, as a TPU's default-precision float32 matmul; on a CPU with
  # AMX these dots ran 3-5x faster than float32 ones (benchmarks/RESULTS.md).
  return jnp.einsum(spec, x.astype(operand_dtype), y.astype(operand_dtype),
                    preferred_element_type=jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _einsum(spec: str, operand_dtype: str | None, a: jax.Array, b: jax.Array) -> jax.Array:
  return _product(spec, a, b, operand_dtype)


def _einsum_operands(spec: str) -> tuple[str, str, str]:
  inputs, out = spec.replace(" ", "").split("->")
  first, second = inputs.split(",")
  return first, second, out


def _einsum_fwd(spec, operand_dtype, a, b):
  return _product(spec, a, b, operand_dtype), (a, b)


def _einsum_bwd(spec, operand_dtype, residuals, grad):
  a, b = residuals
  spec_a, spec_b, out = _einsum_operands(spec)
  grad_a = _product(f"{out},{spec_b}->{spec_a}", grad, b, operand_dtype)
  # The weight gradient stays float32 whatever the operand dtype: XLA:CPU (jax 0.10) compiles
  # these bfloat16 x bfloat16 -> float32 contractions over the token axes but fails to run them
  # ("Unsupported element type for DotThunk::Execute").
  # b's gradient in the order a plain dot produces it (a's free axes, then the output's), then
  # transposed: asked for "vd" straight away (the tied embedding), XLA:CPU transposes the
  # [tokens, vocab] gradient instead, 328 MB at bench-small, ~260 ms a step.
  natural = "".join(dict.fromkeys(i for i in spec_a + out if i in spec_b))
  if "." not in spec_b and sorted(natural) == sorted(spec_b) and natural != spec_b:
    grad_b = jnp.einsum(f"{spec_a},{out}->{natural}", a, grad)
    grad_b = jnp.transpose(grad_b, [natural.index(i) for i in spec_b])
  else:
    grad_b = jnp.einsum(f"{spec_a},{out}->{spec_b}", a, grad)
  return grad_a.astype(a.dtype), grad_b.astype(b.dtype)


_einsum.defvjp(_einsum_fwd, _einsum_bwd)


_SHAPES_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("shapes_only", default=False)


@contextlib.contextmanager
def shapes_only():
  """Inside it, `param` skips the random initialiser and the parameter RNG stream: for building a
  model under `nnx.eval_shape`, where only shapes come out. Each draw from an nnx.Rngs stream
  under a trace stores its counter back, and flax's check of that store asks the traced counter
  for its sharding, which jax answers with an error message built from the whole trace so far:
  the 562B model's 2,376 draws took 60 of the 64 s of its eval_shape (AMD EPYC)."""
  token = _SHAPES_ONLY.set(True)
  try:
    yield
  finally:
    _SHAPES_ONLY.reset(token)


def param(rngs: nnx.Rngs, shape: Sequence[int], axes: Axes, *, stddev: float | None = None,
          fan_in: int | None = None, value: float | None = None, dtype=jnp.float32) -> nnx.Param:
  """A parameter that carries its logical axis names.

  Sharding is applied later by `sharding.py` (jit out_shardings), never at creation, so the same
  module builds on one CPU, abstractly for a 562B config, or straight into a mesh.
  """
  if len(shape) != len(axes):
    raise ValueError(f"parameter of shape {tuple(shape)} needs {len(shape)} axis names, got {axes}")
  if value is not None:
    init = jnp.full(shape, value, dtype)
  elif _SHAPES_ONLY.get():
    init = jnp.zeros(shape, dtype)
  else:
    if stddev is None:
      stddev = 1.0 / math.sqrt(fan_in if fan_in is not None else shape[0])
    init = stddev * jax.random.truncated_normal(rngs.params(), -2.0, 2.0, shape, dtype)
  return nnx.Param(init, out_sharding=tuple(axes), eager_sharding=False)


class LoRA(nnx.Module):
  """The low-rank update of one kernel W (Hu et al. 2021): a layer computes x W + s (x A) B with
  s = alpha / rank. A [inputs..., rank] starts random, B [rank, outputs...] at zero, so that the
  update is exactly zero until B trains. A and B keep W's logical axes on their W sides and
  'lora_rank' (replicated by the rules) on the rank, so they shard like W.

  The update is two thin einsums, never the full-size A B: nothing as large as W (or its
  gradient) exists for an adapted kernel whose W is frozen. `model.lora.merge_adapters` folds s A B
  into W for an export.
  """

  def __init__(self, kernel: nnx.Param, inputs: int, rank: int, alpha: float, *, rngs: nnx.Rngs):
    """`inputs`: how many leading axes of `kernel` its einsum contracts with the layer's input."""
    shape, axes = tuple(kernel.value.shape), tuple(kernel.get_metadata()["out_sharding"])
    self.a = param(rngs, (*shape[:inputs], rank), (*axes[:inputs], "lora_rank"),
                   fan_in=math.prod(shape[:inputs]))
    self.b = param(rngs, (rank, *shape[inputs:]), ("lora_rank", *axes[inputs:]), value=0.0)
    self.scale = alpha / rank

  def __call__(self, spec: str, x: jax.Array) -> jax.Array:
    """The update to `einsum(spec, x, W)`, for the same spec ("btd,dnh->btnh")."""
    x_spec, kernel_spec, out_spec = _einsum_operands(spec)
    rank = next(c for c in "rzyxwvuts" if c not in spec)
    inputs = self.a.value.ndim - 1
    kernel_in, kernel_out = kernel_spec[:inputs], kernel_spec[inputs:]
    x_rest = "".join(c for c in x_spec if c not in kernel_in)
    dtype = x.dtype
    low = einsum(f"{x_spec},{kernel_in}{rank}->{x_rest}{rank}", x, self.a.value.astype(dtype))
    low = low * jnp.asarray(self.scale, dtype)
    return einsum(f"{x_rest}{rank},{rank}{kernel_out}->{out_spec}", low, self.b.value.astype(dtype))


class Adaptable(nnx.Module):
  """A module whose kernels may carry LoRA adapters. `LORA_KERNELS` names those kernels, each with
  the number of its leading axes that are inputs; `model.lora.attach_adapters` gives the module a
  `lora` dict {kernel name: LoRA} after construction when config.model.lora selects some of them,
  and `project` adds their update wherever the module applies a kernel."""

  LORA_KERNELS: ClassVar[dict[str, int]] = {}
  lora = None  # an nnx.Dict of LoRA, set on the instance by model.lora.attach_adapters

  def project(self, kernel_name: str, spec: str, x: jax.Array) -> jax.Array:
    """`einsum(spec, x, kernel)` in x's dtype, plus the kernel's LoRA update if it has one."""
    y = einsum(spec, x, getattr(self, kernel_name).value.astype(x.dtype))
    if self.lora is not None and kernel_name in self.lora:
      y = y + self.lora[kernel_name](spec, x)
    return y


class LayerNorm(nnx.Module):
  """LayerNorm; PaLM and ViT-22B drop the bias (`use_bias=False`), the standard ViT keeps it.

  `axis` names the normalised dimension: 'embed' for the residual stream, 'head_dim' for
  ViT-22B's query/key norms.
  """

  def __init__(self, dim: int, *, use_bias: bool, rngs: nnx.Rngs, eps: float = 1e-6,
               axis: str = "embed"):
    self.scale = param(rngs, (dim,), (axis,), value=1.0)
    self.bias = param(rngs, (dim,), (axis,), value=0.0) if use_bias else None
    self.eps = eps

  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = x.dtype
    x = x.astype(jnp.float32)
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    y = (x - mean) * jax.lax.rsqrt(var + self.eps) * self.scale.value
    if self.bias is not None:
      y = y + self.bias.value
    return y.astype(dtype)


class RMSNorm(nnx.Module):
  """Gemma's RMSNorm with the `(1 + scale)` parameterisation, so imported weights load as they are.

  `axis` names the normalised dimension: 'embed' for the residual stream, 'head_dim' for Gemma 3's
  query/key norms, 'embed_vit' for the norm of image tokens before the projector.
  """

  def __init__(self, dim: int, *, rngs: nnx.Rngs, eps: float = 1e-6, axis: str = "embed"):
    self.scale = param(rngs, (dim,), (axis,), value=0.0)
    self.eps = eps

  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = x.dtype
    x = x.astype(jnp.float32)
    y = x * jax.lax.rsqrt(jnp.square(x).mean(-1, keepdims=True) + self.eps)
    return (y * (1.0 + self.scale.value)).astype(dtype)


def make_norm(kind: str, dim: int, rngs: nnx.Rngs, eps: float = 1e-6) -> LayerNorm | RMSNorm:
  if kind == "layernorm":
    return LayerNorm(dim, use_bias=False, rngs=rngs, eps=eps)
  if kind == "rmsnorm":
    return RMSNorm(dim, rngs=rngs, eps=eps)
  raise ValueError(f"model.decoder.norm must be 'layernorm' or 'rmsnorm', got {kind!r}")


class GatedMLP(Adaptable):
  """SwiGLU (PaLM) or GeGLU (Gemma): act(x W_gate) * (x W_up) W_down, no biases."""

  LORA_KERNELS = {"gate": 1, "up": 1, "down": 1}

  def __init__(self, width: int, mlp_dim: int, activation: str, *, rngs: nnx.Rngs):
    if activation not in ("swiglu", "geglu"):
      raise ValueError(f"model.decoder.mlp_activation must be 'swiglu' or 'geglu', got {activation!r}")
    self.activation = activation
    self.gate = param(rngs, (width, mlp_dim), ("embed", "mlp"))
    self.up = param(rngs, (width, mlp_dim), ("embed", "mlp"))
    self.down = param(rngs, (mlp_dim, width), ("mlp", "embed"))

  def __call__(self, x: jax.Array) -> jax.Array:
    gate = self.project("gate", "...d,df->...f", x)
    up = self.project("up", "...d,df->...f", x)
    act = jax.nn.silu(gate) if self.activation == "swiglu" else jax.nn.gelu(gate, approximate=True)
    return self.project("down", "...f,fd->...d", act * up)

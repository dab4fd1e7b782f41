"""The four implementations behind `config.model.attention_impl`, one signature for all.

    xla      the reference: [B, heads, T, S] logits in float32, masked, softmax, weighted sum.
    blocked  pure JAX, an online softmax over blocks of keys (flash attention's recurrence), with
             a hand-written backward pass that recomputes each block from the saved row maxima
             and sums:
             neither pass holds more than one [B, heads, T, block] tile of logits. Any backend.
    cudnn    `jax.nn.dot_product_attention(implementation="cudnn")`: cuDNN flash attention, GPU.
    splash   Pallas splash attention (`jax.experimental.pallas.ops.tpu.splash_attention`), TPU.

Every implementation takes the same dense boolean mask [B, T, S] (True = may attend), so the
prefix-LM, causal, packed-segment, sliding-window and KV-cache masks built by the model reach all
four unchanged; soft-capping is tanh(logits / cap) * cap before the mask. Masked logits take
MASK_VALUE (finite), so a query that sees no key averages all values in xla and blocked alike;
the fused kernels skip such rows instead. Only padding rows of packed batches are like that, and
they carry no loss.

The config value is one implementation for every backend, or a per-backend choice such as
"tpu:splash,gpu:cudnn,cpu:xla" (the paper configs'), resolved when the model is traced.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

IMPLEMENTATIONS = ("xla", "blocked", "cudnn", "splash")
BACKENDS = ("cpu", "gpu", "tpu")

# Large negative instead of -inf: a fully masked row (padding queries) must give finite values,
# not NaN, or the NaN leaks into gradients through the masked loss.
MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)

# Keys per block of the blocked implementation. Measured on this repository's CPU at bench-small
# (benchmarks/accelerator.py); a multiple of 128 so that accelerators tile it without remainder.
KEY_BLOCK = 128

# Splash attention's key blocks must be a multiple of the TPU's 128 lanes.
_SPLASH_BLOCK = 128


def parse_choice(spec: str) -> dict[str, str]:
  """'blocked' -> that implementation on every backend; 'tpu:splash,gpu:cudnn,cpu:xla' -> one per
  backend (every backend must be named). Raises a ValueError naming the bad part."""
  if ":" not in spec:
    if spec not in IMPLEMENTATIONS:
      raise ValueError(f"model.attention_impl {spec!r} is not one of {', '.join(IMPLEMENTATIONS)} "
                       "(or a per-backend choice such as 'tpu:splash,gpu:cudnn,cpu:xla')")
    return dict.fromkeys(BACKENDS, spec)
  choice = {}
  for part in spec.split(","):
    backend, _, impl = part.strip().partition(":")
    if backend not in BACKENDS or impl not in IMPLEMENTATIONS:
      raise ValueError(f"model.attention_impl: {part!r} in {spec!r} must be backend:implementation "
                       f"with a backend in {', '.join(BACKENDS)} and an implementation in "
                       f"{', '.join(IMPLEMENTATIONS)}")
    choice[backend] = impl
  missing = [b for b in BACKENDS if b not in choice]
  if missing:
    raise ValueError(f"model.attention_impl {spec!r} names no implementation for {', '.join(missing)}")
  return choice


def resolve(spec: str, backend: str | None = None) -> str:
  """The implementation `spec` chooses on `backend` (default: the backend JAX computes on)."""
  backend = backend or jax.default_backend()
  return parse_choice(spec)[backend if backend in BACKENDS else "gpu"]  # rocm, cuda: gpu


def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None, *, impl: str,
           logit_scale: float, softcap: float | None, interpret: bool = False) -> jax.Array:
  """q [B, T, heads, D], k and v [B, S, kv_heads, D], mask [B, T, S] bool or None (all visible)
  -> [B, T, heads, D] in q's dtype. `impl` is a config value (see `resolve`); `interpret` runs the
  Pallas kernel in interpret mode, which is how splash runs (slowly) on a CPU, for tests."""
  impl = resolve(impl)
  if impl == "xla":
    return xla_attention(q, k, v, mask, logit_scale=logit_scale, softcap=softcap)
  if impl == "blocked":
    return blocked_attention(q, k, v, mask, logit_scale=logit_scale, softcap=softcap)
  if impl == "cudnn":
    return cudnn_attention(q, k, v, mask, logit_scale=logit_scale, softcap=softcap)
  return splash_attention(q, k, v, mask, logit_scale=logit_scale, softcap=softcap, interpret=interpret)


# xla: the reference ------------------------------------------------------------------------------

def attention_weights(q: jax.Array, k: jax.Array, mask: jax.Array | None, *, logit_scale: float,
                      softcap: float | None) -> jax.Array:
  """Softmax weights [B, kv_heads, groups, T, S] in q's dtype (what inspection captures)."""
  batch, length, heads, head_dim = q.shape
  kv_heads = k.shape[2]
  q = q.reshape(batch, length, kv_heads, heads // kv_heads, head_dim)
  logits = jnp.einsum("btkgh,bskh->bkgts", q, k).astype(jnp.float32) * logit_scale
  if softcap is not None:
    logits = jnp.tanh(logits / softcap) * softcap
  if mask is not None:
    logits = jnp.where(mask[:, None, None, :, :], logits, MASK_VALUE)
  return jax.nn.softmax(logits, axis=-1).astype(q.dtype)


def weighted_values(weights: jax.Array, v: jax.Array) -> jax.Array:
  """weights [B, kv_heads, groups, T, S], v [B, S, kv_heads, D] -> [B, T, heads, D]."""
  batch, kv_heads, groups, length = weights.shape[:4]
  attended = jnp.einsum("bkgts,bskh->btkgh", weights, v)
  return attended.reshape(batch, length, kv_heads * groups, v.shape[-1])


def xla_attention(q, k, v, mask, *, logit_scale: float, softcap: float | None) -> jax.Array:
  return weighted_values(attention_weights(q, k, mask, logit_scale=logit_scale, softcap=softcap), v)


# blocked: online softmax over key blocks -----------------------------------------------------------

def blocked_attention(q, k, v, mask, *, logit_scale: float, softcap: float | None) -> jax.Array:
  batch, length, heads, head_dim = q.shape
  block = KEY_BLOCK
  keys, kv_heads = k.shape[1], k.shape[2]
  if mask is None:
    mask = jnp.ones((batch, length, keys), bool)
  blocks = -(-keys // block)
  pad = blocks * block - keys
  # Padding keys are not keys at all: they must not join the uniform average of a fully masked
  # row, so they are told apart from masked keys (exists) and get -inf, not MASK_VALUE.
  exists = jnp.arange(blocks * block) < keys
  k, v = (jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0))) for x in (k, v))
  mask = jnp.pad(mask, ((0, 0), (0, 0), (0, pad)))
  # Blocks first, for the scan: k, v [n, B, block, kv_heads, D]; mask [n, B, T, block].
  k = k.reshape(batch, blocks, block, kv_heads, head_dim).swapaxes(0, 1)
  v = v.reshape(batch, blocks, block, kv_heads, head_dim).swapaxes(0, 1)
  mask = mask.reshape(batch, length, blocks, block).transpose(2, 0, 1, 3)
  exists = exists.reshape(blocks, block)
  q = q.reshape(batch, length, kv_heads, heads // kv_heads, head_dim)
  out = _blocked(q, k, v, mask, exists, logit_scale, softcap)
  return out.reshape(batch, length, heads, head_dim)


def _block_logits(q, k, mask, exists, logit_scale, softcap):
  """One block's (uncapped logits, masked capped logits) [B, kv_heads, groups, T, block]."""
  raw = jnp.einsum("btkgh,bskh->bkgts", q, k).astype(jnp.float32) * logit_scale
  capped = jnp.tanh(raw / softcap) * softcap if softcap is not None else raw
  masked = jnp.where(mask[:, None, None], capped, MASK_VALUE)
  return raw, jnp.where(exists, masked, -jnp.inf)


def _blocked_forward(q, k, v, mask, exists, logit_scale, softcap):
  """(output [B, T, kv_heads, groups, D] in q's dtype, (row max, row sum) [B, kv_heads, groups, T]).

  Max and sum stay apart, not folded into one log-sum-exp: a row that sees no key has the max
  MASK_VALUE, beside which float32 cannot hold log(sum), and its probabilities would come back
  as 1 instead of 1/keys."""
  batch, length, kv_heads, groups, head_dim = q.shape

  def step(carry, blk):
    acc, row_max, row_sum = carry
    k_blk, v_blk, mask_blk, exists_blk = blk
    _, logits = _block_logits(q, k_blk, mask_blk, exists_blk, logit_scale, softcap)
    new_max = jnp.maximum(row_max, logits.max(axis=-1))
    correction = jnp.exp(row_max - new_max)
    p = jnp.exp(logits - new_max[..., None])
    row_sum = row_sum * correction + p.sum(axis=-1)
    acc = acc * correction[..., None] + jnp.einsum("bkgts,bskh->bkgth", p.astype(q.dtype), v_blk)
    return (acc, new_max, row_sum), None

  stats = (batch, kv_heads, groups, length)
  init = (jnp.zeros((*stats, head_dim), jnp.float32), jnp.full(stats, -jnp.inf, jnp.float32),
          jnp.zeros(stats, jnp.float32))
  (acc, row_max, row_sum), _ = jax.lax.scan(step, init, (k, v, mask, exists))
  out = (acc / row_sum[..., None]).transpose(0, 3, 1, 2, 4).astype(q.dtype)
  return out, (row_max, row_sum)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _blocked(q, k, v, mask, exists, logit_scale, softcap):
  return _blocked_forward(q, k, v, mask, exists, logit_scale, softcap)[0]


def _blocked_fwd(q, k, v, mask, exists, logit_scale, softcap):
  out, (row_max, row_sum) = _blocked_forward(q, k, v, mask, exists, logit_scale, softcap)
  return out, (q, k, v, mask, exists, out, row_max, row_sum)


def _blocked_bwd(logit_scale, softcap, residuals, grad_out):
  """Flash attention's backward pass: per key block, recompute the probabilities from the saved
  row maxima and sums and accumulate dq; dk and dv of the block come out whole."""
  q, k, v, mask, exists, out, row_max, row_sum = residuals
  grad_out = grad_out.astype(jnp.float32)
  # sum_s p * dp, the softmax's correction term, equals rowsum(dO * O).
  delta = jnp.einsum("btkgh,btkgh->bkgt", grad_out, out.astype(jnp.float32))

  def step(grad_q, blk):
    k_blk, v_blk, mask_blk, exists_blk = blk
    raw, logits = _block_logits(q, k_blk, mask_blk, exists_blk, logit_scale, softcap)
    p = jnp.exp(logits - row_max[..., None]) / row_sum[..., None]
    grad_v = jnp.einsum("bkgts,btkgh->bskh", p, grad_out)
    grad_p = jnp.einsum("btkgh,bskh->bkgts", grad_out, v_blk.astype(jnp.float32))
    grad_logits = p * (grad_p - delta[..., None])
    grad_logits = jnp.where(mask_blk[:, None, None], grad_logits, 0.0)  # where() passes no gradient
    if softcap is not None:
      grad_logits = grad_logits * (1.0 - jnp.tanh(raw / softcap) ** 2)
    grad_logits = grad_logits * logit_scale
    grad_q = grad_q + jnp.einsum("bkgts,bskh->btkgh", grad_logits, k_blk.astype(jnp.float32))
    grad_k = jnp.einsum("bkgts,btkgh->bskh", grad_logits, q.astype(jnp.float32))
    return grad_q, (grad_k.astype(k_blk.dtype), grad_v.astype(v_blk.dtype))

  grad_q, (grad_k, grad_v) = jax.lax.scan(step, jnp.zeros(q.shape, jnp.float32), (k, v, mask, exists))
  return grad_q.astype(q.dtype), grad_k, grad_v, None, None


_blocked.defvjp(_blocked_fwd, _blocked_bwd)


# cudnn: GPU ------------------------------------------------------------------------------------

def cudnn_attention(q, k, v, mask, *, logit_scale: float, softcap: float | None) -> jax.Array:
  if softcap is not None:
    raise ValueError("model.attention_impl 'cudnn' cannot express attention logit soft-capping "
                     f"(model.decoder.attn_logit_softcap={softcap}): jax.nn.dot_product_attention "
                     "has no soft-cap; use 'xla' or 'blocked' for this model")
  if jax.default_backend() != "gpu":
    raise ValueError(f"model.attention_impl 'cudnn' needs a GPU (cuDNN flash attention); this "
                     f"process computes on {jax.default_backend()}: use 'xla' or 'blocked' here, or a "
                     "per-backend choice such as 'tpu:splash,gpu:cudnn,cpu:xla'")
  if q.dtype not in (jnp.bfloat16, jnp.float16):
    raise ValueError(f"model.attention_impl 'cudnn' needs bfloat16 or float16 compute, got "
                     f"{q.dtype}: set model.dtype='bfloat16' or use 'xla' or 'blocked'")
  # The mask goes to cuDNN as an additive bias (jax turns it into one): any mask, prefix-LM,
  # packed segments and sliding windows included. Masked-out rows are left to cuDNN.
  mask = None if mask is None else mask[:, None]
  return jax.nn.dot_product_attention(q, k, v, mask=mask, scale=logit_scale, implementation="cudnn")


# splash: TPU (or a CPU in interpret mode) ------------------------------------------------------

def splash_attention(q, k, v, mask, *, logit_scale: float, softcap: float | None,
                     interpret: bool = False) -> jax.Array:
  """Splash attention with the mask as a dynamic (traced) mask, so that each example's own
  prefix, segments and cache slots are expressed. The kernel's masks have no batch axis, so batch
  and heads are folded into one axis of B * heads, and keys and values repeated across the
  query heads of their group (MQA's single key head is repeated heads times)."""
  if jax.default_backend() != "tpu" and not interpret:
    raise ValueError(f"model.attention_impl 'splash' needs a TPU (Pallas splash attention); this "
                     f"process computes on {jax.default_backend()}: use 'xla' or 'blocked' here, or a "
                     "per-backend choice such as 'tpu:splash,gpu:cudnn,cpu:xla'")
  # Imported here: the Pallas TPU kernels load Mosaic, which no other backend needs.
  from jax.experimental.pallas.ops.tpu import splash_attention as splash

  batch, length, heads, head_dim = q.shape
  keys, kv_heads = k.shape[1], k.shape[2]
  if mask is None:
    mask = jnp.ones((batch, length, keys), bool)
  # Query blocks of 128, or one block of the query rounded up to 8 sublanes (decoding: length 1);
  # key blocks of 128. Padding keys are masked out; padding queries are dropped afterwards.
  block_q = _SPLASH_BLOCK if length >= _SPLASH_BLOCK else 8 * math.ceil(length / 8)
  pad_q = -length % block_q
  pad_k = -keys % _SPLASH_BLOCK
  q = jnp.pad(q, ((0, 0), (0, pad_q), (0, 0), (0, 0)))
  k, v = (jnp.pad(x, ((0, 0), (0, pad_k), (0, 0), (0, 0))) for x in (k, v))
  mask = jnp.pad(mask, ((0, 0), (0, pad_q), (0, pad_k)))

  def heads_first(x, n):  # [B, L, n, D] -> [B * heads, L, D]
    x = jnp.repeat(x, heads // n, axis=2) if n != heads else x
    return x.transpose(0, 2, 1, 3).reshape(batch * heads, x.shape[1], head_dim)

  block_sizes = splash.BlockSizes(
      block_q=block_q, block_kv=_SPLASH_BLOCK, block_kv_compute=_SPLASH_BLOCK,
      block_q_dkv=block_q, block_kv_dkv=_SPLASH_BLOCK, block_kv_dkv_compute=_SPLASH_BLOCK,
      block_q_dq=block_q, block_kv_dq=_SPLASH_BLOCK)
  kernel = splash.make_splash_mha(
      jnp.repeat(mask, heads, axis=0), block_sizes=block_sizes, mask_value=MASK_VALUE,
      attn_logits_soft_cap=softcap, head_shards=1, q_seq_shards=1, interpret=interpret)
  # JAX 0.10.2 stores the dynamic mask's flag as an array, which is a tracer under jit, and then
  # branches on it in Python only to name a profiler scope; None names the static scope instead.
  kernel.fwd_mask_info = kernel.fwd_mask_info._replace(is_dynamic_mask=None)
  # The kernel does not scale: q * scale gives (q . k) * scale up to rounding.
  out = kernel((heads_first(q, heads) * logit_scale).astype(q.dtype), heads_first(k, kv_heads),
               heads_first(v, kv_heads))
  out = out.reshape(batch, heads, length + pad_q, head_dim).transpose(0, 2, 1, 3)
  return out[:, :length].astype(q.dtype)

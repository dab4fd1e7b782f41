"""Next-token cross-entropy on target tokens only (PaLM-E), with optional z-loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def next_token_loss(logits: jax.Array, tokens: jax.Array, loss_mask: jax.Array,
                    z_loss: float = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Mean loss over target tokens, and per-example sums (for per-task accounting)."""
  loss_sum, stats = next_token_loss_sum(logits, tokens, loss_mask, z_loss)
  return loss_sum / jnp.maximum(stats["num_tokens"].sum(), 1.0), stats


def next_token_loss_sum(logits: jax.Array, tokens: jax.Array, loss_mask: jax.Array,
                        z_loss: float = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
  """logits [B, T, V] at position t predict tokens[t + 1]; loss_mask [B, T] marks target tokens.

  Returns the loss summed over target tokens: the trainer divides by the token count of the
  whole (accumulated) batch, so k micro-batches give exactly the gradient of one big batch.
  """
  logits, targets = logits[:, :-1], tokens[:, 1:]
  weights = loss_mask[:, 1:].astype(jnp.float32)
  log_z = jax.nn.logsumexp(logits, axis=-1)
  target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  nll = log_z - target_logit
  per_token = nll + z_loss * jnp.square(log_z)
  correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
  loss_sum = (per_token * weights).sum()
  stats = {
      "nll_sum": (nll * weights).sum(axis=1),
      "correct_sum": (correct * weights).sum(axis=1),
      "num_tokens": weights.sum(axis=1),
  }
  return loss_sum, stats

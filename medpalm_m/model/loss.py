"""Next-token cross-entropy on target tokens only (PaLM-E), with optional z-loss.

Two normalisations (`config.train.loss_normalization`): "tokens" averages over every target
token of the batch (T5X's NUM_REAL_TARGET_TOKENS), so an example's pull on the gradient grows
with its answer's length; "examples" averages each example's tokens first and then over examples
(T5X's AVERAGE_PER_SEQUENCE), so a one-token genotype call counts as much as a 30-token report.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


NORMALIZATIONS = ("tokens", "examples")


def next_token_loss(logits: jax.Array, tokens: jax.Array, loss_mask: jax.Array, z_loss: float = 0.0,
                    token_weights: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Weighted mean loss over target tokens, and per-position stats (for per-task accounting)."""
  loss_sum, stats = next_token_loss_sum(logits, tokens, loss_mask, z_loss, token_weights)
  return loss_sum / jnp.maximum(stats["loss_weights"].sum(), 1.0), stats


def per_example_weights(loss_mask: jax.Array, segment_ids: jax.Array | None) -> jax.Array:
  """Weights [B, T] for the "examples" normalisation: 1 / (target tokens of the token's example).

  An example is a row, or one segment of a packed row (segment ids 1..S, 0 for padding). Each
  example's weights sum to 1, so dividing a batch's weighted loss by the sum of the weights
  averages over examples, over any number of accumulated micro-batches.
  """
  loss_mask = loss_mask.astype(jnp.float32)
  if segment_ids is None:
    return loss_mask / jnp.maximum(loss_mask.sum(axis=1, keepdims=True), 1.0)
  num_segments = segment_ids.shape[1] + 1  # no row holds more segments than positions
  counts = jax.vmap(lambda m, s: jax.ops.segment_sum(m, s, num_segments))(loss_mask, segment_ids)
  return loss_mask / jnp.maximum(jnp.take_along_axis(counts, segment_ids, axis=1), 1.0)


def next_token_loss_sum(logits: jax.Array, tokens: jax.Array, loss_mask: jax.Array,
                        z_loss: float = 0.0, token_weights: jax.Array | None = None
                        ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """logits [B, T, V] at position t predict tokens[t + 1]; loss_mask [B, T] marks target tokens;
  token_weights [B, T] (zero off target) weigh each target token's loss (None: all 1).

  Returns the weighted loss sum: the trainer divides by the sum of `stats["loss_weights"]` over
  the whole (accumulated) batch (its target tokens, or its examples), so k micro-batches give
  exactly the gradient of one big batch.
  """
  return scored_loss_sum(logits, *next_token_targets(tokens, loss_mask, token_weights), z_loss)


def next_token_targets(tokens: jax.Array, loss_mask: jax.Array,
                       token_weights: jax.Array | None = None
                       ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """What each position t is scored on: (tokens[t + 1], its target weight 0/1, its loss weight),
  each [B, T]; the last position scores padding with weight 0."""
  # Every position is scored against the next token rather than slicing logits[:, :-1]: the
  # slice's gradient is a pad that copies the whole [B, T, vocab] array again (~80 ms a step at
  # bench-small on a 2-core CPU).
  targets = jnp.pad(tokens[:, 1:], ((0, 0), (0, 1)))
  weights = jnp.pad(loss_mask[:, 1:], ((0, 0), (0, 1))).astype(jnp.float32)
  loss_weights = weights if token_weights is None else jnp.pad(token_weights[:, 1:], ((0, 0), (0, 1)))
  return targets, weights, loss_weights


def scored_loss_sum(logits: jax.Array, targets: jax.Array, weights: jax.Array,
                    loss_weights: jax.Array, z_loss: float = 0.0
                    ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """logits [B, K, V] scored on targets [B, K] (weights and loss_weights [B, K], as
  `next_token_targets` gives them): K positions, every position of the rows or some of them."""
  log_z = jax.nn.logsumexp(logits, axis=-1)
  # A one-hot select instead of take_along_axis: its gradient fuses into the softmax gradient,
  # where take_along_axis's is a scatter into a zeroed [B, T, vocab] buffer.
  is_target = targets[..., None] == jnp.arange(logits.shape[-1], dtype=targets.dtype)
  target_logit = jnp.sum(jnp.where(is_target, logits, 0.0), axis=-1)
  nll = log_z - target_logit
  per_token = nll + z_loss * jnp.square(log_z)
  # Correct when the target's logit is strictly larger than every other: a tie is not a
  # prediction (a collapsed model with uniform logits would score 100%). Maxima, not an argmax
  # over the vocabulary (which tracks indices and cost ~180 ms a step at bench-small).
  other_max = jnp.max(jnp.where(is_target, -jnp.inf, logits), axis=-1)
  correct = (target_logit > other_max).astype(jnp.float32)
  loss_sum = (per_token * loss_weights).sum()
  # Per position (position t scores tokens[t + 1]), so a packed row can be split by example.
  stats = {"nll": nll * weights, "correct": correct * weights, "weights": weights,
           "loss_weights": loss_weights}
  return loss_sum, stats


def scored_positions(weights: jax.Array, budget: int) -> tuple[jax.Array, jax.Array]:
  """Which `budget` positions of each row to project onto the vocabulary: [B, budget], the row's
  positions that score a target (weights [B, T] nonzero) in order, then others (weight 0) to fill
  it; and [B] whether a row has more targets than the budget (those rows need every position)."""
  scoring = weights != 0
  # A stable sort of "does not score": the scoring positions first, each group in order.
  positions = jnp.argsort(jnp.logical_not(scoring), axis=1, stable=True)[:, :budget]
  return positions.astype(jnp.int32), scoring.sum(axis=1) > budget


def scatter_positions(values: jax.Array, positions: jax.Array, length: int) -> jax.Array:
  """values [B, K] at positions [B, K] (distinct within a row) -> [B, length], zero elsewhere."""
  rows = jnp.arange(values.shape[0])[:, None]
  return jnp.zeros((values.shape[0], length), values.dtype).at[rows, positions].set(values)

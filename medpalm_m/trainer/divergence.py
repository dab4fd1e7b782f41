"""Divergence caught at the step it happens, before that step's state can be saved as "good".

Checked after every step, on the metrics the step returns anyway: a loss, gradient norm or
parameter norm that is not finite; a gradient norm above `max_grad_norm`; a parameter RMS above
`max_param_rms` (a model whose weights exploded while its loss, computed before the update, still
looked finite); a loss above `loss_spike_factor` times its running mean; and a gradient of exactly
zero with a positive loss (the outputs no longer depend on the parameters: a collapsed model).
Keys: config.train.divergence.

The loss spike is judged per task where the step reports per-task sums (the trainer's
`task_nll_sum` and `task_tokens`): the step's loss on the tasks with a running mean against what
those means predict for this step's mix of tasks. A task the run has barely seen does not count
yet, so a curriculum that brings in new tasks (config.data.opening), whose first losses are far
above those of the tasks it opened with, is not mistaken for divergence; a batch that happens to
hold more long-answer tasks is not either.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

# Steps before the loss-spike check starts: the running mean needs a few losses first; the same
# number of steps with a task before that task's loss counts.
_SPIKE_WARMUP_STEPS = 10
_RUNNING_MEAN_DECAY = 0.9


class DivergenceError(RuntimeError):
  pass


class DivergenceGuard:

  def __init__(self, limits: Mapping[str, float]):
    self.max_grad_norm = limits["max_grad_norm"]
    self.max_param_rms = limits["max_param_rms"]
    self.loss_spike_factor = limits["loss_spike_factor"]
    self.running_loss: float | None = None
    self.steps_seen = 0
    self.task_running_loss: np.ndarray | None = None  # per task, NaN until its first step
    self.task_steps_seen: np.ndarray | None = None

  def check(self, step: int, metrics: Mapping[str, Any]) -> None:
    """Raise DivergenceError naming the step and the quantity; else update the running mean."""
    loss, grad_norm, param_rms = (float(metrics[k]) for k in ("loss", "grad_norm", "param_rms"))
    for name, value in (("loss", loss), ("gradient norm", grad_norm), ("parameter RMS", param_rms)):
      if not math.isfinite(value):
        raise DivergenceError(f"{name} is {value} at step {step}")
    if self.max_grad_norm and grad_norm > self.max_grad_norm:
      raise DivergenceError(f"gradient norm {grad_norm:.3g} at step {step} exceeds "
                            f"config.train.divergence.max_grad_norm={self.max_grad_norm:g}")
    if self.max_param_rms and param_rms > self.max_param_rms:
      raise DivergenceError(f"parameter RMS {param_rms:.3g} after step {step} exceeds "
                            f"config.train.divergence.max_param_rms={self.max_param_rms:g}")
    if grad_norm == 0.0 and loss > 0.0:
      raise DivergenceError(f"the gradient is exactly 0 at step {step} with loss {loss:.4f}: the "
                            "model's outputs no longer depend on its parameters (collapsed)")
    per_task = "task_nll_sum" in metrics and "task_tokens" in metrics
    if per_task:
      observed, expected, what = self._known_tasks_loss(metrics) + ("on the tasks it has seen",)
    else:
      observed, expected, what = loss, self.running_loss, ""
    if (self.loss_spike_factor and self.steps_seen >= _SPIKE_WARMUP_STEPS and expected is not None
        and observed > self.loss_spike_factor * expected):
      raise DivergenceError(
          f"loss {observed:.4f} at step {step} is more than config.train.divergence.loss_spike_factor="
          f"{self.loss_spike_factor:g} times its running mean {expected:.4f}"
          + (f" ({what}, weighted by this step's target tokens)" if what else ""))
    self.steps_seen += 1
    self.running_loss = loss if self.running_loss is None else (
        _RUNNING_MEAN_DECAY * self.running_loss + (1 - _RUNNING_MEAN_DECAY) * loss)
    if per_task:
      self._update_tasks(metrics)

  def _known_tasks_loss(self, metrics: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """This step's loss over the target tokens of the tasks seen for the warm-up, and what their
    running means predict for the same tokens; (None, None) when no such task is in the step."""
    if self.task_running_loss is None:
      return None, None
    tokens = np.asarray(metrics["task_tokens"], np.float64)
    known = (self.task_steps_seen >= _SPIKE_WARMUP_STEPS) & (tokens > 0)
    if not known.any():
      return None, None
    nll = np.asarray(metrics["task_nll_sum"], np.float64)
    weight = tokens[known].sum()
    return float(nll[known].sum() / weight), float((tokens[known] * self.task_running_loss[known]).sum() / weight)

  def _update_tasks(self, metrics: Mapping[str, Any]) -> None:
    tokens = np.asarray(metrics["task_tokens"], np.float64)
    nll = np.asarray(metrics["task_nll_sum"], np.float64)
    if self.task_running_loss is None:
      self.task_running_loss = np.full(tokens.shape, np.nan)
      self.task_steps_seen = np.zeros(tokens.shape, np.int64)
    present = tokens > 0
    task_loss = np.where(present, nll / np.maximum(tokens, 1.0), np.nan)
    first = present & (self.task_steps_seen == 0)
    later = present & ~first
    self.task_running_loss[first] = task_loss[first]
    self.task_running_loss[later] = (_RUNNING_MEAN_DECAY * self.task_running_loss[later]
                                     + (1 - _RUNNING_MEAN_DECAY) * task_loss[later])
    self.task_steps_seen += present

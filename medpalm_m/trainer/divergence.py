"""Divergence caught at the step it happens, before that step's state can be saved as "good".

Checked after every step, on the metrics the step returns anyway: a loss, gradient norm or
parameter norm that is not finite; a gradient norm above `max_grad_norm`; a parameter RMS above
`max_param_rms` (a model whose weights exploded while its loss, computed before the update, still
looked finite); a loss above `loss_spike_factor` times its running mean; and a gradient of exactly
zero with a positive loss (the outputs no longer depend on the parameters: a collapsed model).
Keys: config.train.divergence.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

# Steps before the loss-spike check starts: the running mean needs a few losses first.
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
    if (self.loss_spike_factor and self.steps_seen >= _SPIKE_WARMUP_STEPS
        and loss > self.loss_spike_factor * self.running_loss):
      raise DivergenceError(
          f"loss {loss:.4f} at step {step} is more than config.train.divergence.loss_spike_factor="
          f"{self.loss_spike_factor:g} times its running mean {self.running_loss:.4f}")
    self.steps_seen += 1
    self.running_loss = loss if self.running_loss is None else (
        _RUNNING_MEAN_DECAY * self.running_loss + (1 - _RUNNING_MEAN_DECAY) * loss)

"""trainer.divergence: each quantity stops the run naming the step; a healthy run passes."""

import math

import pytest

from medpalm_m.trainer.divergence import DivergenceError, DivergenceGuard

LIMITS = {"max_grad_norm": 1e6, "max_param_rms": 1e3, "loss_spike_factor": 10.0}


def healthy(loss=2.0):
  return {"loss": loss, "grad_norm": 1.5, "param_rms": 0.05}


@pytest.mark.parametrize("change,named", [
    ({"loss": math.nan}, "loss is nan at step 7"),
    ({"grad_norm": math.inf}, "gradient norm is inf at step 7"),
    ({"param_rms": math.nan}, "parameter RMS is nan at step 7"),
    ({"grad_norm": 2e6}, "gradient norm 2e+06 at step 7 exceeds config.train.divergence.max_grad_norm"),
    ({"param_rms": 5e29}, "parameter RMS 5e+29 after step 7 exceeds config.train.divergence.max_param_rms"),
    ({"grad_norm": 0.0}, "gradient is exactly 0 at step 7"),
])
def test_each_quantity_is_caught_naming_the_step(change, named):
  guard = DivergenceGuard(LIMITS)
  with pytest.raises(DivergenceError, match=named.replace("+", r"\+").replace(".", r"\.")):
    guard.check(7, {**healthy(), **change})


def test_a_loss_spike_past_the_factor_stops_after_the_warmup_and_a_noisy_run_passes():
  guard = DivergenceGuard(LIMITS)
  for step in range(1, 30):
    guard.check(step, healthy(2.0 + (0.5 if step % 2 else -0.5)))  # noise of +-25% passes
  with pytest.raises(DivergenceError, match="loss 25.0000 at step 30 is more than "
                     "config.train.divergence.loss_spike_factor=10"):
    guard.check(30, healthy(25.0))


def test_zero_disables_a_limit():
  guard = DivergenceGuard({"max_grad_norm": 0, "max_param_rms": 0, "loss_spike_factor": 0})
  for step in range(1, 20):
    guard.check(step, {"loss": 1.0 if step < 15 else 1e4, "grad_norm": 1e9, "param_rms": 1e9})

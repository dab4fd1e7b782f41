"""trainer.divergence: each quantity stops the run naming the step; a healthy run passes."""

import math

import numpy as np

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


def per_task(losses, tokens):
  """A step's metrics with per-task sums (the trainer's task_nll_sum and task_tokens)."""
  tokens = np.asarray(tokens, float)
  nll = np.asarray(losses, float) * tokens
  return {**healthy(float(nll.sum() / tokens.sum())), "task_nll_sum": nll, "task_tokens": tokens}


def test_tasks_a_curriculum_brings_in_late_do_not_count_as_a_spike_but_a_spike_of_known_ones_does():
  guard = DivergenceGuard(LIMITS)
  for step in range(1, 60):  # an opening of two short-answer tasks, task 2 unseen
    guard.check(step, per_task([0.3, 0.2, 0.0], [30, 60, 0]))
  # Task 2 (long answers, never trained on) arrives: the step's loss is 20x the running mean.
  arrival = per_task([0.3, 0.2, 8.0], [30, 60, 600])
  assert arrival["loss"] > 10 * 0.25
  for step in range(60, 65):
    guard.check(step, arrival)
  # The opening's tasks themselves blowing up is still caught while the new task still warms up.
  with pytest.raises(DivergenceError, match=r"loss 5\.3333 at step 65 is more than config\.train\."
                     r"divergence\.loss_spike_factor=10 times its running mean 0\.2333 \(on the tasks"):
    guard.check(65, per_task([6.0, 5.0, 8.0], [30, 60, 600]))


def test_a_step_heavy_in_a_high_loss_task_is_not_a_spike():
  guard = DivergenceGuard(LIMITS)
  for step in range(1, 30):
    guard.check(step, per_task([0.1, 3.0], [200, 5]))  # mostly the easy task: mean ~0.17
  guard.check(30, per_task([0.1, 3.0], [5, 200]))  # mostly the hard one: ~2.9, not a divergence

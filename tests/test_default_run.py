"""The README's claim about `make run`: the tiny default beats every synthetic task's baseline.

Training and evaluating the default takes ~11 minutes on 2 cores, which on top of the suite's ~17
would break its 20-minute budget, so this test does not train: it checks the evaluation that
`make run` wrote (in workdirs/tiny, or $MEDPALM_M_DEFAULT_WORKDIR) and skips, saying why, when
there is none or when it came from a different config. Run `make run` and then `make test` to have
it checked.
"""

import json
import math
import os

import pytest

from configs import tiny
from medpalm_m import metrics

# What decides the trained model; data_dir and the scorer paths may differ between machines.
_COMPARED = ("seed", "model", "train", "optimizer", "data.mixture", "data.packing",
             "data.max_prompt_tokens", "data.max_target_tokens", "eval.split", "eval.bootstrap",
             "eval.max_examples_per_task", "eval.max_decode_tokens")


def _get(tree, dotted):
  for key in dotted.split("."):
    tree = tree.get(key) if isinstance(tree, dict) else None
  return tree


def _default_run():
  workdir = os.environ.get("MEDPALM_M_DEFAULT_WORKDIR", "workdirs/tiny")
  expected = json.loads(tiny.get_config().to_json_best_effort(sort_keys=True))
  try:
    with open(os.path.join(workdir, "config.json")) as f:
      written = json.load(f)
  except FileNotFoundError:
    pytest.skip(f"no default run in {workdir}: `make run` writes it (~11 min on 2 cores)")
  stale = [key for key in _COMPARED if _get(written, key) != _get(expected, key)]
  if stale:
    pytest.skip(f"{workdir} was trained with another config ({', '.join(stale)} differ from "
                "configs/tiny.py); rerun `make run` in a fresh workdir")
  path = os.path.join(workdir, "eval", f"step_{expected['train']['num_steps']}.json")
  if not os.path.exists(path):
    pytest.skip(f"{path} missing: the default run's evaluation has not finished")
  with open(path) as f:
    return expected, json.load(f)


def test_the_default_run_beats_every_baseline_by_its_bootstrap_margin():
  config, report = _default_run()
  assert report["split"] == "test"
  assert set(report["tasks"]) == set(config["data"]["mixture"])
  failures = []
  for task, result in sorted(report["tasks"].items()):
    # Model-based report scorers without local weights are reported as a "skipped: ..." string.
    scored = {m: b for m, b in result["baseline"].items() if not isinstance(result[m], str)}
    assert scored, f"{task}: no metric was scored"
    for metric, base in scored.items():
      if not metrics.METRICS[metric].resampled:
        continue  # reported without a margin (the truth-set F1)
      ours = result[metric]
      low, _ = result["margin_ci95"][metric]
      if not (ours > base and low > 0 and math.isfinite(low)):
        failures.append(f"{task} {metric}: ours {ours:.2f}, baseline {base:.2f}, "
                        f"95% interval of ours - baseline starts at {low:.2f}")
  assert not failures, "\n".join(failures)

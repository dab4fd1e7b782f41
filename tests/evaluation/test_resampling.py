"""The vectorised bootstrap against rescoring every resample, on the synthetic tasks' own examples."""

import numpy as np
import pytest

from medpalm_m.data import pipeline, tasks as tasks_lib
from medpalm_m.evaluation import resampling, scoring
from tests import small_config

# Every family of metric the vectorised path computes: accuracy with options and with
# per-question options, macro/positive F1, macro AUC within conditions, genotype F1, corpus
# BLEU-1/4, CIDEr-D, means of per-example scores (token F1, ROUGE-L); the report task's clinical
# scorers are rescored.
TASKS = {
    "synthetic_vqa_rad": {"bleu1", "token_f1"},
    "synthetic_mimic_cxr_classification": {"macro_auc", "positive_f1"},
    "synthetic_cbis_ddsm_mass": {"macro_auc", "macro_f1"},
    "synthetic_precision_fda": {"snp_f1", "indel_f1"},
    "synthetic_medqa": {"accuracy"},
    "synthetic_pubmedqa": {"accuracy"},
    "synthetic_mimic_cxr_report": {"bleu1", "bleu4", "rouge_l", "cider_d"},
}


def noisy_answers(task, examples, seed: int):
  """Predictions that are right, another example's answer, or unparseable; option scores with ties."""
  rng = np.random.default_rng(seed)
  targets = [ex["target"] for ex in examples]
  predictions = []
  for target in targets:
    draw = rng.random()
    predictions.append(target if draw < 0.5 else "unsure" if draw < 0.6 else str(rng.choice(targets)))
  probs = None
  if task.options:
    probs = np.round(rng.random((len(examples), len(task.options))), 1) + 0.01  # ties between examples
    probs /= probs.sum(axis=1, keepdims=True)
  return predictions, targets, probs


@pytest.mark.parametrize("name", sorted(TASKS))
def test_vectorised_bootstrap_equals_rescoring_every_resample(name, synthetic_data_dir):
  task = tasks_lib.get(name)
  examples = list(pipeline.eval_examples(task, synthetic_data_dir, "test", max_examples=60, seed=0))
  predictions, targets, probs = noisy_answers(task, examples, seed=1)
  cfg = small_config.get_config()
  args = (task, examples, predictions, targets, probs, cfg, 40)
  fast = scoring.bootstrap_margin(*args, seed=3)
  slow = scoring.bootstrap_margin(*args, seed=3, rescore_every_metric=True)
  assert fast.keys() == slow.keys() and TASKS[name] <= set(fast)
  for metric in fast:
    np.testing.assert_allclose(fast[metric], slow[metric], rtol=1e-9, atol=1e-9, err_msg=metric)
  # The metrics named above are computed from sums (here on one resample: the set itself).
  groups = list(scoring.condition_groups(examples).values())
  vectorised = scoring._vectorised_differences(task, examples, predictions, targets, probs, groups,
                                               [np.asarray(g)[None] for g in groups])
  assert set(vectorised) == TASKS[name]


def test_ties_for_the_most_frequent_answer_go_to_the_one_drawn_first():
  targets = ["no", "yes", "yes", "no", "left"]
  picks = np.array([[0, 1, 2, 3, 4],   # "no" and "yes" twice each: "no" was drawn first
                    [1, 0, 3, 2, 2],   # "yes" three times
                    [2, 2, 3, 3, 4]])  # tie again, "yes" first
  scores = resampling.resampled_scores(["token_f1"], ["no"] * 5, targets, picks)
  np.testing.assert_allclose(scores["token_f1"][1], [100 * 2 / 5, 100 * 3 / 5, 100 * 2 / 5])
  np.testing.assert_allclose(scores["token_f1"][0], [100 * 2 / 5, 100 * 2 / 5, 100 * 2 / 5])

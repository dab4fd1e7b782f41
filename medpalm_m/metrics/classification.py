"""Classification metrics over a task's option list: accuracy, macro-F1, positive-class F1,
macro-AUC (percent).

accuracy and the F1s use scikit-learn; macro-F1 runs over the task's full option list
(``labels=``) with ``zero_division=0``, so a class that is never a target and never predicted
scores F1 = 0 and still counts in the mean. macro-AUC is the unweighted mean of one-vs-rest AUCs
over the classes that have both positives and negatives among the targets; no such class -> NaN.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from medpalm_m.metrics.choice import normalize_choice, parse_predictions, parse_targets


def multiple_choice_accuracy(
    predictions: Sequence[str], targets: Sequence[str], options: Sequence[str] | None = None
) -> float:
  """Percent of answers equal to the target.

  With ``options``: both sides are parsed with :func:`parse_choice` and an unparseable
  prediction is wrong. Without: exact match after :func:`normalize_choice` normalisation
  (case, whitespace, trailing punctuation), for free-text tasks with no option list.
  """
  if options is None:
    y_true = [normalize_choice(t) for t in targets]
    y_pred = [normalize_choice(p) for p in predictions]
  else:
    y_true = parse_targets(targets, options, "accuracy")
    y_pred = parse_predictions(predictions, options)
  return 100.0 * float(accuracy_score(y_true, y_pred))


def macro_f1(predictions: Sequence[str], targets: Sequence[str], options: Sequence[str]) -> float:
  """Unweighted mean of per-class F1 over *all* options, in percent.

  ``labels=range(len(options))`` fixes the class set to the task's option list rather
  than whatever happens to occur, so the number is comparable across subsets and
  checkpoints. ``zero_division=0``: a class with no positives and no predictions has
  F1 = 0 and still counts in the mean (sklearn's convention, and what a per-class table
  would show). On the full MultiMedBench test sets every class has positives, so this
  only matters for small subsets.
  """
  y_true = parse_targets(targets, options, "macro_f1")
  y_pred = parse_predictions(predictions, options)
  return 100.0 * float(
      f1_score(y_true, y_pred, labels=list(range(len(options))), average="macro", zero_division=0)
  )


def positive_f1(predictions: Sequence[str], targets: Sequence[str], options: Sequence[str]) -> float:
  """F1 of the positive answer alone, the last option ("Yes" of "(A) No (B) Yes"), in percent.

  The paper's MIMIC-CXR classification macro-F1 is this, per condition, averaged over its 5
  conditions (evaluation.scoring averages over the `condition` each example names): its Table 2
  (38.33 / 36.83 / 41.57 for 12B / 84B / 562B, 7.83 for PaLM-E) is below what a mean over both
  answers gives the constant answer "No" (at least ~43 at 25% prevalence), so the figure can
  only be the positive class's. Answering "No" always scores 0. An unparseable prediction is
  neither answer: it misses a positive and is no false positive. No positive target and no
  positive prediction -> 0 (``zero_division=0``), as in :func:`macro_f1`.
  """
  y_true = parse_targets(targets, options, "positive_f1")
  y_pred = parse_predictions(predictions, options)
  positive = len(options) - 1
  return 100.0 * float(f1_score(y_true, y_pred, labels=[positive], average="macro", zero_division=0))


def macro_auc(targets: Sequence[str], option_probs: np.ndarray, options: Sequence[str]) -> float:
  """Unweighted mean of one-vs-rest ROC-AUC over classes, in percent.

  ``option_probs[i, k]`` is any score for option k on example i (e.g. a softmax over
  length-normalised option log-likelihoods; only the ranking matters). A class whose
  targets are all positive or all negative has no defined AUC and is left out of the
  mean; if that leaves nothing (a single class present) the result is NaN. This loop
  over sklearn's binary ``roc_auc_score`` exists because
  ``roc_auc_score(multi_class='ovr')`` raises instead when a class is absent, which
  happens on small subsets.
  """
  y = parse_targets(targets, options, "macro_auc")
  probs = np.asarray(option_probs, dtype=float)
  if probs.shape != (len(y), len(options)):
    raise ValueError(
        f"macro_auc: option_probs has shape {probs.shape}, expected {(len(y), len(options))}"
    )
  if not np.all(np.isfinite(probs)):
    raise ValueError("macro_auc: option_probs contains NaN or inf")
  aucs = []
  for k in range(len(options)):
    pos = y == k
    if pos.all() or not pos.any():
      continue
    aucs.append(roc_auc_score(pos, probs[:, k]))
  return 100.0 * float(np.mean(aucs)) if aucs else float("nan")

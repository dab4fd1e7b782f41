"""Hand-computed accuracy, macro-F1, positive-class F1 and macro-AUC (medpalm_m.metrics.classification)."""

from __future__ import annotations

import math

import ml_collections
import numpy as np
import pytest

from medpalm_m import metrics as M
from medpalm_m.data import tasks
from medpalm_m.evaluation import scoring
from tests.metrics.examples import SKIN, YES_NO


def test_accuracy_counts_unparseable_as_wrong():
  # parsed predictions [0, 1, None, 1] vs targets [0, 0, 1, 1]: 2 of 4 right -> 50.
  preds = ["(A)", "No.", "maybe", "B"]
  targets = ["Yes", "Yes", "No", "No"]
  assert M.score(["accuracy"], preds, targets, options=YES_NO)["accuracy"] == pytest.approx(50.0)


def test_accuracy_without_options_is_normalised_exact_match():
  # "Yes." == "yes" after normalisation; "no" != "maybe": 1/2 -> 50.
  assert M.multiple_choice_accuracy(["Yes.", "no"], ["yes", "maybe"]) == pytest.approx(50.0)


def test_macro_f1_includes_class_without_positives_as_zero():
  # targets [BCC, BCC, MEL, MEL] = [0, 0, 1, 1]; predictions [0, 1, 1, None].
  # BCC: TP1 FP0 FN1 -> P=1 R=1/2 F1=2/3.  MEL: TP1 FP1 FN1 -> F1=1/2.
  # NEV: no positives, no predictions -> 0 (zero_division=0), still in the mean.
  # macro = (2/3 + 1/2 + 0) / 3 = 0.388888...
  preds = ["BCC", "(B)", "MEL", "no idea"]
  targets = ["BCC", "BCC", "MEL", "MEL"]
  assert M.score(["macro_f1"], preds, targets, options=SKIN)["macro_f1"] == pytest.approx(100 * 7 / 18)


def test_perfect_classification_is_100():
  targets = ["BCC", "MEL", "NEV", "MEL"]
  probs = np.eye(3)[[0, 1, 2, 1]]
  out = M.score(["accuracy", "macro_f1", "macro_auc"], targets, targets, options=SKIN, option_probs=probs)
  assert out == {"accuracy": 100.0, "macro_f1": 100.0, "macro_auc": 100.0}


def test_macro_auc_hand_computed_and_excludes_absent_class():
  # targets [0, 0, 1, 1]; class NEV (2) has no positives -> excluded from the mean.
  # class 0: positives 0.8, 0.4 vs negatives 0.3, 0.5 -> pairs won: 0.8>0.3, 0.8>0.5,
  #          0.4>0.3, 0.4<0.5 -> 3/4.
  # class 1: positives 0.6, 0.3 vs negatives 0.1, 0.5 -> 0.6>0.1, 0.6>0.5, 0.3>0.1,
  #          0.3<0.5 -> 3/4.   macro = 75.
  probs = np.array([[0.8, 0.1, 0.1], [0.4, 0.5, 0.1], [0.3, 0.6, 0.1], [0.5, 0.3, 0.2]])
  targets = ["BCC", "BCC", "MEL", "MEL"]
  assert M.macro_auc(targets, probs, SKIN) == pytest.approx(75.0)


def test_macro_auc_tie_counts_half():
  # one positive (0.5) vs one negative (0.5) for class 0 -> 0.5; class 1 mirror -> 0.5.
  probs = np.array([[0.5, 0.5], [0.5, 0.5]])
  assert M.macro_auc(["Yes", "No"], probs, YES_NO) == pytest.approx(50.0)


def test_macro_auc_single_class_is_nan_not_crash():
  probs = np.array([[0.9, 0.1], [0.2, 0.8]])
  assert math.isnan(M.score(["macro_auc"], ["Yes", "No"], ["Yes", "Yes"], options=YES_NO,
                            option_probs=probs)["macro_auc"])  # fmt: skip


def test_macro_auc_shape_checked():
  with pytest.raises(ValueError, match="shape"):
    M.macro_auc(["Yes", "No"], np.ones((2, 3)), YES_NO)


def test_target_outside_options_is_an_error():
  with pytest.raises(ValueError, match="accuracy: target 'Perhaps'"):
    M.score(["accuracy"], ["Yes"], ["Perhaps"], options=YES_NO)


def test_positive_f1_of_always_no_is_zero_where_macro_f1_is_not():
  # 25% prevalence: "No" always has no true positive, so the positive class's F1 is 0, while the
  # mean over both answers would credit it with No's F1 (2 * 0.75 / 1.75 = 85.7) / 2 = 42.9.
  targets = ["Yes"] + ["No"] * 3
  always_no = ["No"] * 4
  out = M.score(["positive_f1", "macro_f1"], always_no, targets, options=["No", "Yes"])
  assert out["positive_f1"] == 0.0
  assert out["macro_f1"] == pytest.approx(100 * 3 / 7)
  assert M.baseline(["positive_f1"], targets, options=["No", "Yes"])["positive_f1"] == 0.0


def test_positive_f1_averaged_over_three_conditions_by_hand():
  # Each condition scores the F1 of "Yes"; the task's value is their unweighted mean.
  # edema:    targets Y Y N N, predictions Y N Y N     -> TP1 FP1 FN1 -> F1 1/2
  # effusion: targets Y N N,   predictions Y Y "(B)"   -> "(B)" is Yes: TP1 FP2 FN0 -> F1 1/2
  # nodule:   targets Y Y Y,   predictions Y Y "maybe" -> TP2 FN1 (unparseable misses) -> 4/5
  # mean = (1/2 + 1/2 + 4/5) / 3 = 0.6
  conditions = ["edema"] * 4 + ["effusion"] * 3 + ["nodule"] * 3
  targets = ["Yes", "Yes", "No", "No", "Yes", "No", "No", "Yes", "Yes", "Yes"]
  predictions = ["Yes", "No", "Yes", "No", "Yes", "Yes", "(B)", "Yes", "Yes", "maybe"]
  task = tasks.Task(name="three_conditions", builder=object, formatter=lambda r, e: {},
                    metrics=("positive_f1",), options=("No", "Yes"))
  cfg = ml_collections.ConfigDict({"eval": {"scorer_paths": {}}})
  examples = [{"condition": c} for c in conditions]
  result = scoring.score_grouped(task, examples, predictions, targets, None, cfg)
  assert result["positive_f1"] == pytest.approx(100 * 0.6)
  # The constant baseline answers each condition's majority: "No" scores 0 on edema (a tie that
  # "Yes" wins: 2/3) and effusion, "Yes" on nodule scores 1 -> (2/3 + 0 + 1) / 3.
  assert result["baseline"]["positive_f1"] == pytest.approx(100 * 5 / 9)

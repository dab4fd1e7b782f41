"""Hand-computed accuracy, macro-F1 and macro-AUC (medpalm_m.metrics.classification)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medpalm_m import metrics as M
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

"""The metric registry, score() and baseline() (medpalm_m.metrics.registry)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medpalm_m import metrics as M
from tests.metrics.examples import GT_TRUTH, GT_TYPES, SKIN, YES_NO


def test_score_raises_for_missing_inputs():
  with pytest.raises(ValueError, match="macro_auc.*option_probs"):
    M.score(["macro_auc"], ["Yes"], ["Yes"], options=YES_NO)
  with pytest.raises(ValueError, match="macro_f1.*options"):
    M.score(["macro_f1"], ["Yes"], ["Yes"])
  with pytest.raises(ValueError, match="snp_f1.*variant_types"):
    M.score(["snp_f1"], ["1"], ["1"])
  with pytest.raises(ValueError, match="unknown metrics"):
    M.score(["bleu"], ["a"], ["a"])
  with pytest.raises(ValueError, match="2 predictions but 1 targets"):
    M.score(["accuracy"], ["a", "b"], ["a"])


def test_registry_has_every_metric():
  expected = {"accuracy", "macro_f1", "macro_auc", "bleu1", "bleu4", "rouge_l", "cider_d", "token_f1", "snp_f1",
              "indel_f1", "chexbert_micro_f1_14", "chexbert_macro_f1_14", "chexbert_micro_f1_5",
              "chexbert_macro_f1_5", "f1_radgraph"}  # fmt: skip
  assert expected <= set(M.METRICS)
  assert all(isinstance(s, M.MetricSpec) and s.name == n for n, s in M.METRICS.items())


def test_baseline_classification():
  # targets [MEL, BCC, MEL, NEV] -> majority MEL; predict MEL everywhere.
  # accuracy 2/4 = 50.  F1: BCC 0, MEL P=2/4 R=1 -> 2/3, NEV 0 -> macro 2/9 = 22.222.
  # AUC of constant uniform probabilities = 50 for each class present.
  out = M.baseline(["accuracy", "macro_f1", "macro_auc"], ["MEL", "BCC", "(B)", "NEV"], options=SKIN)
  assert out["accuracy"] == pytest.approx(50.0)
  assert out["macro_f1"] == pytest.approx(200 / 9)
  assert out["macro_auc"] == pytest.approx(50.0)


def test_baseline_genotype():
  # pooled genotype counts 0:3, 1:4, 2:2 -> always call 1.
  # SNP (truth 1,2,0,1,0,2): TP 2, FP 4 (2 mismatches + 2 hom-ref), FN 2 -> 4/10 = 40.
  # Indel (truth 1,1,0): TP 2, FP 1 -> 4/5 = 80.
  out = M.baseline(["snp_f1", "indel_f1"], GT_TRUTH, variant_types=GT_TYPES)
  assert out == {"snp_f1": pytest.approx(40.0), "indel_f1": pytest.approx(80.0)}


def test_baseline_ties_take_the_strongest_majority_call_per_metric():
  # pooled counts 0:2, 1:3, 2:3 -> "1" and "2" are both majority calls.
  # SNP (truth 1,1,2,0): always 1 -> TP 2, FP 2, FN 1 -> 4/7; always 2 -> TP 1, FP 3, FN 2 -> 2/7.
  # Indel (truth 2,2,1,0): the mirror image, so always 2 scores 4/7 there.
  # Lowest-index tie-breaking would have reported 2/7 for indel_f1.
  out = M.baseline(["snp_f1", "indel_f1"], ["1", "1", "2", "0", "2", "2", "1", "0"],
                   variant_types=["snp"] * 4 + ["indel"] * 4)
  assert out == {"snp_f1": pytest.approx(400 / 7), "indel_f1": pytest.approx(400 / 7)}


def test_baseline_generation_and_mixed():
  # most frequent target "no acute disease". token F1: 100, 100, 0 -> 66.667.
  # BLEU-1: 6 of 9 unigrams correct, testlen 9 >= reflen 3+3+2 -> no BP -> 66.667.
  targets = ["no acute disease", "no acute disease", "small effusion"]
  out = M.baseline(["token_f1", "bleu1", "chexbert_micro_f1_5"], targets)
  assert out["token_f1"] == pytest.approx(200 / 3)
  assert out["bleu1"] == pytest.approx(200 / 3, abs=1e-5)
  assert out["chexbert_micro_f1_5"].startswith("skipped: needs local weights at config.eval.scorer_paths.chexbert_checkpoint")
  assert list(out) == ["token_f1", "bleu1", "chexbert_micro_f1_5"]


def test_baseline_auc_single_class_nan():
  assert math.isnan(M.baseline(["macro_auc"], ["Yes", "Yes"], options=YES_NO)["macro_auc"])


def test_the_papers_answer_format_leaves_every_score_unchanged():
  """Targets and exemplars end with "." ("Yes.", data/prompts.answer); the metrics read answers
  back without it, so a model answering in the format scores as it would without."""
  from medpalm_m.data.prompts import answer
  cases = [
      (["accuracy", "macro_f1", "positive_f1"], ["Yes", "No", "No", "Yes"], ["Yes", "Yes", "No", "No"],
       dict(options=YES_NO)),
      (["macro_auc"], ["Yes", "No", "No"], ["Yes", "Yes", "No"],
       dict(options=YES_NO, option_probs=np.array([[0.2, 0.8], [0.6, 0.4], [0.7, 0.3]]))),
      (["snp_f1", "indel_f1"], ["1", "2", "0", "1"], ["1", "1", "0", "2"],
       dict(variant_types=["snp", "snp", "indel", "indel"])),
      (["bleu1", "bleu4", "bleu1_sentence", "rouge_l", "cider_d", "token_f1"],
       ["left lower lobe opacity", "no acute process", "2.5 cm mass", "肺"],
       ["left lower lobe consolidation", "no acute cardiopulmonary process", "2.5 cm mass", "肺"], {}),
  ]
  for names, predictions, targets, inputs in cases:
    plain = M.score(names, predictions, targets, **inputs)
    formatted = M.score(names, [answer(p) for p in predictions], [answer(t) for t in targets], **inputs)
    assert formatted == pytest.approx(plain), names
    plain_baseline = M.baseline(names, targets, **{k: v for k, v in inputs.items() if k != "option_probs"})
    formatted_baseline = M.baseline(names, [answer(t) for t in targets],
                                    **{k: v for k, v in inputs.items() if k != "option_probs"})
    assert formatted_baseline == pytest.approx(plain_baseline), names

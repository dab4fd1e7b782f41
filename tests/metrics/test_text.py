"""Hand-computed BLEU, ROUGE-L, CIDEr-D and token F1 (medpalm_m.metrics.text)."""

from __future__ import annotations

import math

import pytest

from medpalm_m import metrics as M


HYP = "The cat sat on mat."
REF = "the cat sat on the mat"


def test_bleu_hand_computed():
  # tokens: hyp [the cat sat on mat] (5), ref [the cat sat on the mat] (6).
  # p1 = 5/5, p2 = 3/4 (the cat, cat sat, sat on), p3 = 2/3, p4 = 1/2.
  # BP = exp(1 - 6/5) = exp(-0.2) = 0.818730753.
  # BLEU-1 = 81.873; BLEU-4 = BP * (1 * 3/4 * 2/3 * 1/2) ** (1/4) = BP * 0.25**0.25 = 57.893.
  out = M.score(["bleu1", "bleu4"], [HYP], [REF])
  assert out["bleu1"] == pytest.approx(100 * math.exp(-0.2), abs=1e-6)
  assert out["bleu4"] == pytest.approx(100 * math.exp(-0.2) * 0.25**0.25, abs=1e-6)


def test_bleu_is_corpus_level():
  # add an identical pair "no acute disease" (3 tokens). Pooled: 8/8 unigrams correct,
  # testlen 8, reflen 9 -> BP = exp(1 - 9/8) -> BLEU-1 = 88.250. The per-example mean
  # would be (81.873 + 100) / 2 = 90.937 instead (bleu1_sentence).
  preds, refs = [HYP, "No acute disease."], [REF, "no acute disease"]
  out = M.score(["bleu1", "bleu1_sentence"], preds, refs)
  assert out["bleu1"] == pytest.approx(100 * math.exp(-0.125), abs=1e-6)
  assert out["bleu1_sentence"] == pytest.approx(50 * (math.exp(-0.2) + 1), abs=1e-6)


def test_bleu_identical_is_100_and_empty_is_0():
  refs = ["mild cardiomegaly without edema", "no pleural effusion or pneumothorax"]
  out = M.score(["bleu1", "bleu4"], refs, refs)
  # pycocoevalcap's 1e-15/1e-9 smoothing leaves ~1e-7 below 100.
  assert out["bleu1"] == pytest.approx(100.0, abs=1e-5)
  assert out["bleu4"] == pytest.approx(100.0, abs=1e-5)
  empty = M.score(["bleu1", "bleu4"], ["", ""], refs)
  assert empty["bleu1"] == pytest.approx(0.0, abs=1e-9)
  assert empty["bleu4"] == pytest.approx(0.0, abs=1e-9)


def test_rouge_l_hand_computed():
  # LCS = 5 (the cat sat on mat); P = 5/5, R = 5/6, F = 2PR/(P+R) = 10/11 = 90.909.
  # Second pair: empty prediction -> 0. Mean = 45.4545.
  assert M.score(["rouge_l"], [HYP], [REF])["rouge_l"] == pytest.approx(1000 / 11)
  assert M.rouge_l([HYP, ""], [REF, "no acute disease"]) == pytest.approx(500 / 11)


def test_cider_d_hand_computed_identical_and_empty():
  # 2 references "a b" / "c d": N=2, every n-gram is in 1 reference ->
  # idf = log(2) - log(1) = log 2, identical vectors -> cosine 1 for n=1,2; no 3-/4-grams -> 0.
  # length delta 0 -> penalty 1. per example = mean(1, 1, 0, 0) * 10 = 5 -> x100 = 500.
  refs = ["a b", "c d"]
  assert M.score(["cider_d"], refs, refs)["cider_d"] == pytest.approx(500.0)
  # Empty prediction for the second example -> 0 there; mean = (5 + 0) / 2 * 100 = 250.
  assert M.cider_d(["a b", ""], refs) == pytest.approx(250.0)
  assert M.cider_d(["", ""], refs) == 0.0


def test_cider_d_identical_reports_positive_and_edge_sets():
  reports = ["mild cardiomegaly without edema.", "no pleural effusion or pneumothorax.",
             "left lower lobe opacity, likely atelectasis."]  # fmt: skip
  assert M.cider_d(reports, reports) > 0
  # IDF from a single reference is zero for every n-gram: CIDEr-D of a 1-example set is 0.
  assert M.cider_d(reports[:1], reports[:1]) == 0.0
  assert M.cider_d(["something"], [""]) == 0.0  # no reference n-grams at all


def test_token_f1_hand_computed():
  # "The left lung." -> [left, lung]; "left lung opacity" -> [left, lung, opacity]:
  # common 2, P = 1, R = 2/3, F1 = 0.8.  "yes" vs "no" -> 0.  mean = 40.
  out = M.score(["token_f1"], ["The left lung.", "yes"], ["left lung opacity", "no"])
  assert out["token_f1"] == pytest.approx(40.0)


def test_token_f1_edge_cases():
  assert M.token_f1(["", "the"], ["", "a"]) == 100.0  # both empty after normalisation
  assert M.token_f1([""], ["no"]) == 0.0
  assert M.token_f1(["no"], [""]) == 0.0
  # multiset overlap: pred [yes yes], gold [yes] -> common 1, P=1/2, R=1 -> 2/3.
  assert M.token_f1(["yes yes"], ["yes"]) == pytest.approx(200 / 3)
  # Chinese: per-character tokens, Chinese punctuation removed. pred 肺部 vs gold 肺 -> P=1/2, R=1.
  assert M.token_f1(["肺部。"], ["肺"]) == pytest.approx(200 / 3)


def test_generation_perfect_score():
  refs = ["mild cardiomegaly without edema", "no pleural effusion or pneumothorax", "stable"]
  out = M.score(["rouge_l", "token_f1", "bleu1"], refs, refs)
  assert out["rouge_l"] == pytest.approx(100.0)
  assert out["token_f1"] == 100.0
  assert out["bleu1"] == pytest.approx(100.0, abs=1e-5)

"""Hand-computed checks of medpalm_m.metrics (expected values derived in comments)."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from medpalm_m import metrics as M

YES_NO = ["Yes", "No"]
SKIN = ["BCC", "MEL", "NEV"]


# ---------------------------------------------------------------------------
# parse_choice
# ---------------------------------------------------------------------------

DERM = ["Actinic Keratosis", "Basal Cell Carcinoma", "Melanoma"]


@pytest.mark.parametrize(
    "answer",
    ["(B)", "B", "B.", "b", " (b) ", "B)", "(B) Basal Cell Carcinoma", "B. Basal cell carcinoma",
     "Basal Cell Carcinoma.", "basal cell carcinoma", "  BASAL   CELL CARCINOMA  ", "The answer is (B).",
     "Basal cell carcinoma, most likely"],
)  # fmt: skip
def test_parse_choice_accepts_all_formats(answer):
    assert M.parse_choice(answer, DERM) == 1


@pytest.mark.parametrize(
    "answer",
    ["", "   ", "(D)", "D", "Squamous cell carcinoma", "A basal cell lesion", "(A) 0 (B) 1 (C) 2", "Basal"],
)
def test_parse_choice_none_when_nothing_matches(answer):
    # "(D)" is out of range for 3 options; "A basal ..." starts with the article, not a
    # letter marker; echoing the whole option list is ambiguous; "Basal" is a partial text.
    assert M.parse_choice(answer, DERM) is None


def test_parse_choice_letter_wins_and_longest_text_wins():
    assert M.parse_choice("(A) Basal Cell Carcinoma", DERM) == 0  # letter is the choice
    cbis = ["Benign", "Benign without callback", "Malignant"]
    assert M.parse_choice("benign without callback, probably", cbis) == 1
    assert M.parse_choice("Benign.", cbis) == 0
    # Genotype prompts: "(A) 0 (B) 1 (C) 2", target "1."
    assert M.parse_choice("1.", ["0", "1", "2"]) == 1
    assert M.parse_choice("(C) 2", ["0", "1", "2"]) == 2
    assert M.parse_choice("10", ["0", "1", "2"]) is None


# ---------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------


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


def test_target_outside_options_is_an_error():
    with pytest.raises(ValueError, match="accuracy: target 'Perhaps'"):
        M.score(["accuracy"], ["Yes"], ["Perhaps"], options=YES_NO)


# ---------------------------------------------------------------------------
# BLEU / ROUGE-L / CIDEr-D / token F1
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# SNP / Indel F1
# ---------------------------------------------------------------------------

GT_TYPES = ["snp"] * 6 + ["indel"] * 3
GT_TRUTH = ["1", "2", "0", "1", "0", "2", "1", "1", "0"]
GT_PRED = ["(B) 1", "1", "1.", "0", "0", "2", "1", "dunno", "??"]


def test_snp_indel_f1_wrong_genotype_is_fp_and_fn():
    # SNP: (1,1) TP; (2,1) FP+FN; (0,1) FP; (1,0) FN; (0,0) -; (2,2) TP
    #      TP=2 FP=2 FN=2 -> F1 = 4 / (4 + 4) = 50.
    # Indel: (1,1) TP; (1,unparsed=no call) FN; (0,unparsed) -  -> TP=1 FN=1 -> 2/3.
    out = M.score(["snp_f1", "indel_f1"], GT_PRED, GT_TRUTH, variant_types=GT_TYPES)
    assert out["snp_f1"] == pytest.approx(50.0)
    assert out["indel_f1"] == pytest.approx(200 / 3)


def test_genotype_f1_perfect_and_no_variants():
    assert M.genotype_f1(GT_TRUTH, GT_TRUTH, GT_TYPES, "snp") == 100.0
    assert math.isnan(M.genotype_f1(["0"], ["0"], ["indel"], "indel"))
    with pytest.raises(ValueError, match="snp' or 'indel"):
        M.genotype_f1(["0"], ["0"], ["sv"], "snp")


# ---------------------------------------------------------------------------
# CheXbert / RadGraph
# ---------------------------------------------------------------------------


def _chexbert_row(**codes):
    row = [0] * 14
    for name, code in codes.items():
        row[M.CHEXBERT_CONDITIONS.index(name.replace("_", " "))] = code
    return row


# CheXbert head coding: 0 blank, 1 positive, 2 negative, 3 uncertain.
CX_REF = [_chexbert_row(Cardiomegaly=1, Edema=3), _chexbert_row(Atelectasis=1), _chexbert_row(No_Finding=1)]
CX_PRED = [_chexbert_row(Cardiomegaly=1, Edema=2),
           _chexbert_row(Atelectasis=1, Pleural_Effusion=1), _chexbert_row(No_Finding=1)]  # fmt: skip


def test_chexbert_f1_from_labels_uncertain_positive():
    # refs: Cardio r0, Edema r0 (uncertain -> 1), Atel r1, NoFinding r2.
    # preds: Cardio p0, (Edema negative -> 0), Atel p1, PleuralEff p1, NoFinding p2.
    # 14: TP 3 (Cardio, Atel, NF), FP 1 (PE), FN 1 (Edema) -> micro 6/8 = 75.
    #     per-condition F1: Cardio 1, Atel 1, NF 1, Edema 0, PE 0, 9 others 0 -> macro 3/14.
    # 5:  TP 2, FP 1, FN 1 -> micro 4/6; macro (1 + 1 + 0 + 0 + 0) / 5 = 40.
    out = M.chexbert_f1_from_labels(CX_PRED, CX_REF)
    assert out["chexbert_micro_f1_14"] == pytest.approx(75.0)
    assert out["chexbert_macro_f1_14"] == pytest.approx(300 / 14)
    assert out["chexbert_micro_f1_5"] == pytest.approx(400 / 6)
    assert out["chexbert_macro_f1_5"] == pytest.approx(40.0)


def test_chexbert_f1_from_labels_uncertain_negative():
    # Edema in r0 becomes 0: FN disappears. 14: TP 3 FP 1 FN 0 -> 6/7; 5: TP 2 FP 1 -> 4/5.
    out = M.chexbert_f1_from_labels(CX_PRED, CX_REF, uncertain_as_positive=False)
    assert out["chexbert_micro_f1_14"] == pytest.approx(600 / 7)
    assert out["chexbert_macro_f1_14"] == pytest.approx(300 / 14)
    assert out["chexbert_micro_f1_5"] == pytest.approx(80.0)
    assert out["chexbert_macro_f1_5"] == pytest.approx(40.0)


def test_chexbert_accepts_chexpert_csv_coding():
    # Same references in CheXpert CSV coding: 1.0 positive, -1.0 uncertain, NaN / "" blank.
    def convert(row):
        return [{0: float("nan"), 1: 1.0, 3: -1.0}.get(v, v) if i % 2 else {0: "", 1: "1.0", 3: "-1.0"}.get(v, v)
                for i, v in enumerate(row)]  # fmt: skip

    as_chexpert = [convert(r) for r in CX_REF]
    assert M.chexbert_f1_from_labels(CX_PRED, as_chexpert) == M.chexbert_f1_from_labels(CX_PRED, CX_REF)
    with pytest.raises(ValueError, match="14 columns"):
        M.chexbert_f1_from_labels([[1, 0]], [[1, 0]])


def test_clinical_scorers_unavailable_name_config_key(tmp_path):
    names = ["chexbert_micro_f1_14", "chexbert_macro_f1_5", "f1_radgraph", "bleu1"]
    out = M.score(names, ["no effusion"], ["no effusion"])
    assert out["chexbert_micro_f1_14"] == "skipped: needs local weights at config.eval.scorer_paths.chexbert_checkpoint (not configured)"
    assert out["chexbert_macro_f1_5"].startswith("skipped: needs local weights at config.eval.scorer_paths.chexbert_checkpoint")
    assert out["f1_radgraph"].startswith("skipped: needs local weights at config.eval.scorer_paths.radgraph_model_dir")
    assert isinstance(out["bleu1"], float)
    missing = str(tmp_path / "nope.pth")
    out = M.score(names[:3], ["x"], ["x"], scorer_paths={"chexbert_checkpoint": missing,
                                                          "radgraph_model_dir": str(tmp_path)})  # fmt: skip
    assert f"no file at {missing}" in out["chexbert_micro_f1_14"]
    assert "radgraph/weights.th" in out["f1_radgraph"]
    with pytest.raises(M.ScorerUnavailable, match="chexbert_checkpoint"):
        M.chexbert_f1(["x"], ["x"], None)


_HAVE_CHEXBERT_DEPS = all(importlib.util.find_spec(m) is not None for m in ("f1chexbert", "torch", "transformers"))


@pytest.mark.skipif(_HAVE_CHEXBERT_DEPS, reason="optional packages installed")
def test_chexbert_with_weights_but_no_package_says_so(tmp_path):
    ckpt = tmp_path / "chexbert.pth"
    ckpt.write_bytes(b"")
    M._load_chexbert_labeler.cache_clear()
    msg = M.score(["chexbert_micro_f1_14"], ["x"], ["x"], scorer_paths={"chexbert_checkpoint": str(ckpt)})
    assert "chexbert_checkpoint" in msg["chexbert_micro_f1_14"]
    assert "not installed" in msg["chexbert_micro_f1_14"]


def test_chexbert_glue_with_fake_labeler(monkeypatch, tmp_path):
    # Stand-in labeler: report text -> label row; checks score() labels both sides once
    # and routes all four numbers from one pass.
    table = {"pred0": CX_PRED[0], "pred1": CX_PRED[1], "pred2": CX_PRED[2],
             "ref0": CX_REF[0], "ref1": CX_REF[1], "ref2": CX_REF[2]}  # fmt: skip
    calls = []

    def fake_loader(checkpoint, bert_dir):
        def label(reports):
            calls.append(list(reports))
            return np.array([table[r] for r in reports])

        return label

    monkeypatch.setattr(M, "_load_chexbert_labeler", fake_loader)
    ckpt = tmp_path / "chexbert.pth"
    ckpt.write_bytes(b"")
    names = ["chexbert_micro_f1_14", "chexbert_macro_f1_14", "chexbert_micro_f1_5", "chexbert_macro_f1_5"]
    out = M.score(names, ["pred0", "pred1", "pred2"], ["ref0", "ref1", "ref2"],
                  scorer_paths={"chexbert_checkpoint": str(ckpt)})  # fmt: skip
    assert out == pytest.approx(M.chexbert_f1_from_labels(CX_PRED, CX_REF))
    assert len(calls) == 2  # predictions once, references once


def _ann(*entities):
    return {"entities": {str(i): {"tokens": t, "label": lab, "relations": rel}
                         for i, (t, lab, rel) in enumerate(entities, 1)}}  # fmt: skip


def test_radgraph_f1_from_annotations_partial():
    # hyp: effusion (OBS-DP, no rel), pleural (ANAT-DP, modify -> 1).
    # ref: same two plus cardiomegaly (OBS-DP).
    # partial sets: hyp {(effusion,OBS-DP), (pleural,ANAT-DP,True)}, ref adds (cardiomegaly,OBS-DP).
    # P = 2/2, R = 2/3 -> F1 = 0.8.  Second pair: hyp has no entities -> 0. Mean = 40.
    hyp = _ann(("effusion", "OBS-DP", []), ("pleural", "ANAT-DP", [["modify", "1"]]))
    ref = _ann(("effusion", "OBS-DP", []), ("pleural", "ANAT-DP", [["modify", "1"]]), ("cardiomegaly", "OBS-DP", []))
    assert M.radgraph_f1_from_annotations([hyp], [ref]) == pytest.approx(80.0)
    assert M.radgraph_f1_from_annotations([hyp, _ann()], [ref, ref]) == pytest.approx(40.0)
    # The relation flag matters at "partial": same tokens without the relation do not match.
    hyp_norel = _ann(("effusion", "OBS-DP", []), ("pleural", "ANAT-DP", []))
    # hyp {(effusion), (pleural,ANAT-DP)} vs ref: 1 common of 2 / 3 -> P=1/2, R=1/3 -> F1 = 0.4.
    assert M.radgraph_f1_from_annotations([hyp_norel], [ref]) == pytest.approx(40.0)
    assert M.radgraph_f1_from_annotations([hyp_norel], [ref], "simple") == pytest.approx(80.0)


# ---------------------------------------------------------------------------
# Registry and baseline
# ---------------------------------------------------------------------------


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

"""CheXbert F1 and F1-RadGraph without their weights (medpalm_m.metrics.clinical)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from medpalm_m import metrics as M
from medpalm_m.metrics import clinical


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
  clinical._load_chexbert_labeler.cache_clear()
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

  monkeypatch.setattr(clinical, "_load_chexbert_labeler", fake_loader)
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

"""Hand-computed SNP-F1 and Indel-F1 (medpalm_m.metrics.genomics)."""

from __future__ import annotations

import math

import pytest

from medpalm_m import metrics as M
from tests.metrics.examples import GT_PRED, GT_TRUTH, GT_TYPES


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

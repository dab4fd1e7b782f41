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


_VCF_HEADER = """##fileformat=VCFv4.2
##contig=<ID=chr20,length=10000>
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tHG002
"""


def _vcf(path, rows):
  path.write_text(_VCF_HEADER + "".join(f"chr20\t{pos}\t.\t{ref}\t{alt}\t.\tPASS\t.\tGT\t{gt}\n"
                                        for pos, ref, alt, gt in rows))
  return str(path)


def test_truth_set_f1_counts_a_variant_without_a_candidate_as_missed(tmp_path):
  truth = _vcf(tmp_path / "truth.vcf", [
      (100, "A", "G", "0/1"), (200, "C", "T", "1/1"), (300, "AT", "A", "0/1"), (400, "G", "GA", "1/1"),
      (500, "T", "C", "0/1"),  # no candidate was ever made here
      (600, "C", "G", "0/0")])  # hom-ref: not a variant
  query = _vcf(tmp_path / "calls.vcf", [
      (100, "A", "G", "0/1"),  # TP
      (200, "C", "T", "0/1"),  # wrong genotype: FP and FN
      (300, "ATT", "AT", "0/1"),  # the truth's AT>A in another representation: TP
      (700, "A", "C", "0/1")])  # not in the truth: FP;  400 (indel) not called: FN
  out = M.truth_set_f1(M.vcf_alleles(truth), M.vcf_alleles(query))
  # SNP: TP 1 (100), FP 2 (200, 700), FN 2 (200, 500) -> 2 / (2 + 2 + 2) = 1/3.
  # Indel: TP 1 (300), FP 0, FN 1 (400) -> 2 / 3.
  assert out["snp_f1"] == pytest.approx(100 / 3) and out["indel_f1"] == pytest.approx(200 / 3)
  assert (out["snp_tp"], out["snp_fp"], out["snp_fn"]) == (1, 2, 2)
  # The same calls from the model's answers on its candidates (the missed 500 has none) ...
  loci = ["chr20:100 A>G", "chr20:200 C>T", "chr20:300 AT>A", "chr20:400 G>GA", "chr20:700 A>C"]
  answers = ["1", "(B) 1", "1.", "0", "1"]
  assert M.truth_set_f1(M.vcf_alleles(truth), M.called_alleles(loci, answers)) == out
  # ... whose per-candidate figure, kept beside it, never sees the missed variant:
  # SNP candidates 100 (1,1) TP, 200 (2,1) FP+FN, 700 (0,1) FP -> 2 / (2 + 2 + 1) = 40.
  per_candidate = M.genotype_f1(answers, ["1", "2", "1", "2", "0"], ["snp", "snp", "indel", "indel", "snp"], "snp")
  assert per_candidate == pytest.approx(40.0)


def test_truth_set_metrics_of_a_whole_split_count_its_variants_without_an_example():
  """The registry's truth_snp_f1 / truth_indel_f1 on every candidate of a split: its truth set is
  the candidates' labels plus the recorded variants that no candidate stands for."""
  loci = ["chr20:100 A>G", "chr20:200 C>T", "chr20:300 AT>A", "chr20:400 G>GA", "chr20:700 A>C"]
  targets = ["1.", "2.", "1.", "2.", "0."]
  answers = ["1", "(B) 1", "1.", "0", "1"]
  types = ["snp", "snp", "indel", "indel", "snp"]
  metrics = ["snp_f1", "indel_f1", "truth_snp_f1", "truth_indel_f1"]
  kwargs = dict(variant_types=types, loci=loci)
  complete = M.score(metrics, answers, targets, truth_without_example={}, **kwargs)
  missed = M.score(metrics, answers, targets, truth_without_example={("chr20", 499, "T", "C"): 1}, **kwargs)
  # SNP per candidate: 100 TP, 200 FP+FN, 700 FP -> 2 / (2 + 2 + 1) = 40; the missed 500 adds an
  # FN against the truth set only -> 2 / (2 + 2 + 2). Indel: 300 TP, 400 FN -> 2 / 3 either way.
  assert complete["truth_snp_f1"] == complete["snp_f1"] == pytest.approx(40.0)
  assert missed["snp_f1"] == pytest.approx(40.0) and missed["truth_snp_f1"] == pytest.approx(100 / 3)
  assert missed["indel_f1"] == missed["truth_indel_f1"] == pytest.approx(200 / 3)
  # Always "1" (the most frequent answer, with "2"; the better-scoring one): SNP calls 100 (TP),
  # 200 (FP+FN), 700 (FP), plus the missed 500 -> 2 / (2 + 2 + 2).
  assert M.baseline(["truth_snp_f1"], targets, truth_without_example={("chr20", 499, "T", "C"): 1},
                    **kwargs)["truth_snp_f1"] == pytest.approx(100 / 3)
  unknown = M.score(["truth_snp_f1"], answers, targets, truth_without_example="no record", **kwargs)
  assert unknown["truth_snp_f1"] == "skipped: no record"
  with pytest.raises(ValueError, match="truth_snp_f1.*needs loci"):
    M.score(["truth_snp_f1"], answers, targets, variant_types=types, truth_without_example={})
  assert not M.METRICS["truth_snp_f1"].resampled and M.METRICS["snp_f1"].resampled

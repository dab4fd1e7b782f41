"""SNP-F1 / Indel-F1 (percent): per candidate, and against a truth set as hap.py counts them.

`genotype_f1` scores the model's genotype of each candidate it was shown: a true variant for
which no candidate was made never counts. `truth_set_f1` compares called variants with a truth
VCF, hap.py's view: such a variant is a false negative. The evaluation's snp_f1 / indel_f1 are
the per-candidate figures; truth_snp_f1 / truth_indel_f1 beside them are `split_truth_set_f1`:
the answers on every candidate of a split against its truth set, which is the candidates' own
labels plus the truth variants the dataset records as having no example
(`medpalm_m.data.genomics.truth_set`).
"""

from __future__ import annotations

import re
from typing import Iterable, Literal, Mapping, Sequence

import numpy as np

from medpalm_m.data.genomics.labels import Alleles, normalized_allele, vcf_alleles  # noqa: F401 (re-exported)
from medpalm_m.data.prompts import GENOTYPES
from medpalm_m.metrics.choice import parse_predictions, parse_targets

GENOTYPE_OPTIONS = GENOTYPES  # option i is genotype i: i copies of the alt allele


def genotype_f1(
    predictions: Sequence[str],
    targets: Sequence[str],
    variant_types: Sequence[str],
    variant_type: Literal["snp", "indel"],
    options: Sequence[str] | None = None,
) -> float:
  """Genotype-aware F1 over the candidates of one variant type, in percent.

  Each candidate has a true and a predicted genotype g in {0, 1, 2} (copies of the
  alt allele; parsed with :func:`parse_choice` against ``options``, which must be in
  genotype order and default to ("0", "1", "2")). A variant is a call with g > 0.

  * TP: truth > 0 and prediction == truth;
  * FP: prediction > 0 and prediction != truth;
  * FN: truth > 0 and prediction != truth;
  * F1 = 2TP / (2TP + FP + FN).

  So a wrong genotype on a real variant (het called hom-alt) is both an FP and an FN,
  as in hap.py's genotype-matched comparison. An unparseable prediction is a no-call
  (genotype 0): it costs an FN on a real variant and nothing on a hom-ref candidate,
  like a variant missing from the query VCF. NaN when the set has no true and no
  predicted variants of this type. Hand-written: hap.py is not on PyPI and works on
  VCFs, not per-candidate genotypes.
  """
  options = GENOTYPE_OPTIONS if options is None else options
  metric = f"{variant_type}_f1"
  truth = parse_targets(targets, options, metric)
  pred = np.maximum(parse_predictions(predictions, options), 0)
  types = np.asarray([str(v).strip().lower() for v in variant_types])
  unknown = set(types) - {"snp", "indel"}
  if unknown:
    raise ValueError(f"{metric}: variant_types must be 'snp' or 'indel', got {sorted(unknown)}")
  sel = types == variant_type
  t, p = truth[sel], pred[sel]
  tp = int(np.sum((t > 0) & (p == t)))
  fp = int(np.sum((p > 0) & (p != t)))
  fn = int(np.sum((t > 0) & (p != t)))
  denom = 2 * tp + fp + fn
  return 100.0 * 2 * tp / denom if denom else float("nan")


_LOCUS = re.compile(r"^(\S+):(\d+) ([ACGTN]+)>([ACGTN*]+)$", re.IGNORECASE)


def called_alleles(loci: Iterable[str], predictions: Sequence[str],
                   options: Sequence[str] | None = None) -> Alleles:
  """The model's calls as alleles: each candidate's locus ("chr20:3000123 A>G", 1-based, as the
  PrecisionFDA builder stores it) with its predicted copies; 0 copies and unparseable answers
  are no call."""
  genotypes = parse_predictions(predictions, GENOTYPE_OPTIONS if options is None else options)
  calls: Alleles = {}
  for locus, copies in zip(loci, genotypes):
    match = _LOCUS.match(locus.strip())
    if match is None:
      raise ValueError(f"locus {locus!r} is not 'CONTIG:POS REF>ALT'")
    if copies > 0:
      pos, ref, alt = normalized_allele(int(match.group(2)) - 1, match.group(3), match.group(4))
      calls[(match.group(1), pos, ref, alt)] = int(copies)
  return calls


def truth_set_f1(truth: Mapping[tuple[str, int, str, str], int],
                 calls: Mapping[tuple[str, int, str, str], int]) -> dict[str, float]:
  """Genotype-matched F1 of calls against a truth set, per variant type, in percent (hap.py's
  genotype-level comparison of two VCFs, without its haplotype-aware matching of differently
  represented complex variants; alleles are compared in minimal representation).

  * TP: an allele in both with the same copies;
  * FN: a truth allele not called, or called with other copies (a truth variant for which no
    candidate was ever made is one);
  * FP: a called allele not in the truth, or with other copies.

  SNP: ref and alt one base each; everything else is an indel. Returns snp_f1, indel_f1 (NaN
  where a type has no variant on either side) and each type's tp / fp / fn counts.
  """
  counts = {t: {"tp": 0, "fp": 0, "fn": 0} for t in ("snp", "indel")}
  kind = lambda allele: "snp" if len(allele[2]) == 1 and len(allele[3]) == 1 else "indel"
  for allele, copies in truth.items():
    counts[kind(allele)]["tp" if calls.get(allele) == copies else "fn"] += 1
  for allele, copies in calls.items():
    if truth.get(allele) != copies:
      counts[kind(allele)]["fp"] += 1
  out: dict[str, float] = {}
  for t, c in counts.items():
    denom = 2 * c["tp"] + c["fp"] + c["fn"]
    out[f"{t}_f1"] = 100.0 * 2 * c["tp"] / denom if denom else float("nan")
    out.update({f"{t}_{k}": float(v) for k, v in c.items()})
  return out


def split_truth_set_f1(predictions: Sequence[str], targets: Sequence[str], loci: Sequence[str],
                       without_example: Mapping[tuple[str, int, str, str], int],
                       options: Sequence[str] | None = None) -> dict[str, float]:
  """`truth_set_f1` of the answers on every candidate example of a split: the truth set is the
  examples' true genotypes (`targets`, where > 0) and `without_example`, the split's truth
  variants that no example stands for; the calls are the answers (`called_alleles`). Only a
  whole split has this truth set: on some of its examples the others' variants are missing."""
  truth = {**without_example, **called_alleles(loci, targets, options)}
  return truth_set_f1(truth, called_alleles(loci, predictions, options))

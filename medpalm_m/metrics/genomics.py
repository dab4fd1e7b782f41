"""SNP-F1 / Indel-F1: genotype-aware F1 over the candidates of one variant type (percent)."""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

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

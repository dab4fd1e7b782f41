"""A genomics split's truth set, as its prepared dataset records it for the truth-set F1.

The per-candidate F1 needs only the examples; the truth-set F1 (hap.py's view) also counts the
truth variants that no example stands for: no candidate was made there, or its pileup ran off
the contig. The builder knows them when it builds and the evaluator does not, so the builder
writes them, per split, to the dataset's metadata.json (TFDS keeps it with the data, so
`evaluate` needs no path to the truth VCF):

    metadata["truth_set"][split] = {"without_example": [[contig, pos, ref, alt, copies], ...]}

0-based positions, alleles in minimal representation. Together with the examples' own labels
(the candidates with copies > 0) that is the split's whole truth set. A record rather than the
whole truth set: the examples already carry theirs, and the train split's would be ~10^5 rows.
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping, Sequence

from medpalm_m.data.genomics.candidates import Candidate
from medpalm_m.data.genomics.labels import Alleles, in_confident_regions, vcf_alleles

METADATA_KEY = "truth_set"


def confident_truth(vcf_path: str | os.PathLike, bed_path: str | os.PathLike,
                    regions: Sequence[tuple[str, int, int]]) -> Alleles:
  """The truth VCF's variant alleles that start inside `regions` (contig, 0-based start, end
  exclusive) and inside the confident regions, as the builder keeps candidates."""
  truth: Alleles = {}
  for region in regions:
    truth.update({allele: copies for allele, copies in vcf_alleles(vcf_path, region=region).items()
                  if in_confident_regions(bed_path, Candidate(*allele))})
  return truth


def split_record(truth: Mapping[tuple[str, int, str, str], int],
                 with_example: Iterable[tuple[str, int, str, str]]) -> dict:
  """The metadata record of one split: the truth variants without an example."""
  covered = set(with_example)
  missed = sorted(allele for allele in truth if allele not in covered)
  return {"without_example": [[*allele, truth[allele]] for allele in missed]}


def without_example(metadata: Mapping, split: str) -> Alleles | None:
  """The truth variants of `split` that no example stands for, from a prepared dataset's
  metadata; None when the dataset records no truth set for it (built before it did)."""
  record = (metadata.get(METADATA_KEY) or {}).get(split)
  if record is None:
    return None
  return {(contig, int(pos), ref, alt): int(copies) for contig, pos, ref, alt, copies in record["without_example"]}

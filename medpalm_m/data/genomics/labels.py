"""Labels for candidates: the genotype (0/1/2 copies of the alt) from a truth VCF, and whether a
candidate lies in the truth set's confident regions (a BED); the truth alleles of a VCF."""

from __future__ import annotations

import bisect
import functools
import os

import pysam

from medpalm_m.data.genomics.candidates import Candidate


NUM_CLASSES = 3  # genotypes 0, 1, 2: copies of the alternate allele

# (contig, 0-based position, ref, alt) in minimal representation -> copies of the alt (1 or 2).
Alleles = dict[tuple[str, int, str, str], int]


def normalized_allele(pos: int, ref: str, alt: str) -> tuple[int, str, str]:
  """Minimal VCF representation, so 'ATT>AT' in a truth set matches the candidate 'AT>A'."""
  ref, alt = ref.upper(), alt.upper()
  while len(ref) > 1 and len(alt) > 1 and ref[-1] == alt[-1]:
    ref, alt = ref[:-1], alt[:-1]
  while len(ref) > 1 and len(alt) > 1 and ref[0] == alt[0]:
    ref, alt, pos = ref[1:], alt[1:], pos + 1
  return pos, ref, alt


def genotype_from_vcf(
    vcf: str | os.PathLike | pysam.VariantFile,
    candidate: Candidate,
    sample: str | None = None,
) -> int:
  """Copies (0, 1 or 2) of the candidate's alt allele in the truth genotype; 0 if the site is absent.

  Truth alleles are compared after trimming shared bases, so a multi-allelic
  truth record still labels each single-alt candidate. `sample` defaults to
  the first sample in the file.
  """
  wanted = normalized_allele(candidate.pos, candidate.ref, candidate.alt)
  opened = not isinstance(vcf, pysam.VariantFile)
  variants = pysam.VariantFile(os.fspath(vcf)) if opened else vcf
  try:
    if variants.index is not None:
      if candidate.contig not in variants.header.contigs:
        return 0
      records = variants.fetch(candidate.contig, candidate.pos, candidate.pos + 1)
    else:
      # An unindexed file is scanned; rewind in case a caller's handle was already read.
      variants.reset()
      records = (
          r
          for r in variants
          if r.contig == candidate.contig and r.start <= candidate.pos < r.stop
      )
    copies = 0
    for record in records:
      samples = list(record.samples)
      if not samples:
        raise ValueError("truth VCF has no samples to take a genotype from")
      genotype = record.samples[sample if sample is not None else samples[0]]["GT"] or ()
      alts = record.alts or ()
      matching = sum(
          1
          for allele in genotype
          if allele is not None
          and allele > 0
          and normalized_allele(record.start, record.ref, alts[allele - 1]) == wanted
      )
      copies = max(copies, matching)
    return copies
  finally:
    if opened:
      variants.close()


def vcf_alleles(path: str | os.PathLike, sample: str | None = None,
                region: tuple[str, int, int] | None = None) -> Alleles:
  """The variant alleles of one sample of a VCF, each with its copies in the genotype; alleles
  with 0 copies (hom-ref, filtered-out genotypes) are left out. `region` is (contig, 0-based
  start, end exclusive), e.g. the paper's chr20 test interval."""
  alleles: Alleles = {}
  with pysam.VariantFile(os.fspath(path)) as vcf:
    records = vcf.fetch(*region) if region is not None else vcf
    for record in records:
      if region is not None and not region[1] <= record.start < region[2]:
        continue
      name = sample if sample is not None else next(iter(record.samples), None)
      if name is None:
        raise ValueError(f"{path}: no sample to take a genotype from")
      genotype = [a for a in (record.samples[name]["GT"] or ()) if a is not None and a > 0]
      for allele in set(genotype):
        pos, ref, alt = normalized_allele(record.start, record.ref, record.alts[allele - 1])
        alleles[(record.contig, pos, ref, alt)] = genotype.count(allele)
  return alleles


@functools.lru_cache(maxsize=4)
def _confident_intervals(path: str, mtime_ns: int, size: int) -> dict[str, tuple[list[int], list[int]]]:
  """Merged, sorted BED intervals per contig; keyed by mtime and size so edits invalidate the cache."""
  by_contig: dict[str, list[tuple[int, int]]] = {}
  with open(path) as handle:
    for line in handle:
      if not line.strip() or line.startswith(("#", "track", "browser")):
        continue
      contig, begin, end = line.split()[:3]
      by_contig.setdefault(contig, []).append((int(begin), int(end)))
  merged: dict[str, tuple[list[int], list[int]]] = {}
  for contig, intervals in by_contig.items():
    starts: list[int] = []
    ends: list[int] = []
    for begin, end in sorted(intervals):
      if starts and begin <= ends[-1]:
        ends[-1] = max(ends[-1], end)
      else:
        starts.append(begin)
        ends.append(end)
    merged[contig] = (starts, ends)
  return merged


def in_confident_regions(bed_path: str | os.PathLike, candidate: Candidate) -> bool:
  """Whether the candidate's start lies in the BED (DeepVariant's `RangeSet.variant_overlaps`)."""
  path = os.fspath(bed_path)
  stat = os.stat(path)
  intervals = _confident_intervals(path, stat.st_mtime_ns, stat.st_size).get(candidate.contig)
  if intervals is None:
    return False
  starts, ends = intervals
  index = bisect.bisect_right(starts, candidate.pos) - 1
  return index >= 0 and candidate.pos < ends[index]

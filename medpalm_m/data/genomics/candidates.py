"""Candidate variants: DeepVariant's very-sensitive caller over the reads of a region."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pysam

from medpalm_m.data.genomics.options import DEFAULT_OPTIONS, PileupOptions
from medpalm_m.data.genomics.reads import (ALIGNED_OPS, BASE_CODE, CIGAR_D, CIGAR_I, CIGAR_N, CIGAR_S,
                                           PathOrAlignmentFile, PathOrFastaFile, is_usable_read,
                                           open_alignments, open_reference, read_arrays)


@dataclasses.dataclass(frozen=True)
class Candidate:
  """A putative variant in VCF convention: 0-based `pos`, indels anchored on the preceding base."""

  contig: str
  pos: int
  ref: str
  alt: str

  @property
  def variant_type(self) -> str:
    return "snp" if len(self.ref) == len(self.alt) == 1 else "indel"


# An indel allele keyed by its anchor: ("I", inserted bases) or ("D", deleted length).
IndelKey = tuple[int, str, str | int]


def _count_alleles(
    alignments: pysam.AlignmentFile, contig: str, start: int, end: int, options: PileupOptions
) -> tuple[np.ndarray, Counter[IndelKey]]:
  """Base counts (5 x span: A, C, G, T, other) and indel counts, like DeepVariant's AlleleCounter.

  Each read contributes one allele per position: an insertion or deletion
  replaces the base allele of its anchor, so an indel's VAF denominator is
  the anchor's depth. Bases (and inserted bases) below `min_base_quality`
  are not counted.
  """
  span = end - start
  counted_positions: list[np.ndarray] = []
  counted_codes: list[np.ndarray] = []
  indel_counts: Counter[IndelKey] = Counter()
  displaced_anchors: list[tuple[int, int]] = []
  for read in alignments.fetch(contig, start, end):
    if not is_usable_read(read, options):
      continue
    sequence, qualities = read_arrays(read)
    ref_i, read_i = read.reference_start, 0
    previous_op = None
    for op, length in read.cigartuples:
      if op in ALIGNED_OPS:
        lo, hi = max(ref_i, start), min(ref_i + length, end)
        if lo < hi:
          q = slice(read_i + lo - ref_i, read_i + hi - ref_i)
          keep = qualities[q] >= options.min_base_quality
          counted_positions.append(np.arange(lo - start, hi - start)[keep])
          counted_codes.append(BASE_CODE[sequence[q]][keep])
        ref_i += length
        read_i += length
      elif op in (CIGAR_I, CIGAR_D):
        anchor = ref_i - 1
        # Only an indel that follows a counted aligned base can replace it.
        counted = (
            previous_op in ALIGNED_OPS
            and start <= anchor < end
            and qualities[read_i - 1] >= options.min_base_quality
        )
        anchor_code = int(BASE_CODE[sequence[read_i - 1]]) if counted else 4
        if op == CIGAR_I:
          inserted = slice(read_i, read_i + length)
          key: IndelKey = (anchor, "I", sequence[inserted].tobytes().decode())
          counted = counted and bool(np.all(qualities[inserted] >= options.min_base_quality))
          read_i += length
        else:
          key = (anchor, "D", length)
          ref_i += length
        if counted:
          indel_counts[key] += 1
          displaced_anchors.append((anchor - start, anchor_code))
      elif op == CIGAR_N:
        ref_i += length
      elif op == CIGAR_S:
        read_i += length
      previous_op = op

  base_counts = np.zeros((5, span), np.int64)
  if counted_positions:
    np.add.at(base_counts, (np.concatenate(counted_codes), np.concatenate(counted_positions)), 1)
  for offset, code in displaced_anchors:
    base_counts[code, offset] -= 1
  return base_counts, indel_counts


def find_candidates(
    bam: PathOrAlignmentFile,
    fasta: PathOrFastaFile,
    contig: str,
    start: int,
    end: int,
    options: PileupOptions = DEFAULT_OPTIONS,
) -> list[Candidate]:
  """Candidate SNPs and indels anchored in [start, end), by DeepVariant's very-sensitive-caller thresholds.

  A SNP needs >= `vsc_min_count_snps` reads and VAF >= `vsc_min_fraction_snps`;
  an indel >= `vsc_min_count_indels` and VAF >= `vsc_min_fraction_indels`.
  Each alt at a site is its own candidate (no het-alt pairs); reads are not
  realigned. Sorted by (pos, ref, alt).
  """
  if start >= end:
    raise ValueError(f"empty region {contig}:{start}-{end}")
  with open_alignments(bam) as alignments, open_reference(fasta) as reference:
    base_counts, indel_counts = _count_alleles(alignments, contig, start, end, options)
    depth = base_counts.sum(axis=0)
    for (anchor, _, _), count in indel_counts.items():
      depth[anchor - start] += count

    ref_window = reference.fetch(contig, start, end).upper()
    ref_codes = BASE_CODE[np.frombuffer(ref_window.encode("ascii"), np.uint8)]
    snp_mask = (
        (base_counts[:4] >= options.vsc_min_count_snps)
        & (base_counts[:4] / np.maximum(depth, 1) >= options.vsc_min_fraction_snps)
        & (np.arange(4)[:, None] != ref_codes[None, :])
        & (ref_codes[None, :] < 4)
    )
    candidates = [
        Candidate(contig, start + int(offset), ref_window[offset], "ACGT"[code])
        for code, offset in zip(*np.nonzero(snp_mask))
    ]
    for (anchor, kind, payload), count in indel_counts.items():
      fraction = count / depth[anchor - start]
      if count < options.vsc_min_count_indels or fraction < options.vsc_min_fraction_indels:
        continue
      if kind == "I":
        anchor_base = ref_window[anchor - start]
        candidates.append(Candidate(contig, anchor, anchor_base, anchor_base + str(payload)))
      else:
        ref = reference.fetch(contig, anchor, anchor + 1 + int(payload)).upper()
        candidates.append(Candidate(contig, anchor, ref, ref[0]))
  return sorted(candidates, key=lambda c: (c.pos, c.ref, c.alt))

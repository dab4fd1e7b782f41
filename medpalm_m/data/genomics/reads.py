"""Walking aligned reads: CIGAR operations, DeepVariant's read filter, base codes, opening files.

Shared by candidate finding, the pileup encoding and the genome simulator.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import numpy as np
import pysam

from medpalm_m.data.genomics.options import PileupOptions


CIGAR_M, CIGAR_I, CIGAR_D, CIGAR_N, CIGAR_S = 0, 1, 2, 3, 4
CIGAR_EQ, CIGAR_X = 7, 8
ALIGNED_OPS = (CIGAR_M, CIGAR_EQ, CIGAR_X)

PathOrAlignmentFile = str | os.PathLike | pysam.AlignmentFile
PathOrFastaFile = str | os.PathLike | pysam.FastaFile

ACGT = np.frombuffer(b"ACGT", np.uint8)
BASE_CODE = np.full(256, 4, np.int64)  # A, C, G, T -> 0..3; anything else -> 4
BASE_CODE[ACGT] = np.arange(4)


@contextlib.contextmanager
def open_alignments(bam: PathOrAlignmentFile) -> Iterator[pysam.AlignmentFile]:
  # Callers that loop over many sites pass an open file; one-off calls pass a path.
  if isinstance(bam, pysam.AlignmentFile):
    yield bam
    return
  with pysam.AlignmentFile(os.fspath(bam), "rb") as handle:
    yield handle


@contextlib.contextmanager
def open_reference(fasta: PathOrFastaFile) -> Iterator[pysam.FastaFile]:
  if isinstance(fasta, pysam.FastaFile):
    yield fasta
    return
  with pysam.FastaFile(os.fspath(fasta)) as handle:
    yield handle


def is_usable_read(read: pysam.AlignedSegment, options: PileupOptions) -> bool:
  """DeepVariant's default ReadRequirements (no duplicates, QC-fails, secondary or supplementary)."""
  return not (
      read.is_unmapped
      or read.is_secondary
      or read.is_supplementary
      or read.is_duplicate
      or read.is_qcfail
      or read.query_sequence is None
      or read.mapping_quality < options.min_mapping_quality
  )


def read_arrays(read: pysam.AlignedSegment) -> tuple[np.ndarray, np.ndarray]:
  sequence = np.frombuffer(read.query_sequence.upper().encode("ascii"), np.uint8)
  qualities = read.query_qualities
  if qualities is None:
    # A BAM without qualities ('*') gives every base quality 0, so such reads
    # never pass the base-quality test at the candidate.
    return sequence, np.zeros(len(sequence), np.int64)
  return sequence, np.asarray(qualities, np.int64)

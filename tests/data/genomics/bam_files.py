"""A small random reference and hand-written reads, saved as real FASTA and BAM files with pysam."""

from __future__ import annotations

import random
from pathlib import Path

import pysam

M, I, D, S = 0, 1, 2, 4

CONTIG = "chr1"
REF = "".join(random.Random(7).choice("ACGT") for _ in range(300))
POS = 150
WINDOW_START = POS - 110


def write_fasta(path: Path, sequence: str = REF) -> Path:
  path.write_text(f">{CONTIG}\n" + "\n".join(sequence[i : i + 60] for i in range(0, len(sequence), 60)) + "\n")
  pysam.faidx(str(path))
  return path


def write_bam(path: Path, reads: list[dict], contig_length: int = len(REF)) -> Path:
  """Writes reads unsorted, then sorts and indexes them with pysam as a real pipeline would."""
  header = {"HD": {"VN": "1.6"}, "SQ": [{"SN": CONTIG, "LN": contig_length}]}
  unsorted = path.with_suffix(".unsorted.bam")
  with pysam.AlignmentFile(str(unsorted), "wb", header=header) as out:
    for spec in reversed(reads):
      segment = pysam.AlignedSegment(out.header)
      segment.query_name = spec["name"]
      segment.flag = (16 if spec.get("reverse") else 0) | spec.get("flag", 0)
      segment.reference_id = 0
      segment.reference_start = spec["start"]
      segment.mapping_quality = spec.get("mapq", 60)
      segment.cigartuples = spec["cigar"]
      segment.query_sequence = spec["seq"]
      quals = spec.get("quals", 30)
      segment.query_qualities = pysam.qualitystring_to_array(
          "".join(chr(33 + q) for q in (quals if isinstance(quals, list) else [quals] * len(spec["seq"])))
      )
      out.write(segment)
  pysam.sort("-o", str(path), str(unsorted))
  pysam.index(str(path))
  return path


def with_base(sequence: str, index: int, base: str) -> str:
  return sequence[:index] + base + sequence[index + 1 :]


ALT = next(b for b in "ACGT" if b != REF[POS])

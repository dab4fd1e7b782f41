"""Candidate finding by DeepVariant's thresholds on real pysam files (medpalm_m.data.genomics.candidates)."""

from __future__ import annotations

from pathlib import Path

from medpalm_m.data.genomics import Candidate, find_candidates
from tests.data.genomics.bam_files import CONTIG, REF, D, I, M, write_bam, write_fasta


def test_find_candidates_thresholds(tmp_path: Path) -> None:
  def read(i: int, edits: dict[int, str] | None = None, ins: tuple[int, str] | None = None,
           dele: tuple[int, int] | None = None, **kw) -> dict:
    seq = list(REF[80:300])
    for pos, base in (edits or {}).items():
      seq[pos - 80] = base
    if ins:
      anchor, bases = ins
      cut = anchor + 1 - 80
      return dict(name=f"r{i:02d}", start=80, cigar=[(M, cut), (I, len(bases)), (M, 220 - cut)],
                  seq="".join(seq[:cut]) + bases + "".join(seq[cut:]), **kw)
    if dele:
      anchor, length = dele
      cut = anchor + 1 - 80
      return dict(name=f"r{i:02d}", start=80, cigar=[(M, cut), (D, length), (M, 220 - cut - length)],
                  seq="".join(seq[:cut] + seq[cut + length :]), **kw)
    return dict(name=f"r{i:02d}", start=80, cigar=[(M, 220)], seq="".join(seq), **kw)

  other = lambda pos: next(b for b in "ACGT" if b != REF[pos])  # noqa: E731
  low_quality_at_260 = [30] * 220
  low_quality_at_260[260 - 80] = 5
  reads = (
      # SNP at 150 in 4/20 reads (VAF 0.2): candidate. SNP at 170 in 2/20 (0.1 < 0.12): not.
      [read(i, {150: other(150), 170: other(170)}) for i in range(2)]
      + [read(i, {150: other(150)}) for i in range(2, 4)]
      # Insertion after 200 in 2/20 (0.1 >= 0.06): candidate. SNP at 180 in one read: not.
      + [read(4, {180: other(180)}, ins=(200, "GT")), read(5, ins=(200, "GT"))]
      # 2-bp deletion after 250 in 3/20: candidate.
      + [read(i, dele=(250, 2)) for i in range(6, 9)]
      # SNP at 260 in 3 reads but at base quality 5: not counted.
      + [read(i, {260: other(260)}, quals=low_quality_at_260) for i in range(9, 12)]
      + [read(i) for i in range(12, 20)]
      # SNP at 280 only in MAPQ-5 reads: not counted.
      + [read(i, {280: other(280)}, mapq=5) for i in range(20, 24)]
  )
  fasta, bam = write_fasta(tmp_path / "ref.fa"), write_bam(tmp_path / "cands.bam", reads)
  assert find_candidates(bam, fasta, CONTIG, 100, 300) == [
      Candidate(CONTIG, 150, REF[150], other(150)),
      Candidate(CONTIG, 200, REF[200], REF[200] + "GT"),
      Candidate(CONTIG, 250, REF[250:253], REF[250]),
  ]
  assert find_candidates(bam, fasta, CONTIG, 100, 145) == []
  assert Candidate(CONTIG, 150, "A", "C").variant_type == "snp"
  assert Candidate(CONTIG, 250, "ATT", "A").variant_type == "indel"

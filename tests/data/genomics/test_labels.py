"""Genotype labels from a truth VCF and confident regions from a BED (medpalm_m.data.genomics.labels)."""

from __future__ import annotations

from pathlib import Path

import pysam

from medpalm_m.data.genomics import Candidate, genotype_from_vcf, in_confident_regions
from tests.data.genomics.bam_files import CONTIG


def test_genotype_from_vcf(tmp_path: Path) -> None:
  header = pysam.VariantHeader()
  header.contigs.add(CONTIG, length=1000)
  header.add_meta("FORMAT", items=[("ID", "GT"), ("Number", 1), ("Type", "String"), ("Description", "Genotype")])
  header.add_sample("HG002")
  records = [
      (150, ("A", "C"), (0, 1), False),
      (200, ("G", "GGT"), (1, 1), True),
      (250, ("ATT", "AT", "A"), (1, 2), False),
      (300, ("G", "T"), (0, 0), False),
  ]
  plain, compressed = tmp_path / "truth.vcf", tmp_path / "truth.vcf.gz"
  for path, mode in ((plain, "w"), (compressed, "wz")):
    with pysam.VariantFile(str(path), mode, header=header) as out:
      for start, alleles, genotype, phased in records:
        record = out.new_record(contig=CONTIG, start=start, alleles=alleles)
        record.samples["HG002"]["GT"] = genotype
        record.samples["HG002"].phased = phased
        out.write(record)
  pysam.tabix_index(str(compressed), preset="vcf", force=True)

  cases = [
      (Candidate(CONTIG, 150, "A", "C"), 1),
      (Candidate(CONTIG, 150, "A", "G"), 0),
      (Candidate(CONTIG, 200, "G", "GGT"), 2),
      (Candidate(CONTIG, 250, "AT", "A"), 1),
      (Candidate(CONTIG, 250, "ATT", "A"), 1),
      (Candidate(CONTIG, 300, "G", "T"), 0),
      (Candidate(CONTIG, 400, "C", "A"), 0),
      (Candidate("chr2", 150, "A", "C"), 0),
  ]
  with pysam.VariantFile(str(plain)) as handle:
    for candidate, expected in cases:
      assert genotype_from_vcf(plain, candidate) == expected, candidate
      assert genotype_from_vcf(compressed, candidate) == expected, candidate
      assert genotype_from_vcf(handle, candidate) == expected, candidate


def test_in_confident_regions(tmp_path: Path) -> None:
  bed = tmp_path / "confident.bed"
  bed.write_text("track name=conf\nchr1\t100\t200\nchr1\t150\t300\nchr1\t500\t600\n")
  inside = lambda contig, pos: in_confident_regions(bed, Candidate(contig, pos, "A", "C"))  # noqa: E731
  assert [inside("chr1", p) for p in (99, 100, 250, 299, 300, 499, 599, 600)] == [
      False, True, True, True, False, False, True, False,
  ]
  assert not inside("chr2", 150)

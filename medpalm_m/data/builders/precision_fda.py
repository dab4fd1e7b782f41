"""PrecisionFDA Truth Challenge V2 variant calling: DeepVariant pileups of HG002 candidates.

Not a ready-made dataset: the examples are made here, as Med-PaLM M made them with DeepVariant
v1.3.0's make_examples, from four files in the manual directory:

  reads       an indexed BAM of HG002 (the challenge's reads aligned to GRCh38)
  reference   the GRCh38 FASTA they are aligned to, with its .fai
  truth       GIAB's HG002 benchmark VCF (bgzipped, tabix-indexed)
  confident   GIAB's benchmark-region BED

Candidates come from `genomics.find_candidates` (DeepVariant's very-sensitive-caller thresholds),
are kept when they start inside the confident regions, are labelled with the number of copies
of their alt allele in the truth genotype (0 when the truth has no such variant), and become the
paper's 224x224x3 RGB pileup. The paper's split:

  train  4% of the genome-wide candidates outside chr20, chr21 and chr22 (197,038 in the paper).
         The 4% is drawn as 4% of the genome in 10 kb chunks chosen by a hash of their position,
         so only those chunks are read: the same fraction of candidates in expectation, and a
         build in hours rather than days of pure-Python candidate search.
  test   every candidate of chr20:3,000,001-9,444,417 (13,030 in the paper).

Contigs may be named "chr20" or "20". Each split also records, in metadata.json, its truth
variants (in its regions and the confident regions) that no example stands for: the truth-set
F1 counts them as missed (`genomics.truth_set`).
"""

from __future__ import annotations

import functools
import glob
import os
import zlib
from typing import Iterator, Sequence

import numpy as np
import pysam
import tensorflow_datasets as tfds

from medpalm_m.data import genomics
from medpalm_m.data import prompts
from medpalm_m.data import tasks
from medpalm_m.data.builders import base
from medpalm_m.data.genomics import truth_set


_BAM, _BAM_INDEX = ("*.bam",), ("*.bam.bai", "*.bai", "*.bam.csi")
_FASTA, _FASTA_INDEX = ("*.fa", "*.fasta", "*.fna"), ("*.fa.fai", "*.fasta.fai", "*.fna.fai")
_VCF, _VCF_INDEX = ("*.vcf.gz",), ("*.vcf.gz.tbi", "*.vcf.gz.csi")
_BED = ("*.bed",)


class PrecisionFda(base.ManualBuilder):
  """Pileup images of HG002 candidate variants with their truth genotype (0/1/2)."""
  name = "precision_fda"
  DESCRIPTION = __doc__
  HOMEPAGE = "https://precision.fda.gov/challenges/10"
  OBTAIN = ("Reads: the challenge's HG002 Illumina reads (precisionFDA, free account) aligned to "
            "GRCh38, as a coordinate-sorted BAM with its index (`samtools index`). Reference: "
            "GRCh38_no_alt_analysis_set.fasta, uncompressed, with `samtools faidx`. Truth and "
            "confident regions: GIAB's HG002 GRCh38 v4.2 benchmark VCF (.vcf.gz with its .tbi) and "
            "BED from the NIST FTP site. Put exactly one file of each kind in the folder.")
  CITATION = ("Olson et al., precisionFDA Truth Challenge V2: Calling variants from short and long "
              "reads in difficult-to-map regions, Cell Genomics 2 (2022).")
  REQUIRED_FILES = (_BAM, _BAM_INDEX, _FASTA, _FASTA_INDEX, _VCF, _VCF_INDEX, _BED)

  TRAIN_EXCLUDED_CONTIGS = ("20", "21", "22")
  TEST_REGION = ("20", 3_000_000, 9_444_417)  # 0-based, end-exclusive: 1-based 3,000,001-9,444,417
  TRAIN_FRACTION = 0.04  # the paper's; a builder option (train_fraction) for smaller downloads
  CHUNK_BP = 10_000
  PILEUP_OPTIONS = genomics.DEFAULT_OPTIONS
  OPTIONS = {"train_fraction": f"share of the genome's 10 kb chunks the train split reads "
                               f"(default {TRAIN_FRACTION}, the paper's)"}

  def __init__(self, *, train_fraction: float | None = None, **kwargs):
    """`train_fraction`: the share of the genome's 10 kb chunks the train split reads; None: the
    paper's TRAIN_FRACTION."""
    train_fraction = self.TRAIN_FRACTION if train_fraction is None else float(train_fraction)
    if not 0 < train_fraction <= 1:
      raise ValueError(f"precision_fda: train_fraction must be in (0, 1], got {train_fraction}")
    super().__init__(**kwargs)
    self.train_fraction = train_fraction

  def empty_split_hint(self, split: str) -> str:
    if split != "train":
      return super().empty_split_hint(split)
    return (f"the train split reads train_fraction={self.train_fraction} of the genome outside "
            f"chr20-22 (10 kb chunks), and no candidate fell in those chunks: on a download that "
            f"covers only part of the genome, build with a larger fraction: "
            f"{base.option_hint('precision_fda', 'train_fraction', 1.0)}")

  def features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),  # the locus
        "image": tfds.features.Tensor(shape=(genomics.RGB_IMAGE_SIZE, genomics.RGB_IMAGE_SIZE, 3),
                                      dtype=np.uint8, encoding="zlib"),
        "label": tfds.features.ClassLabel(names=prompts.GENOTYPES),
        "variant_type": tfds.features.Text(),  # snp | indel
        "locus": tfds.features.Text(),  # "chr20:3000123 A>G", 1-based like a VCF
    })

  def generate_splits(self, manual_dir: str):
    files = {kind: self._one_file(manual_dir, patterns, kind) for kind, patterns in
             (("BAM", _BAM), ("FASTA", _FASTA), ("truth VCF", _VCF), ("confident-region BED", _BED))}
    bed_contigs = self._bed_contigs(files["confident-region BED"])
    with pysam.AlignmentFile(files["BAM"]) as bam, pysam.FastaFile(files["FASTA"]) as fasta:
      lengths = {contig: fasta.get_reference_length(contig)
                 for contig in bam.references if contig in fasta.references}
    test_contig, test_start, test_end = self.TEST_REGION
    test_contig = _named_like(test_contig, lengths)
    if test_contig is None:
      raise base.ManualDataError(
          f"{self.name}: neither the BAM {files['BAM']} nor the FASTA has chr20 (or 20), which holds "
          f"the paper's test interval chr20:{test_start + 1:,}-{test_end:,}. Use reads aligned to GRCh38.")
    excluded = {_named_like(c, lengths) for c in self.TRAIN_EXCLUDED_CONTIGS} | {test_contig}
    train_regions = [(contig, start, min(start + self.CHUNK_BP, length))
                     for contig, length in lengths.items()
                     if contig in bed_contigs and contig not in excluded
                     for start in range(0, length, self.CHUNK_BP)
                     if _sampled(contig, start, self.train_fraction)]
    test_regions = [(test_contig, test_start, min(test_end, lengths[test_contig]))]
    test_regions = [region for region in test_regions if region[1] < region[2]]
    return {"train": self._records(files, train_regions, "train"),
            "test": self._records(files, test_regions, "test")}

  def _one_file(self, manual_dir: str, patterns: Sequence[str], kind: str) -> str:
    found = sorted({path for pattern in patterns for path in glob.glob(os.path.join(manual_dir, pattern))})
    if len(found) != 1:
      raise base.ManualDataError(
          f"{self.name}: expected exactly one {kind} ({' or '.join(patterns)}) in {manual_dir}, found "
          f"{len(found)}: {[os.path.basename(p) for p in found]}. Keep only the one to use.")
    return found[0]

  @staticmethod
  def _bed_contigs(path: str) -> set[str]:
    """Contigs of the BED, after checking every line: a bad region stops the build (it is not a
    record that could be skipped, and skipping it would silently shrink the confident regions)."""
    contigs = set()
    with open(path) as f:
      for line_number, line in enumerate(f, 1):
        if not line.strip() or line.startswith(("#", "track", "browser")):
          continue
        fields = line.split()
        try:
          start, end = int(fields[1]), int(fields[2])
        except (IndexError, ValueError):
          raise base.MalformedRecordError(
              path, line_number, f"expected 'contig start end', got {line.strip()!r}") from None
        if not 0 <= start < end:
          raise base.MalformedRecordError(path, line_number, f"region {start}-{end} is empty or negative")
        contigs.add(fields[0])
    return contigs

  def _records(self, files: dict[str, str], regions: Sequence[tuple[str, int, int]],
               split: str) -> Iterator[base.KeyedRecord]:
    """The split's examples; once they are all out, its truth variants that none stands for go
    to metadata.json (`genomics.truth_set`)."""
    vcf_path, bed_path = files["truth VCF"], files["confident-region BED"]
    with_example = set()
    with pysam.AlignmentFile(files["BAM"]) as bam, pysam.FastaFile(files["FASTA"]) as fasta, \
        pysam.VariantFile(vcf_path) as truth:
      for contig, start, end in regions:
        for candidate in genomics.find_candidates(bam, fasta, contig, start, end, self.PILEUP_OPTIONS):
          if not genomics.in_confident_regions(bed_path, candidate):
            continue
          locus = f"{candidate.contig}:{candidate.pos + 1} {candidate.ref}>{candidate.alt}"
          with self.record_at(vcf_path, None, entry=locus):
            label = genomics.genotype_from_vcf(truth, candidate)
            try:
              image = genomics.make_pileup(bam, fasta, candidate, self.PILEUP_OPTIONS)
            except ValueError:
              continue  # the window runs off the contig: DeepVariant makes no example either
            with_example.add((candidate.contig, *genomics.normalized_allele(candidate.pos, candidate.ref,
                                                                            candidate.alt)))
            yield locus, {"id": locus, "image": genomics.pileup_to_rgb(image), "label": label,
                          "variant_type": candidate.variant_type, "locus": locus}
    records = self.info.metadata.setdefault(truth_set.METADATA_KEY, {})
    records[split] = truth_set.split_record(truth_set.confident_truth(vcf_path, bed_path, regions),
                                            with_example)


def _named_like(contig: str, lengths: dict[str, int]) -> str | None:
  """'20' as the files name it: '20' or 'chr20'."""
  for name in (contig, f"chr{contig}", contig.removeprefix("chr")):
    if name in lengths:
      return name
  return None


def _sampled(contig: str, start: int, fraction: float) -> bool:
  return zlib.crc32(f"{contig}:{start}".encode()) < fraction * 2**32


# Task: the paper's 0-shot prompt verbatim, as the synthetic analog's ----------------------------
TASK = tasks.register(tasks.Task(
    name="precision_fda",
    builder=PrecisionFda,
    formatter=functools.partial(prompts.format_genotype, task_name="precision_fda"),
    # Per candidate, as the paper; then against the split's truth set (no bootstrap margin).
    metrics=("snp_f1", "indel_f1", "truth_snp_f1", "truth_indel_f1"),
    options=prompts.GENOTYPES,
    paper_task="PrecisionFDA",
))

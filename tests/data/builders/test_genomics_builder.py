"""The PrecisionFDA builder on a small HG002-style download written with pysam.

The manual directory holds what a user assembles for the challenge: a sorted, indexed BAM, the
reference FASTA with its .fai, GIAB's truth VCF (bgzipped, tabix-indexed) and confident-region
BED, under their usual file names. Contigs chr1 (train), chr20 (the paper's test interval starts
at 3,000,001, so it is 3 Mb long here) and chr21 (held out of both splits) carry planted
variants whose reads are written base by base, so each expected candidate, label and pileup
pixel is known.
"""

from __future__ import annotations

import array
import os
from pathlib import Path

import numpy as np
import pysam
import pytest
import tensorflow_datasets as tfds

from medpalm_m.data import pipeline, tasks
from medpalm_m.data.builders import base, precision_fda
from medpalm_m.data.genomics import truth_set

tfds.disable_progress_bar()

CONTIG_LENGTHS = {"chr1": 3000, "chr20": 3_000_700, "chr21": 2000}
BAM = "HG002.novaseq.pcr-free.35x.dedup.grch38_no_alt.bam"
FASTA = "GRCh38_no_alt_analysis_set.fasta"
VCF = "HG002_GRCh38_1_22_v4.2.1_benchmark.vcf"
BED = "HG002_GRCh38_1_22_v4.2.1_benchmark_noinconsistent.bed"
BED_REGIONS = [("chr1", 0, 250), ("chr1", 350, 3000), ("chr20", 2_999_000, 3_000_700), ("chr21", 0, 2000)]
READS_PER_SITE, READ_LENGTH = 20, 80
# (contig, 0-based pos, kind, truth genotype or None for a read artifact absent from the truth)
SITES = [
    ("chr1", 80, "snp", (0, 1)),  # its 221-bp window runs off the contig start: no example
    ("chr1", 300, "snp", (0, 1)),  # outside the confident regions
    ("chr1", 600, "snp", (0, 1)),
    ("chr1", 1200, "snp", (1, 1)),
    ("chr1", 1800, "del", (0, 1)),
    ("chr1", 2400, "snp", None),  # 5 of 20 reads carry it: a candidate, genotype 0
    ("chr20", 2_999_900, "snp", (0, 1)),  # chr20 but before the test interval
    ("chr20", 3_000_300, "snp", (0, 1)),
    ("chr20", 3_000_450, "ins", (0, 1)),
    ("chr20", 3_000_550, "snp", None),
    ("chr21", 1000, "snp", (1, 1)),  # chr21 is in neither split
]
# In the truth, but no read covers it (a region the reads miss): no candidate, so no example.
TRUTH_WITHOUT_READS = [("chr20", 3_000_620, "snp", (0, 1))]
COLOR = {"A": 250, "G": 180, "T": 100, "C": 30}  # DeepVariant's read_base channel


def alleles(sequence: str, pos: int, kind: str) -> tuple[str, str]:
  """(REF, ALT) of a planted variant at `pos` of the contig `sequence`."""
  ref_base = sequence[pos]
  if kind == "snp":
    return ref_base, "ACGT"[("ACGT".index(ref_base) + 1) % 4]
  if kind == "del":
    return sequence[pos:pos + 3], ref_base
  return ref_base, ref_base + "TT"


def locus(download: Path, contig: str, pos: int, kind: str) -> str:
  with pysam.FastaFile(str(download / FASTA)) as fasta:
    ref, alt = alleles(fasta.fetch(contig), pos, kind)
  return f"{contig}:{pos + 1} {ref}>{alt}"


def site_read(sequence: str, pos: int, ref: str, alt: str, start: int, carries: bool):
  """(cigar, bases) of a read starting at `start` from the ref or the alt haplotype."""
  length = READ_LENGTH
  if not carries or len(ref) == len(alt):
    bases = list(sequence[start:start + length])
    if carries:
      bases[pos - start] = alt
    return [(0, length)], "".join(bases)
  left = pos + 1 - start  # aligned bases up to and including the anchor
  if len(ref) > len(alt):
    deleted = len(ref) - len(alt)
    return ([(0, left), (2, deleted), (0, length - left)],
            sequence[start:pos + 1] + sequence[pos + 1 + deleted:pos + 1 + deleted + length - left])
  inserted = alt[1:]
  right = length - left - len(inserted)
  return ([(0, left), (1, len(inserted)), (0, right)],
          sequence[start:pos + 1] + inserted + sequence[pos + 1:pos + 1 + right])


def write_precision_fda(root: Path, sites=SITES, reads_per_site: int = READS_PER_SITE,
                        contig_lengths: dict[str, int] | None = None, seed: int = 0) -> Path:
  """BAM + FASTA + truth VCF + BED as a user would put them in the manual directory."""
  lengths = contig_lengths or CONTIG_LENGTHS
  root.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  reference = {c: np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, n)].tobytes().decode()
               for c, n in lengths.items()}
  with open(root / FASTA, "w") as f:
    for contig, sequence in reference.items():
      f.write(f">{contig}\n" + "\n".join(sequence[i:i + 60] for i in range(0, len(sequence), 60)) + "\n")
  pysam.faidx(str(root / FASTA))

  contigs = list(lengths)
  header = {"HD": {"VN": "1.6", "SO": "coordinate"},
            "SQ": [{"SN": c, "LN": n} for c, n in lengths.items()],
            "RG": [{"ID": "HG002", "SM": "HG002"}]}
  reads, truth = [], []
  for k, (contig, pos, kind, genotype) in enumerate(sites):
    ref, alt = alleles(reference[contig], pos, kind)
    copies = sum(genotype) if genotype else 0
    for j in range(reads_per_site):
      start = pos - 40 + j % 20
      # Het: every other read; hom-alt: all; artifact: a quarter (VAF 0.25 passes the 0.12 bar).
      carries = (j % 2 == 0) if copies == 1 else copies == 2 or (genotype is None and j % 4 == 0)
      cigar, bases = site_read(reference[contig], pos, ref, alt, start, carries)
      reads.append((contigs.index(contig), start, f"site{k}_read{j}", cigar, bases, j % 3 == 0))
    if genotype is not None:
      truth.append((contig, pos, ref, alt, genotype))
  for contig, pos, kind, genotype in TRUTH_WITHOUT_READS:
    if contig in lengths:
      truth.append((contig, pos, *alleles(reference[contig], pos, kind), genotype))
  truth.sort(key=lambda t: (contigs.index(t[0]), t[1]))
  reads.sort(key=lambda r: (r[0], r[1], r[2]))
  with pysam.AlignmentFile(str(root / BAM), "wb", header=header) as out:
    for tid, start, name, cigar, bases, reverse in reads:
      segment = pysam.AlignedSegment(out.header)
      segment.query_name, segment.flag = name, 16 if reverse else 0
      segment.reference_id, segment.reference_start, segment.mapping_quality = tid, start, 60
      segment.cigartuples, segment.query_sequence = cigar, bases
      segment.query_qualities = array.array("B", [30] * len(bases))
      segment.set_tag("RG", "HG002")
      out.write(segment)
  pysam.index(str(root / BAM))

  with open(root / VCF, "w") as f:
    f.write("##fileformat=VCFv4.2\n")
    f.writelines(f"##contig=<ID={c},length={n}>\n" for c, n in lengths.items())
    f.write('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n')
    f.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tHG002\n")
    for contig, pos, ref, alt, genotype in truth:
      f.write(f"{contig}\t{pos + 1}\t.\t{ref}\t{alt}\t50\tPASS\t.\tGT\t{genotype[0]}/{genotype[1]}\n")
  pysam.tabix_index(str(root / VCF), preset="vcf", force=True)  # -> .vcf.gz + .vcf.gz.tbi
  (root / BED).write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in BED_REGIONS if c in lengths))
  return root


def all_train_chunks(**kwargs) -> precision_fda.PrecisionFda:
  """The fixture's chr1 is one chunk, which the paper's 4% does not draw (see the test below)."""
  return precision_fda.PrecisionFda(train_fraction=1.0, **kwargs)


@pytest.fixture(scope="module")
def download(tmp_path_factory):
  return write_precision_fda(tmp_path_factory.mktemp("pfda") / "manual")


@pytest.fixture(scope="module")
def built(download, tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("pfda_tfds")
  builder = all_train_chunks(data_dir=str(data_dir), manual_dir=str(download))
  builder.download_and_prepare()
  return data_dir, builder


def records(builder, split):
  source = builder.as_data_source(split)
  return {bytes(r["id"]).decode(): r for r in (source[i] for i in range(len(source)))}


def linked_copy(download: Path, destination: Path, skip: tuple[str, ...] = ()) -> Path:
  destination.mkdir()
  for path in download.iterdir():
    if path.name not in skip:
      os.symlink(path, destination / path.name)
  return destination


def test_splits_candidates_and_labels(built, download):
  _, builder = built
  train, test = records(builder, "train"), records(builder, "test")
  # chr1:81 (window off the contig), chr1:301 (not confident), chr20:2,999,901 (chr20 outside the
  # test interval) and chr21 give no example; the artifact sites are candidates with genotype 0.
  assert {k: (int(r["label"]), bytes(r["variant_type"]).decode()) for k, r in train.items()} == {
      locus(download, "chr1", 600, "snp"): (1, "snp"), locus(download, "chr1", 1200, "snp"): (2, "snp"),
      locus(download, "chr1", 1800, "del"): (1, "indel"), locus(download, "chr1", 2400, "snp"): (0, "snp")}
  assert {k: (int(r["label"]), bytes(r["variant_type"]).decode()) for k, r in test.items()} == {
      locus(download, "chr20", 3_000_300, "snp"): (1, "snp"),
      locus(download, "chr20", 3_000_450, "ins"): (1, "indel"),
      locus(download, "chr20", 3_000_550, "snp"): (0, "snp")}


def test_each_split_records_its_truth_variants_without_an_example(built, download):
  """For the truth-set F1: train's chr1:81 (its window runs off the contig) and the test
  interval's variant that no read covers; not chr1:301 (outside the confident regions), nor
  chr20:2,999,901 (outside the test interval), nor the read artifacts (not in the truth)."""
  data_dir, _ = built
  prepared = precision_fda.PrecisionFda(data_dir=str(data_dir))  # as the evaluator reads it
  with pysam.FastaFile(str(download / FASTA)) as fasta:
    chr1_ref, chr1_alt = alleles(fasta.fetch("chr1"), 80, "snp")
    chr20_ref, chr20_alt = alleles(fasta.fetch("chr20"), 3_000_620, "snp")
  assert truth_set.without_example(prepared.info.metadata, "train") == {("chr1", 80, chr1_ref, chr1_alt): 1}
  assert truth_set.without_example(prepared.info.metadata, "test") == {
      ("chr20", 3_000_620, chr20_ref, chr20_alt): 1}


def test_pileup_pixels_follow_the_reads(built, download):
  _, builder = built
  with pysam.FastaFile(str(download / FASTA)) as fasta:
    chr1 = fasta.fetch("chr1")
  ref, alt = alleles(chr1, 1200, "snp")
  image = np.asarray(records(builder, "train")[f"chr1:1201 {ref}>{alt}"]["image"])
  assert image.shape == (224, 224, 3) and not image[200:].any() and not image[:, 221:].any()
  top, bottom = image[:100], image[100:200]  # channels 1-3 above channels 4-6
  centre = 110
  assert top[0, centre, 0] == COLOR[ref] and bottom[0, centre, 2] == 50  # the reference band
  reads = top[5:25, centre]
  # Hom-alt: all 20 reads show the alt base at quality 30, MAPQ 60, and support the variant.
  assert (reads[:, 0] == COLOR[alt]).all() and (reads[:, 1] == 254 * 30 // 40).all()
  assert (reads[:, 2] == 254).all() and (bottom[5:25, centre, 1] == 254).all()
  assert not top[25:].any()  # 20 reads, then empty rows
  # The het SNP at chr1:601: half the reads carry the alt, and only they support it.
  ref, alt = alleles(chr1, 600, "snp")
  het = np.asarray(records(builder, "train")[f"chr1:601 {ref}>{alt}"]["image"])
  colors = het[5:25, centre, 0]
  assert sorted(colors.tolist()) == sorted([COLOR[alt]] * 10 + [COLOR[ref]] * 10)
  np.testing.assert_array_equal(het[105:125, centre, 1] == 254, colors == COLOR[alt])
  np.testing.assert_array_equal(het[105:125, centre, 2] == 254, colors == COLOR[alt])  # differs from ref


def test_prompt_and_task(built):
  data_dir, _ = built
  source = pipeline.TaskSource(tasks.get("precision_fda"), "test", str(data_dir))
  examples = {e["id"]: e for e in (source[i] for i in range(len(source)))}
  example = next(e for k, e in examples.items() if k.startswith("chr20:3000451 "))
  assert example["prompt"] == (  # 0-shot [Med-PaLM M Table A.9]
      "Instructions: You are a helpful genetic assistant. The following are questions about variant "
      "calling. Identify the number of copies of the putative variant in pileup images. Given <img>. "
      "Q: How many copies of this putative variant are shown in the middle of the image? (A) 0 (B) 1 "
      "(C) 2 A:")
  assert (example["target"], example["label"], example["variant_type"]) == ("1.", 1, "indel")  # "1." as the paper
  assert example["images"][0].shape == (224, 224, 3)
  assert tasks.get("precision_fda").metrics == ("snp_f1", "indel_f1", "truth_snp_f1", "truth_indel_f1")
  assert example["locus"] == example["id"]  # where the truth-set F1 places the answer


def test_train_chunks_are_four_percent_of_the_genome():
  chunks = [precision_fda._sampled("chr1", start, 0.04) for start in range(0, 2_000_000_000, 10_000)]
  assert abs(np.mean(chunks) - 0.04) < 0.002


def test_missing_directory_lists_every_file_kind(tmp_path):
  with pytest.raises(base.ManualDataError) as error:
    precision_fda.PrecisionFda(data_dir=str(tmp_path), manual_dir=str(tmp_path / "none")).download_and_prepare()
  message = str(error.value)
  for kind in ("*.bam", "*.bam.bai", "*.fasta", "*.fasta.fai", "*.vcf.gz", "*.vcf.gz.tbi", "*.bed"):
    assert kind in message
  assert "precision.fda.gov" in message and str(tmp_path / "none") in message


def test_incomplete_directory_lists_the_missing_index(download, tmp_path):
  manual = linked_copy(download, tmp_path / "manual", skip=(VCF + ".gz.tbi",))
  with pytest.raises(base.ManualDataError, match=r"is incomplete\. Missing:\n  - \*\.vcf\.gz\.tbi or"):
    all_train_chunks(data_dir=str(tmp_path), manual_dir=str(manual)).download_and_prepare()


def test_two_bams_are_refused(download, tmp_path):
  manual = linked_copy(download, tmp_path / "manual")
  os.symlink(download / BAM, manual / "other.bam")
  with pytest.raises(base.ManualDataError, match=r"exactly one BAM .* found 2"):
    all_train_chunks(data_dir=str(tmp_path), manual_dir=str(manual)).download_and_prepare()


def test_malformed_bed_line_names_file_and_line(download, tmp_path):
  manual = linked_copy(download, tmp_path / "manual", skip=(BED,))
  (manual / BED).write_text("chr1\t0\t250\nchr1\t350\tthree thousand\n")
  with pytest.raises(base.MalformedRecordError, match=rf"{BED}:2: expected 'contig start end'"):
    all_train_chunks(data_dir=str(tmp_path), manual_dir=str(manual)).download_and_prepare()


def test_an_empty_train_split_names_the_training_fraction(download, tmp_path):
  # chr1's one 10 kb chunk hashes to 0.44, outside the paper's 4%: a complete but small download.
  with pytest.raises(base.ManualDataError, match=r"split 'train' has no records.*train_fraction=0.04 .*"
                                            r"train_fraction=1.0"):
    precision_fda.PrecisionFda(data_dir=str(tmp_path), manual_dir=str(download)).download_and_prepare()
  with pytest.raises(ValueError, match=r"train_fraction must be in \(0, 1\], got 0.0"):
    precision_fda.PrecisionFda(data_dir=str(tmp_path), manual_dir=str(download), train_fraction=0.0)


def test_the_training_fraction_is_set_from_the_build_command_and_the_config(download, tmp_path, capsys):
  """`--builder_option` (medpalm_m.data build) and data.builder_options (build.prepare, as the
  runtime calls it) reach the builder; a dataset prepared with another fraction is refused."""
  from medpalm_m.data import __main__ as data_cli
  from medpalm_m.data import build
  data_dir = tmp_path / "tfds"
  with pytest.raises(SystemExit):  # the paper's 4% on this small download: train is empty
    data_cli.main(["build", "--data_dir", str(data_dir), f"precision_fda={download}"])
  assert "--builder_option precision_fda.train_fraction=1.0" in capsys.readouterr().err
  data_cli.main(["build", "--data_dir", str(data_dir), f"precision_fda={download}",
                 "--builder_option", "precision_fda.train_fraction=1.0"])
  assert "built precision_fda (precision_fda)" in capsys.readouterr().out
  prepared = precision_fda.PrecisionFda(data_dir=str(data_dir))
  assert prepared.info.metadata["builder_options"] == {"train_fraction": 1.0}
  assert prepared.info.splits["train"].num_examples > 0

  build.prepare(str(data_dir), {"precision_fda": str(download)},
                builder_options={"precision_fda": {"train_fraction": 1.0}})  # the same: kept
  with pytest.raises(ValueError, match=r"prepared with train_fraction=1.0 \(asked: 0.5\); delete"):
    build.prepare(str(data_dir), {"precision_fda": str(download)},
                  builder_options={"precision_fda": {"train_fraction": 0.5}})
  with pytest.raises(ValueError, match=r"data.builder_options.precision_fda: .* no option 'fraction'; "
                                       r"its options: train_fraction"):
    build.prepare(str(data_dir), {"precision_fda": str(download)},
                  builder_options={"precision_fda": {"fraction": 1.0}})

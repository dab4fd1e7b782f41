"""Real data files shipped by packages: a chest radiograph DICOM and a small BAM + FASTA.

* `RG1_UNCI.dcm` of the PyPI package pydicom-data: a computed-radiography PA chest, 1955x1841,
  15-bit, MONOCHROME1 (high values are dark). Decoded right, the air-filled lungs are darker
  than the spine and mediastinum.
* `ex1.bam.gz` + `ex1.fa` of Debian's python-pysam-tests (samtools' example data: 3,270 35-bp
  reads on two 1.6 kb contigs). `tests/data/fetch_pysam_test_data.sh` installs it where apt is
  available; elsewhere the test skips and says why. The pileups are checked against the reads as
  pysam's own pileup engine sees them, and against counts read off by hand.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pysam
import pytest

from medpalm_m.data import genomics, images

PYSAM_TEST_DATA = Path(os.environ.get("PYSAM_TEST_DATA", "/usr/share/doc/python-pysam/tests/pysam_data"))
COLOR = {"A": 250, "G": 180, "T": 100, "C": 30}  # DeepVariant's read_base channel
FORWARD, REVERSE = 70, 240


def _pydicom_data_file(name: str) -> Path:
  spec = importlib.util.find_spec("data_store")  # the import name of the pydicom-data package
  if spec is None or not spec.submodule_search_locations:
    pytest.skip("pydicom-data is not installed (pip install pydicom-data==1.0.0): no real radiograph")
  return Path(next(iter(spec.submodule_search_locations))) / "data" / name


def _regions(image: np.ndarray) -> dict[str, float]:
  """Mean grey level of anatomical regions of RG1 (fractions of the image size, read off a preview)."""
  height, width = image.shape[:2]

  def mean(x0, x1, y0, y1):
    return float(image[int(y0 * height):int(y1 * height), int(x0 * width):int(x1 * width)].mean())

  return {"right lung": mean(0.19, 0.33, 0.23, 0.46), "left lung": mean(0.65, 0.82, 0.23, 0.46),
          "spine": mean(0.475, 0.53, 0.15, 0.64)}


def test_real_chest_radiograph_monochrome1_decodes_with_lungs_dark():
  import pydicom
  path = _pydicom_data_file("RG1_UNCI.dcm")
  header = pydicom.dcmread(path, stop_before_pixels=True)
  assert (header.PhotometricInterpretation, header.BitsStored, header.Modality) == ("MONOCHROME1", 15, "CR")
  assert header.BodyPartExamined == "CHEST"

  image = images.read_image(path)
  assert image.shape == (1955, 1841) and image.dtype == np.uint8
  assert image.min() <= 5 and image.max() >= 250  # the windowed range fills 8 bits
  regions = _regions(image)
  assert regions["right lung"] < regions["spine"] - 60 and regions["left lung"] < regions["spine"] - 60

  # The same pixels read as MONOCHROME2 would show the chest inverted: the handling matters.
  dataset = pydicom.dcmread(path)
  dataset.PhotometricInterpretation = "MONOCHROME2"
  wrong = _regions(images.dicom_to_uint8(dataset))
  assert wrong["right lung"] > wrong["spine"] + 60

  small = images.read_image(path, max_side=512)  # as the builders store it
  assert small.shape == (512, 482)
  assert _regions(small)["right lung"] < _regions(small)["spine"] - 60


@pytest.fixture(scope="module")
def ex1(tmp_path_factory):
  bam_gz, fasta = PYSAM_TEST_DATA / "ex1.bam.gz", PYSAM_TEST_DATA / "ex1.fa"
  if not (bam_gz.exists() and fasta.exists()):
    pytest.skip(f"Debian's python-pysam-tests is not installed ({bam_gz} missing): run "
                "tests/data/fetch_pysam_test_data.sh as root where apt is available, or point "
                "PYSAM_TEST_DATA at a folder with ex1.bam.gz and ex1.fa")
  directory = tmp_path_factory.mktemp("ex1")
  with gzip.open(bam_gz) as src, open(directory / "ex1.bam", "wb") as dst:
    shutil.copyfileobj(src, dst)
  shutil.copy(fasta, directory / "ex1.fa")
  pysam.index(str(directory / "ex1.bam"))
  pysam.faidx(str(directory / "ex1.fa"))
  return pysam.AlignmentFile(str(directory / "ex1.bam")), pysam.FastaFile(str(directory / "ex1.fa"))


def _column(bam: pysam.AlignmentFile, contig: str, pos: int) -> list[tuple[str, bool]]:
  """(base, reverse) of each read DeepVariant keeps at `pos`, by pysam's pileup engine."""
  kept = []
  for column in bam.pileup(contig, pos, pos + 1, truncate=True, min_base_quality=0, stepper="nofilter",
                           ignore_overlaps=False):
    for read in column.pileups:
      a = read.alignment
      if (read.is_del or read.is_refskip or a.is_duplicate or a.is_secondary or a.is_supplementary
          or a.is_qcfail):
        continue
      if a.mapping_quality >= 10 and a.query_qualities[read.query_position] >= 10:
        kept.append((a.query_sequence[read.query_position], a.is_reverse))
  return kept


# (contig, 0-based pos, ref, alt, reads showing ref / alt at pos with base and mapping quality >= 10,
#  forward / reverse among them): read off each column once, by hand, and written down here.
HAND_CHECKED = [("chr1", 1293, "A", "G", 20, 21, 21, 20), ("chr2", 504, "A", "G", 24, 23, 22, 25),
                ("chr1", 547, "C", "A", 19, 17, 15, 21)]


@pytest.mark.parametrize("contig,pos,ref,alt,n_ref,n_alt,n_forward,n_reverse", HAND_CHECKED)
def test_real_bam_pileup_centre_column(ex1, contig, pos, ref, alt, n_ref, n_alt, n_forward, n_reverse):
  bam, fasta = ex1
  candidate = genomics.Candidate(contig, pos, ref, alt)
  assert candidate in genomics.find_candidates(bam, fasta, contig, pos - 50, pos + 50)
  kept = _column(bam, contig, pos)
  assert (sum(b == ref for b, _ in kept), sum(b == alt for b, _ in kept)) == (n_ref, n_alt)

  image = genomics.make_pileup(bam, fasta, candidate)
  centre = image[5:, 110]
  drawn = centre[centre[:, 0] > 0]  # rows of reads that cover the candidate
  assert image[0, 110, 0] == COLOR[ref]
  assert (drawn[:, 0] == COLOR[ref]).sum() == n_ref and (drawn[:, 0] == COLOR[alt]).sum() == n_alt
  assert ((drawn[:, 3] == FORWARD).sum(), (drawn[:, 3] == REVERSE).sum()) == (n_forward, n_reverse)
  # Only the alt reads support the variant, and only they differ from the reference.
  np.testing.assert_array_equal(drawn[:, 4] == 254, drawn[:, 0] == COLOR[alt])
  np.testing.assert_array_equal(drawn[:, 5] == 254, drawn[:, 0] == COLOR[alt])
  rgb = genomics.pileup_to_rgb(image)
  np.testing.assert_array_equal(rgb[:100, :221], image[:, :, :3])
  np.testing.assert_array_equal(rgb[100:200, :221], image[:, :, 3:])


def test_real_bam_pileup_rows_are_the_reads(ex1):
  """Every pixel of every read row, recomputed from the read with pysam's aligned pairs."""
  bam, fasta = ex1
  contig, pos = "chr1", 1293
  start = pos - 110
  image = genomics.make_pileup(bam, fasta, genomics.Candidate(contig, pos, "A", "G"))
  reference = fasta.fetch(contig, start, start + 221)
  assert [int(v) for v in image[0, :, 0]] == [COLOR.get(b, 0) for b in reference]

  reads = [r for r in bam.fetch(contig, pos - 5, pos + 6)
           if not (r.is_duplicate or r.is_secondary or r.is_supplementary or r.is_qcfail)
           and r.mapping_quality >= 10]
  at_pos = {r.query_name + str(r.is_read2): {rp: qp for qp, rp in r.get_aligned_pairs(matches_only=True)}
            for r in reads}
  reads = [r for r in reads if pos not in at_pos[r.query_name + str(r.is_read2)]
           or r.query_qualities[at_pos[r.query_name + str(r.is_read2)][pos]] >= 10]
  reads.sort(key=lambda r: (r.reference_start, r.query_name, r.is_read2))
  assert len(reads) == 57 and not image[5 + len(reads):].any()
  checked = 0
  for row, read in zip(image[5:], reads):
    has_indel = any(op in (1, 2) for op, _ in read.cigartuples)
    for qp, rp in read.get_aligned_pairs(matches_only=True):
      column = rp - start
      if not 0 <= column < 221 or has_indel:
        continue
      base, quality = read.query_sequence[qp], read.query_qualities[qp]
      assert row[column, 0] == COLOR.get(base, 0)
      assert row[column, 1] == int(254 * min(quality, 40) / 40)
      assert row[column, 2] == int(254 * min(read.mapping_quality, 60) / 60)
      assert row[column, 3] == (REVERSE if read.is_reverse else FORWARD)
      assert row[column, 5] == (50 if base == reference[column] else 254)
      checked += 1
  assert checked > 1500  # most of the 57 reads' 35 bases

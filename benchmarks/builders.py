"""Build throughput (examples/s) of the imaging builders and the PrecisionFDA pileup builder.

    .venv/bin/python benchmarks/builders.py [--scale=1] [--only=mimic_cxr_report,precision_fda]

Writes fixtures in each dataset's on-disk form at realistic image sizes (the writers of
tests/data/builders/), then times `download_and_prepare` of each builder, one process, and
prints examples written per second of the whole build (index parsing, file checks, decoding,
resizing, zlib encoding and array_record writing; the fixture writing is not timed).

Sizes per --scale=1: MIMIC-CXR 40 JPEG radiographs (38 with findings) of 2544x3056 (MIMIC-CXR-JPG's usual size);
PAD-UFES-20 72 RGB PNG photos of 1024x768; VinDr-Mammo 20 12-bit DICOMs of 2800x3518;
CBIS-DDSM mass 60 DICOM crops of 600x610 (plus a mask and a mammogram per case, 1024x800 to
spare the disk, whose headers are scanned);
PrecisionFDA 2 x 300 candidate sites on simulated 30x genomes (100 bp reads with errors).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import pysam  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from medpalm_m.data import prompts  # noqa: E402
from medpalm_m.data.builders import cbis_ddsm, mimic_cxr, pad_ufes_20, precision_fda, vindr_mammo  # noqa: E402
from medpalm_m.data.synthetic import genome as simulated_genome  # noqa: E402
from tests.data.builders import test_imaging_builders as imaging  # noqa: E402


def write_simulated_download(root: Path, sites_per_contig: int) -> None:
  """A manual directory from two simulated genomes, one as chr1 (train) and one as chr20 (test)."""
  root.mkdir(parents=True)
  genomes = []
  for contig, seed in (("chr1", 1), ("chr20", 2)):
    simulated_genome._SIM_CONTIG = contig  # the simulator names its single contig from this
    genomes.append(simulated_genome.simulate_genome(root / contig, num_sites=sites_per_contig, seed=seed))
  simulated_genome._SIM_CONTIG = "chr1"
  with open(root / "reference.fasta", "w") as out:
    for genome in genomes:
      out.write(genome.fasta_path.read_text())
  pysam.faidx(str(root / "reference.fasta"))
  lengths = {g.contig: pysam.FastaFile(str(g.fasta_path)).get_reference_length(g.contig) for g in genomes}
  header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": c, "LN": n} for c, n in lengths.items()]}
  with pysam.AlignmentFile(str(root / "reads.bam"), "wb", header=header) as out:
    for genome in genomes:
      with pysam.AlignmentFile(str(genome.bam_path)) as reads:
        for read in reads:
          out.write(pysam.AlignedSegment.from_dict(read.to_dict(), out.header))
  pysam.index(str(root / "reads.bam"))
  vcf = root / "truth.vcf"
  with open(vcf, "w") as out:
    out.write("##fileformat=VCFv4.2\n")
    out.writelines(f"##contig=<ID={c},length={n}>\n" for c, n in lengths.items())
    out.write('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
              "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tHG002\n")
    for genome in genomes:
      for site, genotype in genome.sites:
        if genotype:
          out.write(f"{site.contig}\t{site.pos + 1}\t.\t{site.ref}\t{site.alt}\t50\tPASS\t.\tGT\t"
                    f"{'0/1' if genotype == 1 else '1/1'}\n")
  pysam.tabix_index(str(vcf), preset="vcf", force=True)
  (root / "confident.bed").write_text("".join(f"{c}\t0\t{n}\n" for c, n in lengths.items()))
  for genome in genomes:  # leave exactly one file of each kind at the top
    for path in sorted(genome.directory.iterdir()):
      path.unlink()
    genome.directory.rmdir()


class SimulatedPrecisionFda(precision_fda.PrecisionFda, skip_registration=True):
  """The paper's builder over the simulated genomes: all of chr1 trains, all of chr20 tests."""
  name = "precision_fda"
  TRAIN_FRACTION = 1.0
  TEST_REGION = ("20", 0, 10**9)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--scale", type=float, default=1.0)
  parser.add_argument("--only", default="")
  args = parser.parse_args()
  tfds.disable_progress_bar()
  scale = args.scale
  with tempfile.TemporaryDirectory(prefix="builders-bench-") as tmp:
    tmp = Path(tmp)
    jobs = {
        "mimic_cxr_report": (mimic_cxr.MimicCxrReport, lambda d: imaging.write_mimic_cxr(
            d, image_size=(2544, 3056), extra_train_studies=max(1, int(33 * scale)))),
        "pad_ufes_20": (pad_ufes_20.PadUfes20, lambda d: imaging.write_pad_ufes_20(
            d, per_class=max(5, int(12 * scale)), image_size=(1024, 768))),
        "vindr_mammo": (vindr_mammo.VindrMammo, lambda d: imaging.write_vindr_mammo(
            d, image_size=(2800, 3518), repeat=max(1, int(4 * scale)))),
        "cbis_ddsm_mass": (cbis_ddsm.CbisDdsmMass, lambda d: imaging.write_cbis_ddsm(
            d, "mass", [(("train", "test")[k % 5 == 4], prompts.PATHOLOGIES[k % 3], "plain")
                        for k in range(max(5, int(60 * scale)))], crop_size=600, full_size=(1024, 800))),
        "precision_fda": (SimulatedPrecisionFda, lambda d: write_simulated_download(d, max(20, int(300 * scale)))),
    }
    only = [name for name in args.only.split(",") if name] or list(jobs)
    print(f"{'builder':<18} {'examples':>8} {'seconds':>8} {'examples/s':>10}")
    for name in only:
      builder_cls, write = jobs[name]
      manual = tmp / name / "manual"
      write(manual)
      builder = builder_cls(data_dir=str(tmp / name / "tfds"), manual_dir=str(manual))
      start = time.perf_counter()
      builder.download_and_prepare()
      seconds = time.perf_counter() - start
      examples = sum(split.num_examples for split in builder.info.splits.values())
      print(f"{name:<18} {examples:>8} {seconds:>8.1f} {examples / seconds:>10.1f}", flush=True)


if __name__ == "__main__":
  main()

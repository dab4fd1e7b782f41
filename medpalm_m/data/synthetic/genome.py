"""A simulated genome for the synthetic genomics task: a random reference, reads with planted
SNPs and indels at 0, 1 or 2 copies, and their pileup images by the same path as a real BAM."""

from __future__ import annotations

import array
import dataclasses
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pysam

from medpalm_m.data.genomics import (DEFAULT_OPTIONS, NUM_CLASSES, Candidate, PileupOptions, make_pileup,
                                     pileup_to_rgb)
from medpalm_m.data.genomics.reads import ACGT, BASE_CODE, CIGAR_D, CIGAR_I, CIGAR_M, CIGAR_S


@dataclasses.dataclass(frozen=True)
class SimulatedGenome:
  """Files written by `simulate_genome` and the truth for each candidate site (genotype 0/1/2)."""

  directory: Path
  fasta_path: Path
  bam_path: Path
  contig: str
  sites: tuple[tuple[Candidate, int], ...]


_SIM_CONTIG = "chr1"
_SIM_MIN_SITE_GAP = 300


def _simulated_read_layout(
    site: Candidate, hap_start: int, read_length: int, local_start: int
) -> tuple[int, list[tuple[int, int]]]:
  """Reference start and CIGAR of a read taken from the alt haplotype around `site`.

  `hap_start` indexes the local alt haplotype that begins at reference
  `local_start`. Inserted bases at a read end become soft clips, as an
  aligner would report them.
  """
  anchor_end = site.pos - local_start + 1  # haplotype index just past the anchor
  hap_end = hap_start + read_length
  delta = len(site.alt) - len(site.ref)
  if delta == 0 or hap_end <= anchor_end:
    return local_start + hap_start, [(CIGAR_M, read_length)]
  if delta < 0:
    if hap_start >= anchor_end:
      return local_start + hap_start - delta, [(CIGAR_M, read_length)]
    before = anchor_end - hap_start
    return local_start + hap_start, [
        (CIGAR_M, before),
        (CIGAR_D, -delta),
        (CIGAR_M, read_length - before),
    ]
  insert_end = anchor_end + delta
  before = max(0, anchor_end - hap_start)
  inserted = max(0, min(hap_end, insert_end) - max(hap_start, anchor_end))
  after = read_length - before - inserted
  cigar: list[tuple[int, int]] = []
  if before:
    cigar.append((CIGAR_M, before))
  if inserted:
    cigar.append((CIGAR_I if before and after else CIGAR_S, inserted))
  if after:
    cigar.append((CIGAR_M, after))
  ref_start = local_start + hap_start if before else local_start + max(hap_start, insert_end) - delta
  return ref_start, cigar


def simulate_genome(
    directory: str | os.PathLike,
    num_sites: int,
    seed: int,
    coverage: int = 30,
    read_length: int = 100,
    contig_length: int | None = None,
) -> SimulatedGenome:
  """Write a random reference, a sorted+indexed BAM and return its candidate sites with genotypes.

  Genotypes are balanced over 0/1/2. A genotype-0 site still has a minority of
  reads carrying the alt (20-35%, with low base quality at the site, like a
  systematic sequencing error), so it is a candidate as in DeepVariant's
  hom-ref examples. About 2/3 of sites are SNPs, the rest 1-3 bp insertions
  or deletions. Sites are far enough apart that a read overlaps at most one.
  """
  if num_sites < 1:
    raise ValueError(f"num_sites must be >= 1, got {num_sites}")
  rng = np.random.default_rng(seed)
  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)

  max_indel = 3
  spacing = max(_SIM_MIN_SITE_GAP + 100, 2 * read_length + 4 * max_indel)
  jitter = spacing - max(_SIM_MIN_SITE_GAP, read_length + 2 * max_indel + 2)
  flank = max(DEFAULT_OPTIONS.half_width, read_length) + 2 * max_indel + 10
  required = 2 * flank + num_sites * spacing
  if contig_length is None:
    contig_length = required
  elif contig_length < required:
    raise ValueError(
        f"contig_length {contig_length} too short for {num_sites} sites; need >= {required}"
    )

  reference = ACGT[rng.integers(0, 4, contig_length)].tobytes().decode()
  fasta_path = directory / "reference.fa"
  with open(fasta_path, "w") as handle:
    handle.write(f">{_SIM_CONTIG}\n")
    for offset in range(0, contig_length, 60):
      handle.write(reference[offset : offset + 60] + "\n")
  pysam.faidx(str(fasta_path))

  positions = flank + np.arange(num_sites) * spacing + rng.integers(0, jitter + 1, num_sites)
  genotypes = rng.permutation(np.arange(num_sites) % NUM_CLASSES)
  kinds = rng.choice(np.array(["snp", "ins", "del"]), size=num_sites, p=[2 / 3, 1 / 6, 1 / 6])
  indel_lengths = rng.integers(1, max_indel + 1, num_sites)
  artifact_fractions = rng.uniform(0.20, 0.35, num_sites)
  sites: list[Candidate] = []
  for pos, kind, length in zip(positions.tolist(), kinds, indel_lengths.tolist()):
    ref_base = reference[pos]
    if kind == "snp":
      alt = "ACGT"[("ACGT".index(ref_base) + int(rng.integers(1, 4))) % 4]
      sites.append(Candidate(_SIM_CONTIG, pos, ref_base, alt))
    elif kind == "ins":
      inserted = "".join("ACGT"[i] for i in rng.integers(0, 4, length))
      sites.append(Candidate(_SIM_CONTIG, pos, ref_base, ref_base + inserted))
    else:
      sites.append(Candidate(_SIM_CONTIG, pos, reference[pos : pos + 1 + length], ref_base))

  num_reads = int(coverage * contig_length / read_length)
  starts = np.sort(rng.integers(0, contig_length - read_length - max_indel, num_reads))
  # Per-read draws are made in bulk so the simulator stays vectorised.
  carry_draws = rng.random(num_reads)
  is_reverse = rng.random(num_reads) < 0.5
  is_duplicate = rng.random(num_reads) < 0.02
  mapping_quality = np.where(rng.random(num_reads) < 0.9, 60, rng.integers(0, 60, num_reads))
  cycle = np.arange(read_length) / read_length
  # Quality falls along the sequencing direction, which is reversed on the minus strand.
  decay = np.where(is_reverse[:, None], cycle[::-1], cycle) * 8
  noisy = rng.normal(37, 3, (num_reads, read_length)) - decay
  qualities = np.clip(np.rint(noisy), 2, 41).astype(np.int64)
  # A few low-quality bases anywhere, as in real runs.
  low = rng.random((num_reads, read_length)) < 0.03
  qualities = np.where(low, rng.integers(2, 20, (num_reads, read_length)), qualities)

  # The last site starting before a read's end is the only one it can touch.
  site_index = np.searchsorted(positions, starts + read_length, side="left") - 1
  sequences: list[bytes] = []
  layouts: list[tuple[int, list[tuple[int, int]]]] = []
  artifact_bases: list[tuple[int, int]] = []
  for read_index, start in enumerate(starts.tolist()):
    k = int(site_index[read_index])
    site = sites[k] if k >= 0 else None
    touches = site is not None and start <= site.pos + len(site.ref)
    genotype = int(genotypes[k]) if touches else 0
    if not touches:
      carry_probability = 0.0
    elif genotype == 0:
      carry_probability = float(artifact_fractions[k])
    else:
      # Reads come from either haplotype with equal chance, so a het site
      # is carried by half the reads and a hom-alt site by all of them.
      carry_probability = genotype / 2
    if carry_draws[read_index] >= carry_probability:
      sequences.append(reference[start : start + read_length].encode())
      layouts.append((start, [(CIGAR_M, read_length)]))
      continue
    local_start = site.pos - read_length - 2 * max_indel
    local_end = site.pos + len(site.ref) + read_length + 2 * max_indel
    haplotype = (
        reference[local_start : site.pos] + site.alt + reference[site.pos + len(site.ref) : local_end]
    )
    shift = 0 if start <= site.pos else len(site.alt) - len(site.ref)
    hap_start = start - local_start + shift
    sequences.append(haplotype[hap_start : hap_start + read_length].encode())
    layouts.append(_simulated_read_layout(site, hap_start, read_length, local_start))
    if genotype == 0 and site.variant_type == "snp":
      artifact_bases.append((read_index, site.pos - layouts[-1][0]))

  for read_index, offset in artifact_bases:
    qualities[read_index, offset] = rng.integers(15, 26)
  # Substitution errors at the rate each base's Phred quality promises.
  codes = np.frombuffer(b"".join(sequences), np.uint8).reshape(num_reads, read_length)
  error = rng.random((num_reads, read_length)) < 10.0 ** (-qualities / 10.0)
  substituted = (BASE_CODE[codes] + rng.integers(1, 4, codes.shape)) % 4
  codes = np.where(error, ACGT[substituted], codes).astype(np.uint8)

  bam_path = directory / "reads.bam"
  header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": _SIM_CONTIG, "LN": contig_length}]}
  order = sorted(range(num_reads), key=lambda i: (layouts[i][0], i))
  with pysam.AlignmentFile(str(bam_path), "wb", header=header) as out:
    for read_index in order:
      ref_start, cigar = layouts[read_index]
      segment = pysam.AlignedSegment(out.header)
      segment.query_name = f"read{read_index:07d}"
      segment.flag = (16 if is_reverse[read_index] else 0) | (1024 if is_duplicate[read_index] else 0)
      segment.reference_id = 0
      segment.reference_start = ref_start
      segment.mapping_quality = int(mapping_quality[read_index])
      segment.cigartuples = cigar
      segment.query_sequence = codes[read_index].tobytes().decode()
      segment.query_qualities = array.array("B", qualities[read_index].astype(np.uint8).tobytes())
      out.write(segment)
  pysam.index(str(bam_path))

  labelled = tuple((site, int(genotype)) for site, genotype in zip(sites, genotypes))
  return SimulatedGenome(directory, fasta_path, bam_path, _SIM_CONTIG, labelled)


def pileup_images_for_sites(
    genome: SimulatedGenome, options: PileupOptions = DEFAULT_OPTIONS
) -> Iterator[tuple[Candidate, int, np.ndarray]]:
  """(candidate, genotype, 224x224x3 RGB) per simulated site, via the same path as a real BAM."""
  with pysam.AlignmentFile(str(genome.bam_path), "rb") as alignments, pysam.FastaFile(
      str(genome.fasta_path)
  ) as reference:
    for candidate, genotype in genome.sites:
      yield candidate, genotype, pileup_to_rgb(make_pileup(alignments, reference, candidate, options))

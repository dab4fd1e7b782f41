"""The simulated genome of the synthetic genomics task, read back with pysam and the pileup code
(medpalm_m.data.synthetic.genome)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pysam
import pytest

from medpalm_m.data.genomics import find_candidates
from medpalm_m.data.synthetic.genome import pileup_images_for_sites, simulate_genome
from tests.data.genomics.deepvariant import SUPPORTS


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory):
  first = simulate_genome(tmp_path_factory.mktemp("sim_a"), num_sites=60, seed=11)
  again = simulate_genome(tmp_path_factory.mktemp("sim_b"), num_sites=60, seed=11)
  return first, again


def test_simulator_is_deterministic_balanced_and_indexed(simulated, tmp_path: Path) -> None:
  first, again = simulated
  assert first.sites == again.sites
  assert first.fasta_path.read_bytes() == again.fasta_path.read_bytes()
  for (_, _, image_a), (_, _, image_b) in zip(pileup_images_for_sites(first), pileup_images_for_sites(again)):
    np.testing.assert_array_equal(image_a, image_b)
  assert simulate_genome(tmp_path, num_sites=60, seed=12).sites != first.sites

  assert Counter(genotype for _, genotype in first.sites) == {0: 20, 1: 20, 2: 20}
  kinds = Counter(
      "snp" if c.variant_type == "snp" else ("ins" if len(c.alt) > len(c.ref) else "del") for c, _ in first.sites
  )
  assert 0.5 <= kinds["snp"] / 60 <= 0.8 and kinds["ins"] > 0 and kinds["del"] > 0
  positions = [c.pos for c, _ in first.sites]
  assert min(np.diff(positions)) >= 300

  with pysam.AlignmentFile(str(first.bam_path)) as handle:
    assert handle.header.to_dict()["HD"]["SO"] == "coordinate"
    assert handle.check_index()
    starts = [r.reference_start for r in handle.fetch(first.contig)]
    assert starts == sorted(starts)
    site = first.sites[0][0]
    assert sum(1 for _ in handle.fetch(first.contig, site.pos, site.pos + 1)) >= 10

  found = set(find_candidates(first.bam_path, first.fasta_path, first.contig, 0, positions[-1] + 200))
  assert sum(c in found for c, _ in first.sites) >= 57


def test_supporting_reads_grow_with_genotype(simulated) -> None:
  first, _ = simulated
  fraction_by_genotype: dict[int, list[float]] = {0: [], 1: [], 2: []}
  for _, genotype, rgb in pileup_images_for_sites(first):
    assert rgb.shape == (224, 224, 3) and rgb.dtype == np.uint8
    # Channel 5 (supports variant) sits at RGB channel 1 of the lower half; strand (channel 4,
    # never 0 where a read is drawn) at RGB channel 0.
    centre = rgb[105:200, 110]
    drawn = centre[:, 0] != 0
    fraction_by_genotype[genotype].append(float(np.mean(centre[drawn, 1] == SUPPORTS)))
  means = [np.mean(fraction_by_genotype[g]) for g in (0, 1, 2)]
  assert means[0] < means[1] < means[2], means

"""Synthetic PrecisionFDA: variant calling from DeepVariant pileup images of a simulated genome.

Each split simulates its own genome (a random reference, a sorted and indexed BAM of reads with
planted SNPs and indels at 0, 1 or 2 copies; see `genome.simulate_genome`), so train and test never
share a site, as the paper holds out chr20. Every candidate site becomes the
paper's 224x224x3 RGB pileup through the same code path as a real BAM, labelled with its genotype.
"""

from __future__ import annotations

import functools
import tempfile
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

from medpalm_m.data import genomics
from medpalm_m.data import prompts
from medpalm_m.data import tasks
from medpalm_m.data.genomics import truth_set
from medpalm_m.data.synthetic import base
from medpalm_m.data.synthetic import genome as simulated_genome


class SyntheticPrecisionFda(base.SyntheticBuilder):
  """Pileup images of candidate variants with their genotype (0/1/2) and variant type."""
  name = "synthetic_precision_fda"
  SPLIT_SIZES = {"train": 600, "test": 150}
  DESCRIPTION = __doc__

  def features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),
        "image": tfds.features.Tensor(
            shape=(genomics.RGB_IMAGE_SIZE, genomics.RGB_IMAGE_SIZE, 3), dtype=np.uint8, encoding="zlib"),
        "label": tfds.features.ClassLabel(names=prompts.GENOTYPES),
        "variant_type": tfds.features.Text(),  # snp | indel
        "locus": tfds.features.Text(),  # e.g. "chr1:1234 A>G", 1-based like a VCF
    })

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, description=self.DESCRIPTION, features=self.features(),
                                 metadata=tfds.core.MetadataDict())

  def records(self, split: str) -> Iterator[dict[str, Any]]:
    # Sites come from one simulated genome per split rather than one independent draw per record,
    # so this replaces the base class's per-record `generate`. The genome lives only as long as
    # the split is being read.
    genome_seed = int(self._rng(split, 0).integers(2**31))
    with tempfile.TemporaryDirectory(prefix=f"{self.name}-{split}-") as directory:
      genome = simulated_genome.simulate_genome(directory, num_sites=self.SPLIT_SIZES[split], seed=genome_seed)
      # The genome's truth set for the truth-set F1 (`genomics.truth_set`). Every planted site is
      # a candidate, so none is without an example: here the truth-set F1 equals the per-candidate
      # one, which keeps the analog's figures comparable to the paper's per-candidate ones.
      alleles = {(c.contig, *genomics.normalized_allele(c.pos, c.ref, c.alt)): g for c, g in genome.sites}
      self.info.metadata.setdefault(truth_set.METADATA_KEY, {})[split] = truth_set.split_record(
          {allele: g for allele, g in alleles.items() if g > 0}, alleles)
      for index, (candidate, genotype, rgb) in enumerate(simulated_genome.pileup_images_for_sites(genome)):
        yield {
            "id": f"{self.name}-{split}-{index}",
            "image": rgb,
            "label": genotype,
            "variant_type": candidate.variant_type,
            "locus": f"{candidate.contig}:{candidate.pos + 1} {candidate.ref}>{candidate.alt}",
        }


TASK = tasks.register(tasks.Task(
    name="synthetic_precision_fda",
    builder=SyntheticPrecisionFda,
    formatter=functools.partial(prompts.format_genotype, task_name="synthetic_precision_fda"),
    # Per candidate, as the paper; then against the split's truth set (no bootstrap margin).
    metrics=("snp_f1", "indel_f1", "truth_snp_f1", "truth_indel_f1"),
    options=prompts.GENOTYPES,
    paper_task="PrecisionFDA",
))

"""Genomic variants as images: DeepVariant v1.3.0 pileups and their Med-PaLM M RGB form.

Med-PaLM M's genomics task shows the model a DeepVariant pileup of a candidate variant and asks
how many copies of the alternate allele it carries (0/1/2). From a coordinate-sorted BAM and a
reference FASTA, `candidates` finds the putative variants, `encoding` draws each one's pileup
(following DeepVariant's `pileup_image.py` and `pileup_channel_lib.cc`) and converts it to the
(224, 224, 3) RGB image the paper feeds the vision encoder, and `labels` labels it from a truth
VCF; `truth_set` is what a split's dataset records of that VCF for the truth-set F1. `options`
holds DeepVariant's settings and `reads` the read walking they share. The synthetic task's
simulated genome is `medpalm_m.data.synthetic.genome`.
"""

from __future__ import annotations

from medpalm_m.data.genomics.candidates import Candidate, find_candidates
from medpalm_m.data.genomics.encoding import RGB_IMAGE_SIZE, make_pileup, pileup_to_rgb
from medpalm_m.data.genomics.labels import (NUM_CLASSES, genotype_from_vcf, in_confident_regions,
                                            normalized_allele)
from medpalm_m.data.genomics.options import (CHANNEL_NAMES, DEFAULT_OPTIONS, PILEUP_HEIGHT,
                                             PILEUP_NUM_CHANNELS, PILEUP_WIDTH, PileupOptions)

__all__ = [
    "CHANNEL_NAMES",
    "DEFAULT_OPTIONS",
    "NUM_CLASSES",
    "PILEUP_HEIGHT",
    "PILEUP_NUM_CHANNELS",
    "PILEUP_WIDTH",
    "RGB_IMAGE_SIZE",
    "Candidate",
    "PileupOptions",
    "find_candidates",
    "genotype_from_vcf",
    "in_confident_regions",
    "make_pileup",
    "normalized_allele",
    "pileup_to_rgb",
]

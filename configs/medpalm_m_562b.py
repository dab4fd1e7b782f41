"""Med-PaLM M 562B: PaLM 540B + ViT-22B, as in Tu et al. 2023 (Table A.2: lr 2.5e-5, batch 256)."""

import ml_collections

from configs import paper_sizes


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = paper_sizes.model("540b", "vit_22b")
  return c

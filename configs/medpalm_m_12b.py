"""Med-PaLM M 12B: PaLM 8B + ViT-4B, as in Tu et al. 2023 (Table A.2: lr 5e-5, batch 128)."""

import ml_collections

from configs import paper_sizes


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = paper_sizes.model("8b", "vit_4b")
  return c

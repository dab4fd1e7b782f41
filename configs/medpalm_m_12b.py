"""Med-PaLM M 12B: PaLM 8B + ViT-4B, as in Tu et al. 2023 (Table A.2: lr 5e-5, batch 128).

Planned for a TPU v5p-64 slice (32 chips, 8 hosts) with pure FSDP; the same mesh fills 2 nodes
of 8 H100 (`fsdp=-1` takes every device):
    python -m medpalm_m.plan --config=configs/medpalm_m_12b.py --topology=v5p-64,2x8xH100
"""

import ml_collections

from configs import base, paper


def get_config() -> ml_collections.ConfigDict:
  c = base.get_config()
  c.model.update(paper.model("8b", "vit_4b"))
  paper.training(c, batch_size=128, learning_rate=5e-5)
  c.mesh = dict(data=1, fsdp=-1, tensor=1)
  # Evaluation batches are split over the batch mesh axes: 64 rows, 2 per device on the 32 chips of a v5p-64.
  c.eval.batch_size = 64
  c.topology = "v5p-64"  # what medpalm_m.plan checks by default
  return c

"""Med-PaLM M 84B: PaLM 62B + ViT-22B, as in Tu et al. 2023 (Table A.2: lr 5e-5, batch 128).

Planned for a TPU v5p-128 slice (64 chips, 16 hosts) with pure FSDP; the same mesh fills 4 nodes
of 8 H200 (`fsdp=-1` takes every device):
    python -m medpalm_m.plan --config=configs/medpalm_m_84b.py --topology=v5p-128,4x8xH200
"""

import ml_collections

from configs import base, paper


def get_config(mixture: str = "multimedbench") -> ml_collections.ConfigDict:
  """`--config=configs/medpalm_m_84b.py:NAME` trains on configs/mixtures/NAME.py instead (the
  transfer ablation: multimedbench_without_cxr_classification)."""
  c = base.get_config()
  c.model.update(paper.model("62b", "vit_22b"))
  paper.training(c, batch_size=128, learning_rate=5e-5, mixture_name=mixture)
  c.mesh = dict(data=1, fsdp=-1, tensor=1)
  # Evaluation batches are split over the batch mesh axes: 64 rows, 1 per device on the 64 chips of a v5p-128.
  c.eval.batch_size = 64
  c.topology = "v5p-128"  # what medpalm_m.plan checks by default
  return c

"""Med-PaLM M 562B: PaLM 540B + ViT-22B, as in Tu et al. 2023 (Table A.2: lr 2.5e-5, batch 256).

Planned for a TPU v5p-1024 slice (512 chips, 128 hosts): FSDP over 64 and 8-way tensor
parallelism (heads, MLP and vocabulary split over 'tensor', DEFAULT_RULES), since a batch of 256
cannot be split over 512 devices by FSDP alone. The 8 devices of a tensor group span two 4-chip
hosts, which then read the same part of each batch (medpalm_m.sharding.process_batch_shard).
    python -m medpalm_m.plan --config=configs/medpalm_m_562b.py --topology=v5p-1024,v4-2048
"""

import ml_collections

from configs import base, paper


def get_config() -> ml_collections.ConfigDict:
  c = base.get_config()
  c.model.update(paper.model("540b", "vit_22b"))
  paper.training(c, batch_size=256, learning_rate=2.5e-5)
  c.mesh = dict(data=1, fsdp=-1, tensor=8)
  # Evaluation batches are split over the batch mesh axes: 64 rows, 1 per FSDP group of 8 tensor-parallel chips on a v5p-1024.
  c.eval.batch_size = 64
  c.topology = "v5p-1024"  # what medpalm_m.plan checks by default
  return c

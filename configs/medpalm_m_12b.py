"""Med-PaLM M 12B: PaLM 8B + ViT-4B, as in Tu et al. 2023 (Table A.2: lr 5e-5, batch 128).

Planned for a TPU v5p-64 slice (32 chips, 8 hosts) with pure FSDP; the same mesh fills 2 nodes
of 8 H100 (`fsdp=-1` takes every device):
    python -m medpalm_m.plan --config=configs/medpalm_m_12b.py --topology=v5p-64,2x8xH100
"""

import ml_collections

from configs import paper_sizes, tiny
from configs.mixtures import multimedbench


def get_config() -> ml_collections.ConfigDict:
  c = tiny.get_config()  # the full schema; everything the paper fixes is set below
  c.seed = 0
  c.model = paper_sizes.model("8b", "vit_4b")
  paper_training(c, batch_size=128, learning_rate=5e-5)
  c.mesh = dict(data=1, fsdp=-1, tensor=1)
  c.rules = None  # medpalm_m.sharding.DEFAULT_RULES: batch over (data, fsdp), weights over fsdp
  c.topology = "v5p-64"  # what medpalm_m.plan checks by default
  return c


def paper_training(c: ml_collections.ConfigDict, *, batch_size: int, learning_rate: float) -> None:
  """The paper's fine-tuning setup (Tu et al. 2023, Table A.2 and Section 4.2), shared by the
  three sizes: the MultiMedBench mixture, 710 input and 256 output tokens, at most one image per
  context, Adafactor with momentum 0.9 at a constant learning rate. The number of steps is not
  reported; num_steps is a placeholder."""
  c.data.mixture = multimedbench.MIXTURE  # assigned: update() would merge it into tiny's tasks
  c.data.update(build_synthetic=False, max_prompt_tokens=710, max_target_tokens=256, max_images=1)
  # The paper's batch of 128 counts examples; packing would put ~1.5x as many in each step.
  c.data.packing.enabled = False
  c.data.tokenizer = ""  # set to the SentencePiece model of the checkpoint the run starts from
  c.train.update(batch_size=batch_size, grad_accum_steps=1, num_steps=10_000, log_every=10,
                 checkpoint_every=500)
  c.optimizer.update(name="adafactor", learning_rate=learning_rate, schedule="constant",
                     warmup_steps=0, b1=0.9, clip_norm=1.0)

"""Med-PaLM M 12B fine-tuned on the real MultiMedBench, reading the datasets from your downloads.

configs/medpalm_m_12b.py holds the paper's 12B model and fine-tuning recipe (Tu et al. 2023,
Table A.2 and §4.2: PaLM 8B + ViT-4B, full fine-tuning, Adafactor with momentum 0.9, constant
learning rate 5e-5, batch 128, dropout 0.1, 710 input / 256 output tokens, one image per context,
the Table A.1 mixture, answers decoded up to 256 tokens). This config adds where the data comes
from: one folder per task, named on the command line (each builder documents the layout it reads:
`medpalm_m/data/builders/<dataset>.py`), built into data_dir on first use (or beforehand with
`python -m medpalm_m.data build TASK=PATH ...`):

    python -m medpalm_m.train --config=configs/medpalm_m_12b_multimedbench.py --workdir=W \\
      --config.data.data_dir=/data/tfds --config.data.tokenizer=/ckpt/spm.model \\
      --config.data.manual_dirs.medqa=/dl/MedQA/data_clean \\
      --config.data.manual_dirs.medmcqa=/dl/medmcqa \\
      --config.data.manual_dirs.mimic_iii=/dl/mimic-rrs \\
      --config.data.manual_dirs.slake=/dl/Slake1.0 ...   # one per task of the mixture

A task whose path stays empty must already be prepared in data_dir. PubMedQA is evaluation-only
(`python -m medpalm_m.evaluate ... --tasks=pubmedqa`, after giving its manual_dirs entry once).
`--config.data.skip_malformed=True` skips and counts malformed records instead of stopping.
"""

import ml_collections

from configs import medpalm_m_12b
from configs.mixtures import multimedbench


def get_config() -> ml_collections.ConfigDict:
  c = medpalm_m_12b.get_config()
  c.data.data_dir = "~/tensorflow_datasets/medpalm_m"
  # Task -> folder of its manual download; empty: already prepared under data_dir.
  c.data.manual_dirs = {task: "" for task in (*multimedbench.MIXTURE, "pubmedqa")}
  c.data.num_workers = 8
  # The paper's numbers are over whole test sets (base: every example); configs/paper.py decodes
  # answers up to 256 tokens, and configs/medpalm_m_12b.py sets the evaluation batch.
  return c

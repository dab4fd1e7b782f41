"""Synthetic MultiMedBench-mini: one procedurally generated analog per MultiMedBench task.

Importing this package registers every synthetic task (see `medpalm_m.data.tasks`).
`medpalm_m.data.build.build_synthetic` prepares every builder's TFDS data and trains the
benchmark's SentencePiece tokenizer on the formatted training text, all offline and deterministic
for a seed.
"""

from __future__ import annotations

import os

from medpalm_m.data.synthetic import (chest_xray, dermatology, genomics, mammography,  # noqa: F401
                                      medical_qa, summarization, vqa, zero_shot)

TOKENIZER_FILE = "medpalm_m_synthetic_spm.model"


def synthetic_tasks() -> dict:
  from medpalm_m.data import tasks
  return {name: t for name, t in tasks.all_tasks().items() if name.startswith("synthetic_")}


def tokenizer_path(data_dir: str) -> str:
  return os.path.join(os.path.expanduser(data_dir), TOKENIZER_FILE)

"""Synthetic MultiMedBench-mini: one procedurally generated analog per MultiMedBench task.

Importing this package registers every synthetic task (see `medpalm_m.data.tasks`). `build`
prepares every builder's TFDS data and trains the benchmark's SentencePiece tokenizer on the
formatted training text, all offline and deterministic for a seed.
"""

from __future__ import annotations

import os
import time

from medpalm_m.data.synthetic import (chest_xray, dermatology, genomics, mammography,  # noqa: F401
                                      medical_qa, summarization, vqa)

TOKENIZER_FILE = "medpalm_m_synthetic_spm.model"
TOKENIZER_VOCAB_SIZE = 2048
_TOKENIZER_SAMPLES_PER_TASK = 1500


def synthetic_tasks() -> dict:
  from medpalm_m.data import tasks
  return {name: t for name, t in tasks.all_tasks().items() if name.startswith("synthetic_")}


def tokenizer_path(data_dir: str) -> str:
  return os.path.join(os.path.expanduser(data_dir), TOKENIZER_FILE)


def build(data_dir: str, *, verbose: bool = True) -> dict[str, float]:
  """Prepare every synthetic builder under data_dir (skipping prepared ones) and the tokenizer.

  Returns seconds spent per builder (and on the tokenizer).
  """
  import tensorflow_datasets as tfds

  from medpalm_m.data import pipeline, tokenizer
  tfds.disable_progress_bar()  # one line per builder below says enough
  data_dir = os.path.expanduser(data_dir)
  timings: dict[str, float] = {}
  builders = {t.builder for t in synthetic_tasks().values()}
  for builder_cls in sorted(builders, key=lambda b: b.__name__):
    start = time.perf_counter()
    builder = builder_cls(data_dir=data_dir)
    if not builder.is_prepared():
      builder.download_and_prepare()
    timings[builder.name] = time.perf_counter() - start
    if verbose:
      print(f"built {builder.name} in {timings[builder.name]:.1f}s", flush=True)
  path = tokenizer_path(data_dir)
  if not os.path.exists(path):
    start = time.perf_counter()

    def corpus():
      for name, task in sorted(synthetic_tasks().items()):
        source = pipeline.TaskSource(task, "train", data_dir)
        for i in range(min(len(source), _TOKENIZER_SAMPLES_PER_TASK)):
          example = source[i]
          for segment in tokenizer.split_on_image_markers(example["prompt"]):
            if segment.strip():
              yield segment
          yield example["target"]

    tmp = path + ".tmp"
    tokenizer.train_tokenizer(corpus(), TOKENIZER_VOCAB_SIZE, tmp)
    os.replace(tmp, path)  # never leave a half-written tokenizer behind
    timings["tokenizer"] = time.perf_counter() - start
    if verbose:
      print(f"trained tokenizer {path} in {timings['tokenizer']:.1f}s", flush=True)
  return timings

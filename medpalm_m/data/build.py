"""Building the datasets a run reads, under one TFDS data_dir; whatever is prepared already is kept.

`build_synthetic` prepares MultiMedBench-mini and trains its SentencePiece tokenizer, offline and
deterministic for a seed; `prepare` builds real MultiMedBench datasets from the user's manual
downloads. `python -m medpalm_m.data build` is the command line of both.
"""

from __future__ import annotations

import os
import time
from typing import Mapping

TOKENIZER_VOCAB_SIZE = 2048
_TOKENIZER_SAMPLES_PER_TASK = 1500


def build_synthetic(data_dir: str, *, verbose: bool = True) -> dict[str, float]:
  """Prepare every synthetic builder under data_dir (skipping prepared ones) and the tokenizer.

  Returns seconds spent per builder (and on the tokenizer).
  """
  import tensorflow_datasets as tfds

  from medpalm_m.data import pipeline, synthetic, tokenizer
  tfds.disable_progress_bar()  # one line per builder below says enough
  data_dir = os.path.expanduser(data_dir)
  timings: dict[str, float] = {}
  builders = {t.builder for t in synthetic.synthetic_tasks().values()}
  for builder_cls in sorted(builders, key=lambda b: b.__name__):
    start = time.perf_counter()
    builder = builder_cls(data_dir=data_dir)
    if not builder.is_prepared():
      builder.download_and_prepare()
    timings[builder.name] = time.perf_counter() - start
    if verbose:
      print(f"built {builder.name} in {timings[builder.name]:.1f}s", flush=True)
  path = synthetic.tokenizer_path(data_dir)
  if not os.path.exists(path):
    start = time.perf_counter()

    def corpus():
      for name, task in sorted(synthetic.synthetic_tasks().items()):
        if "train" not in task.splits:
          # Evaluation-only tasks (the zero-shot suite's) stay out: the tokenizer, and with it the
          # default run, is what it was before they existed.
          continue
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


def prepare(data_dir: str, manual_dirs: Mapping[str, str], *, skip_malformed: bool = False,
            verbose: bool = True) -> dict[str, float]:
  """Prepare each named task's builder from its manual dir; empty paths are ignored.

  Several tasks may read one dataset (one builder); they must then name the same folder. Training
  calls this on first use when the config gives `data.manual_dirs`.
  Returns seconds spent per builder (0 for one already prepared).
  """
  import tensorflow_datasets as tfds

  from medpalm_m.data import tasks
  data_dir = os.path.expanduser(data_dir)
  paths: dict[object, tuple[str, str]] = {}  # builder -> (manual dir, first task naming it)
  for task_name, path in manual_dirs.items():
    if not path:
      continue
    builder_cls = tasks.get(task_name).builder
    path = os.path.expanduser(str(path))
    if builder_cls in paths and paths[builder_cls][0] != path:
      raise ValueError(f"tasks {paths[builder_cls][1]!r} and {task_name!r} read the same dataset but were "
                       f"given different folders ({paths[builder_cls][0]} and {path}); give one")
    paths.setdefault(builder_cls, (path, task_name))
  tfds.disable_progress_bar()
  timings: dict[str, float] = {}
  for builder_cls, (path, task_name) in paths.items():
    start = time.perf_counter()
    builder = builder_cls(data_dir=data_dir, manual_dir=path, skip_malformed=skip_malformed)
    if not builder.is_prepared():
      builder.download_and_prepare()
      if verbose:
        counts = ", ".join(f"{s} {info.num_examples}" for s, info in sorted(builder.info.splits.items()))
        print(f"built {builder.name} ({task_name}) from {path}: {counts} "
              f"in {time.perf_counter() - start:.0f}s", flush=True)
    timings[builder.name] = time.perf_counter() - start
  return timings

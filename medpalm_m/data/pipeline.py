"""From TFDS array_record sources to batches, with grain.

Each task's split is a random-access source of formatted examples (`TaskSource`). Training
shuffles each task's source per epoch, repeats it, mixes the tasks by weight, takes this
process's shard of the mixed stream, preprocesses, and batches. Every step is a deterministic
function of (seed, index), so the iterator's state is a few integers that are saved in the
checkpoint: a resumed run sees exactly the examples it would have seen.
"""

from __future__ import annotations

import zlib
from typing import Any, Iterator, Mapping, Sequence

import grain
import numpy as np

from medpalm_m.data import tasks as tasks_lib
from medpalm_m.data.preprocess import ExampleError, Preprocessor


class MissingDataError(FileNotFoundError):
  pass


def _decode(record: Mapping[str, Any]) -> dict[str, Any]:
  return {k: (v.decode("utf-8") if isinstance(v, bytes) else v) for k, v in record.items()}


class TaskSource:
  """Random-access formatted examples of one task's split; exemplars come from its train split."""

  def __init__(self, task: tasks_lib.Task, split: str, data_dir: str, seed: int = 0):
    self.task, self.split, self.seed = task, split, seed
    builder = task.builder(data_dir=data_dir)
    if not builder.is_prepared():
      raise MissingDataError(
          f"task {task.name!r}: no prepared data for builder {builder.name!r} under {data_dir}; "
          f"build it first (`python -m medpalm_m.data build --data_dir={data_dir}` for the "
          "synthetic benchmark; real datasets need their manual download, see the README)")
    split_spec = task.split_name(split)
    try:
      num_examples = builder.info.splits[split_spec].num_examples
    except KeyError as e:
      raise ExampleError({"task": task.name, "id": "-"}, f"builder {builder.name!r} under {data_dir} "
                         f"has no split {split_spec!r} ({e}); rebuild it or fix Task.splits") from e
    if num_examples == 0:
      raise ExampleError({"task": task.name, "id": "-"},
                         f"split {split!r} ({split_spec}) under {data_dir} is empty")
    self.records = builder.as_data_source(split=split_spec)
    self.exemplars = None
    if task.num_exemplars:
      self.exemplars = (self.records if task.split_name(split) == task.split_name("train")
                        else builder.as_data_source(split=task.split_name("train")))
      if len(self.exemplars) <= task.num_exemplars:
        raise ExampleError({"task": task.name, "id": "-"},
                           f"needs {task.num_exemplars} exemplars but the train split has "
                           f"{len(self.exemplars)} records")
    self._task_hash = zlib.crc32(task.name.encode())

  def __len__(self) -> int:
    return len(self.records)

  def exemplar_indices(self, index: int) -> list[int]:
    """A fixed choice of exemplars per example (never the example itself)."""
    if not self.task.num_exemplars:
      return []
    rng = np.random.default_rng([self.seed, self._task_hash, index])
    same_split = self.exemplars is self.records
    picked: list[int] = []
    while len(picked) < self.task.num_exemplars:
      j = int(rng.integers(len(self.exemplars)))
      if j not in picked and not (same_split and j == index):
        picked.append(j)
    return picked

  def __getitem__(self, index: int) -> dict[str, Any]:
    record = _decode(self.records[index])
    exemplars = [_decode(self.exemplars[j]) for j in self.exemplar_indices(index)]
    try:
      example = self.task.formatter(record, exemplars)
    except Exception as e:  # name the example in any formatter failure
      raise ExampleError({"task": self.task.name, "id": record.get("id", index)},
                         f"formatting failed: {type(e).__name__}: {e}") from e
    example["task"] = self.task.name
    return example


def task_ids(task_names: Sequence[str]) -> dict[str, int]:
  """Stable integer ids for per-task accounting inside the compiled step."""
  return {name: i for i, name in enumerate(sorted(task_names))}


def train_dataset(mixture: Mapping[str, float], data_dir: str, preprocessor: Preprocessor, *,
                  batch_size: int, seed: int, process_index: int = 0, process_count: int = 1,
                  num_workers: int = 0) -> grain.IterDataset:
  """The infinite training stream of this process: batches of `batch_size // process_count`."""
  if batch_size % process_count:
    raise ValueError(f"config.train.batch_size {batch_size} is not divisible by the "
                     f"{process_count} processes")
  names = sorted(mixture)
  streams = []
  for i, name in enumerate(names):
    source = TaskSource(tasks_lib.get(name), "train", data_dir, seed)
    streams.append(grain.MapDataset.source(source).seed(seed + i).shuffle().repeat())
  mixed = grain.MapDataset.mix(streams, [mixture[n] for n in names])
  shard = mixed.slice(slice(process_index, None, process_count))
  ds = shard.map(preprocessor).to_iter_dataset()
  ds = ds.batch(batch_size // process_count, drop_remainder=True)
  if num_workers:
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  return ds


def eval_examples(task: tasks_lib.Task, data_dir: str, split: str = "test", *,
                  max_examples: int | None = None, seed: int = 0) -> grain.MapDataset:
  """The first `max_examples` examples of a task's split, in order."""
  source = TaskSource(task, split, data_dir, seed)
  ds = grain.MapDataset.source(source)
  if max_examples is not None:
    ds = ds.slice(slice(0, max_examples))
  return ds


def first_examples(mixture: Mapping[str, float], data_dir: str, n: int, seed: int = 0) -> Iterator[dict]:
  """The mixture's first n training examples, before preprocessing (for people to look at)."""
  names = sorted(mixture)
  streams = [grain.MapDataset.source(TaskSource(tasks_lib.get(t), "train", data_dir, seed))
             .seed(seed + i).shuffle().repeat() for i, t in enumerate(names)]
  mixed = grain.MapDataset.mix(streams, [mixture[t] for t in names])
  for i in range(n):
    yield mixed[i]

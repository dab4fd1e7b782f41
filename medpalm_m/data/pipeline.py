"""From TFDS array_record sources to batches, with grain.

Each task's split is a random-access source of formatted examples (`TaskSource`). Training
shuffles each task's source per epoch, repeats it, mixes the tasks by weight (drawn per example,
or with every task in every batch: `EveryTaskMix`; optionally another mixture for the stream's
first examples: `Opening`), augments the images of the tasks that ask
for it (`augment.Augmentation`), takes this process's shard of the mixed stream, preprocesses,
optionally packs several examples into each row (`Packing`), and batches. Every step is a
deterministic function of (seed, index), so the iterator's state is a few integers that are
saved in the checkpoint: a resumed run sees exactly the examples it would have seen.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import zlib
from typing import Any, Iterator, Mapping, Sequence

import grain
import numpy as np

from medpalm_m.data import augment
from medpalm_m.data import mixtures
from medpalm_m.data import tasks as tasks_lib
from medpalm_m.data import tokenizer as tok
from medpalm_m.data.preprocess import ExampleError, Preprocessor, SequenceSpec


class MissingDataError(FileNotFoundError):
  pass


def _decode(record: Mapping[str, Any]) -> dict[str, Any]:
  return {k: (v.decode("utf-8") if isinstance(v, bytes) else v) for k, v in record.items()}


class TaskSource:
  """Random-access formatted examples of one task's split; exemplars come from its train split.
  `copies_by_label` ({option index: copies}) repeats each record whose answer is that option, as
  the paper up-samples rare classes (`Upsampling`); a copy is the same example, exemplars included."""

  def __init__(self, task: tasks_lib.Task, split: str, data_dir: str, seed: int = 0,
               copies_by_label: Mapping[int, int] | None = None):
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
      exemplar_split = task.split_name(task.exemplar_split)
      self.exemplars = (self.records if split_spec == exemplar_split
                        else builder.as_data_source(split=exemplar_split))
      # Drawn from the example's own split, an exemplar is never the example itself.
      if len(self.exemplars) < task.num_exemplars + (self.exemplars is self.records):
        raise ExampleError({"task": task.name, "id": "-"},
                           f"needs {task.num_exemplars} exemplars but the {task.exemplar_split} "
                           f"split has {len(self.exemplars)} records")
    self._task_hash = zlib.crc32(task.name.encode())
    # Position in this source -> record index; None: the identity.
    self._record_of: np.ndarray | None = None
    if copies_by_label:
      self._record_of = self._upsampled(copies_by_label)

  def _upsampled(self, copies_by_label: Mapping[int, int]) -> np.ndarray:
    copies = np.ones(len(self.records), np.int64)
    for index in range(len(self.records)):
      record = _decode(self.records[index])
      try:
        label = self.task.formatter(record, [])["label"]
      except Exception as e:
        raise ExampleError({"task": self.task.name, "id": record.get("id", index)},
                           f"config.data.upsample needs the example's label ({type(e).__name__}: {e}); "
                           "up-sample only classification tasks") from e
      copies[index] = copies_by_label.get(int(label), 1)
    return np.repeat(np.arange(len(self.records)), copies)

  def __len__(self) -> int:
    return len(self.records) if self._record_of is None else len(self._record_of)

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
    if self._record_of is not None:
      index = int(self._record_of[index])
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


# Per-example fields that travel with a packed row as one entry per example (zero = no example).
EXAMPLE_FIELDS = ("task_id", "prompt_truncated", "target_truncated", "dropped")
_SEQUENCE_FIELDS = ("tokens", "input_mask", "mask_ar", "mask_loss")


@dataclasses.dataclass(frozen=True)
class Packing:
  """Several examples per training row: the synthetic mixture's examples fill ~54% of a
  fixed-length row, so unpacked rows spend about half of every step on padding.

  A packed row holds whole examples only (never a split one), each attending within itself
  (`segment_ids`) with positions restarting at 0, so its loss is exactly the sum of the
  examples' losses when unpacked. Rows are filled first-fit over `batch_size` open rows by
  grain's packer; an example is never cut to fit.
  """
  images_per_row: int  # image slots of a row; an example with more images than this cannot fit
  examples_per_row: int  # bounds the per-example fields' length

  @classmethod
  def from_config(cls, data: Mapping[str, Any]) -> "Packing | None":
    """config.data -> its Packing, or None when config.data.packing is off or absent."""
    packing, max_images = data.get("packing"), data["max_images"]
    if not packing or not packing.get("enabled"):
      return None
    images, examples = int(packing["images_per_row"]), int(packing["examples_per_row"])
    if images < max_images:
      raise ValueError(f"config.data.packing.images_per_row={images} is below "
                       f"config.data.max_images={max_images}: an example with {max_images} images "
                       "could never be packed; raise images_per_row")
    if examples < 1:
      raise ValueError(f"config.data.packing.examples_per_row must be >= 1, got {examples}")
    return cls(images_per_row=images, examples_per_row=examples)


def images_per_row(data: Mapping[str, Any]) -> int:
  """Image slots of a training row for config.data: its max_images, or the packed row's."""
  packing = Packing.from_config(data)
  return packing.images_per_row if packing else data["max_images"]


def row_features(spec: SequenceSpec, packing: Packing | None) -> dict[str, tuple[tuple[int, ...], Any]]:
  """(shape, dtype) of each feature of one training row, as `train_dataset` yields it."""
  t = (spec.length,)
  features = {"tokens": (t, np.int32), "input_mask": (t, np.bool_), "mask_ar": (t, np.int32),
              "mask_loss": (t, np.bool_)}
  image = (spec.image_size, spec.image_size, 3)
  if packing is None:
    features.update(images=((spec.max_images, *image), np.uint8), task_id=((), np.int32),
                    prompt_length=((), np.int32), prompt_truncated=((), np.bool_),
                    target_truncated=((), np.bool_), dropped=((), np.bool_))
    return features
  per_example = (packing.examples_per_row,)
  features.update(images=((packing.images_per_row, *image), np.uint8), segment_ids=(t, np.int32),
                  positions=(t, np.int32), task_id=(per_example, np.int32),
                  prompt_truncated=(per_example, np.bool_), target_truncated=(per_example, np.bool_),
                  dropped=(per_example, np.bool_), example_valid=(per_example, np.bool_))
  return features


def _unpadded(features: Mapping[str, np.ndarray], image_slots: int) -> dict[str, np.ndarray]:
  """One preprocessed example cut to its real tokens and images, ready for the packer. A dropped
  example keeps its per-example fields (so it is still counted) and has no tokens."""
  length = int(features["input_mask"].sum())
  num_images = int(np.count_nonzero(features["tokens"][:length] == tok.IMAGE_ID)) // image_slots
  out = {k: features[k][:length] for k in _SEQUENCE_FIELDS}
  out["images"] = features["images"][:num_images]
  out.update({k: np.asarray(features[k]) for k in EXAMPLE_FIELDS})
  return out


def _packed_row(row: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """grain's packed row -> the trainer's names: `segment_ids` (0 = padding) and `positions` from
  the tokens, the per-example fields with `example_valid` marking the filled entries."""
  out = {k: row[k] for k in _SEQUENCE_FIELDS + EXAMPLE_FIELDS + ("images",)}
  out["segment_ids"] = row["tokens_segment_ids"]
  out["positions"] = row["tokens_positions"]
  out["example_valid"] = row["task_id_segment_ids"] > 0
  return out


def every_task_counts(weights: Sequence[float], batch_size: int) -> list[int]:
  """Examples of each task in every batch of `batch_size`: at least one each, the rest in
  proportion to what each task's weight asks beyond its one (largest remainders), so a task
  whose weight is at least 1/batch_size keeps its weight to within one example a batch."""
  if batch_size < len(weights):
    raise ValueError(f"config.data.every_task_per_batch: a batch of {batch_size} cannot hold all "
                     f"{len(weights)} tasks of config.data.mixture; raise config.train.batch_size")
  total = float(sum(weights))
  beyond_one = [max(w / total * batch_size - 1, 0.0) for w in weights]
  free = batch_size - len(weights)
  if sum(beyond_one) == 0:
    beyond_one = [1.0] * len(weights)
  quotas = [free * b / sum(beyond_one) for b in beyond_one]
  counts = [1 + math.floor(q) for q in quotas]
  by_remainder = sorted(range(len(weights)), key=lambda t: (math.floor(quotas[t]) - quotas[t], t))
  for t in by_remainder[:batch_size - sum(counts)]:
    counts[t] += 1
  return counts


@dataclasses.dataclass(frozen=True)
class Opening:
  """A curriculum's opening phase: the training stream's first `examples` examples are drawn from
  `mixture` (normalised, a subset of config.data.mixture's tasks), the rest from config.data.mixture.
  A task that a short run learns only once it has found the image feature it needs (the
  genotype's allele fraction in one pileup column) finds it sooner where it fills the first steps.
  Counted in examples, not steps, so that the switch sits at a fixed position of the stream
  whatever the packing puts in a row, and a resumed run continues exactly."""
  examples: int
  mixture: Mapping[str, float]

  @classmethod
  def from_config(cls, data: Mapping[str, Any]) -> "Opening | None":
    """config.data -> its Opening, or None when config.data.opening.examples is 0."""
    opening = data.get("opening") or {}
    examples = int(opening.get("examples", 0))
    if examples < 0:
      raise ValueError(f"config.data.opening.examples must be >= 0, got {examples}")
    if examples == 0:
      return None
    weights = dict(opening.get("mixture") or {})
    if not weights:
      raise ValueError(f"config.data.opening.examples={examples} but config.data.opening.mixture "
                       "is empty; give the opening's {task: weight} or set examples to 0")
    outside = sorted(set(weights) - {t for t, w in data["mixture"].items() if w > 0})
    if outside:
      raise ValueError(f"config.data.opening.mixture: task(s) {outside} are not in config.data.mixture; "
                       "the opening draws from the run's own tasks (add them there, with weight, "
                       "or remove them here)")
    if data.get("every_task_per_batch"):
      raise ValueError("config.data.opening needs config.data.every_task_per_batch=False: the "
                       "opening's batches hold only its own tasks")
    return cls(examples=examples,
               mixture=mixtures.normalize(weights, where="config.data.opening.mixture"))


@dataclasses.dataclass(frozen=True)
class Upsampling:
  """config.data.upsample, {task: {option: copies}}: each training example of the task whose answer
  is that option appears `copies` times per epoch. The paper up-samples rare classes this way
  (MIMIC-CXR positives x2 for four conditions, VinDr-Mammo BI-RADS 2-5 x3; the real builders
  store those copies). Validated here so a typo names its key instead of training without it."""
  copies: Mapping[str, Mapping[int, int]]  # task -> {option index: copies}

  @classmethod
  def from_config(cls, data: Mapping[str, Any]) -> "Upsampling":
    copies: dict[str, dict[int, int]] = {}
    for task_name, by_option in dict(data.get("upsample") or {}).items():
      where = f"config.data.upsample[{task_name!r}]"
      try:
        options = tasks_lib.get(task_name).options
      except KeyError as e:
        raise ValueError(f"{where}: {e.args[0]}") from e
      if not options:
        raise ValueError(f"{where}: the task has no answer options; only classification tasks can be "
                         "up-sampled by answer")
      copies[task_name] = {}
      for option, count in dict(by_option).items():
        if option not in options:
          raise ValueError(f"{where}: {option!r} is not one of the task's options {list(options)}")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
          raise ValueError(f"{where}[{option!r}] must be a whole number of copies >= 1, got {count!r}")
        copies[task_name][options.index(option)] = count
    # A registered task the mixture leaves out has nothing to up-sample (as for
    # config.train.task_loss_weights): a config derived from configs/tiny.py may train other tasks.
    trained = {t for t, w in data["mixture"].items() if w > 0}
    return cls(copies={t: c for t, c in copies.items() if t in trained})


class OpeningMix(grain.MapDataset):
  """Element i is the opening's element i for i < `length`, else the main stream's i - length:
  a position-wise function, so resume and process sharding work as for one mixture."""

  def __init__(self, opening: grain.MapDataset, main: grain.MapDataset, length: int):
    super().__init__([opening, main])
    self.length = length

  def __len__(self) -> int:
    return sys.maxsize

  def __str__(self) -> str:
    return f"OpeningMix[first {self.length} examples from the opening]"

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    index = int(index)
    if index < self.length:
      return self._parents[0][index]
    return self._parents[1][index - self.length]


class EveryTaskMix(grain.MapDataset):
  """The tasks' streams mixed so that every run of `batch_size` examples (a global batch: each
  process's shard of it is a slice of the run) holds `every_task_counts` of each task, in an
  order shuffled per batch. Example i of batch g that is task t's k-th in it is that stream's
  element g * counts[t] + k, so any position is computed directly and resume stays exact."""

  def __init__(self, streams: Sequence[grain.MapDataset], weights: Sequence[float], batch_size: int,
               seed: int):
    super().__init__(list(streams))
    self.counts = every_task_counts(weights, batch_size)
    self.batch_size, self.seed = batch_size, seed
    self.layout = np.repeat(np.arange(len(self.counts)), self.counts)

  def __len__(self) -> int:
    return sys.maxsize

  def __str__(self) -> str:
    return f"EveryTaskMix[{len(self._parents)} tasks, counts {self.counts}]"

  def task_order(self, batch: int) -> np.ndarray:
    return np.random.default_rng([self.seed, batch]).permutation(self.layout)

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    batch, position = divmod(int(index), self.batch_size)
    order = self.task_order(batch)
    task = int(order[position])
    k = int(np.count_nonzero(order[:position] == task))
    return self._parents[task][batch * self.counts[task] + k]


def train_dataset(mixture: Mapping[str, float], data_dir: str, preprocessor: Preprocessor, *,
                  batch_size: int, seed: int, process_index: int = 0, process_count: int = 1,
                  num_workers: int = 0, packing: Packing | None = None,
                  every_task_per_batch: bool = False,
                  augmentation: augment.Augmentation | None = None,
                  opening: Opening | None = None,
                  upsampling: Upsampling | None = None,
                  prefetch_in_thread: bool = False) -> grain.IterDataset:
  """The infinite training stream of this process: batches of `batch_size // process_count`
  rows, each one example or, with `packing`, several. `every_task_per_batch` puts every task of
  the mixture in every global batch (the paper's constraint); `augmentation` augments the images
  of the tasks it names; `opening` draws the stream's first examples from another mixture;
  `upsampling` repeats a task's training examples by answer;
  `prefetch_in_thread` (without worker processes) prepares the next batch while the caller
  computes."""
  if batch_size % process_count:
    raise ValueError(f"config.train.batch_size {batch_size} is not divisible by the "
                     f"{process_count} processes")
  if every_task_per_batch and packing is not None:
    raise ValueError("config.data.every_task_per_batch needs config.data.packing.enabled=False: a "
                     "packed batch holds a varying number of examples, so no fixed run of the "
                     "stream is one batch")
  local_batch = batch_size // process_count
  if every_task_per_batch and opening is not None:
    raise ValueError("config.data.opening needs config.data.every_task_per_batch=False")
  names = sorted(mixture)
  upsample = upsampling.copies if upsampling is not None else {}
  streams = _task_streams(names, data_dir, seed, upsample)
  weights = [mixture[n] for n in names]
  if every_task_per_batch:
    mixed = EveryTaskMix(streams, weights, batch_size, seed)
  else:
    mixed = grain.MapDataset.mix(streams, weights)
  if opening is not None:
    opening_names = sorted(opening.mixture)
    # Its own shuffles (another seed), so the main phase does not replay the opening's examples
    # in the opening's order.
    opening_streams = _task_streams(opening_names, data_dir, seed + _OPENING_SEED_OFFSET, upsample)
    opening_mixed = grain.MapDataset.mix(opening_streams, [opening.mixture[n] for n in opening_names])
    mixed = OpeningMix(opening_mixed, mixed, opening.examples)
  if augmentation is not None:
    mixed = mixed.map_with_index(augmentation)  # the position in the whole stream seeds it
  shard = mixed.slice(slice(process_index, None, process_count))
  ds = shard.map(preprocessor).to_iter_dataset()
  if packing is not None:
    spec = preprocessor.spec
    ds = ds.map(functools.partial(_unpadded, image_slots=spec.image_slots))  # picklable for workers
    length = {k: spec.length for k in _SEQUENCE_FIELDS}
    length.update({k: packing.examples_per_row for k in EXAMPLE_FIELDS},
                  images=packing.images_per_row)
    # As many open rows as the batch has: every emission is then exactly one batch, so a batch
    # holds the next run of the stream (which is what the no-example-lost test checks).
    ds = grain.experimental.FirstFitPackIterDataset(
        ds, length_struct=length, num_packing_bins=local_batch, seed=seed, shuffle_bins=True)
    ds = ds.map(_packed_row)
  ds = ds.batch(local_batch, drop_remainder=True)
  if num_workers:
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  elif prefetch_in_thread:
    # The next batch is prepared in a thread while the step computes (XLA releases the GIL):
    # 40-50 ms a batch for the tiny default, ~5% of its step. The iterator's saved state is that
    # of the last batch handed out, so resuming stays exact. Close the iterator when done: its
    # thread, left to the interpreter's exit, dies with a traceback.
    ds = grain.experimental.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=1)
  return ds


_OPENING_SEED_OFFSET = 104_729


def _task_streams(names: Sequence[str], data_dir: str, seed: int,
                  upsample: Mapping[str, Mapping[int, int]]) -> list[grain.MapDataset]:
  """Each task's training split (up-sampled where `upsample` names it), shuffled per epoch (task
  i's shuffle seeded by seed + i), repeated."""
  return [grain.MapDataset.source(TaskSource(tasks_lib.get(name), "train", data_dir, seed,
                                             copies_by_label=upsample.get(name)))
          .seed(seed + i).shuffle().repeat() for i, name in enumerate(names)]


def eval_examples(task: tasks_lib.Task, data_dir: str, split: str = "test", *,
                  max_examples: int | None = None, seed: int = 0) -> grain.MapDataset:
  """The first `max_examples` examples of a task's split, in order."""
  source = TaskSource(task, split, data_dir, seed)
  ds = grain.MapDataset.source(source)
  if max_examples is not None:
    ds = ds.slice(slice(0, max_examples))
  return ds


def first_examples(mixture: Mapping[str, float], data_dir: str, n: int, seed: int = 0,
                   upsampling: Upsampling | None = None) -> Iterator[dict]:
  """The mixture's first n training examples, before preprocessing (for people to look at)."""
  names = sorted(mixture)
  streams = _task_streams(names, data_dir, seed, upsampling.copies if upsampling is not None else {})
  mixed = grain.MapDataset.mix(streams, [mixture[t] for t in names])
  for i in range(n):
    yield mixed[i]

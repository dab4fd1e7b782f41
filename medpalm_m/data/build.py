"""Building the datasets a run reads, under one TFDS data_dir; whatever is prepared already is kept.

`build_synthetic` prepares MultiMedBench-mini and trains its SentencePiece tokenizer, offline and
deterministic for a seed; `prepare` builds real MultiMedBench datasets from the user's manual
downloads. `python -m medpalm_m.data build` is the command line of both.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from typing import Any, Iterator, Mapping

TOKENIZER_VOCAB_SIZE = 2048
_TOKENIZER_SAMPLES_PER_TASK = 1500


LOCK_FILE = ".medpalm_m_build.lock"


@contextlib.contextmanager
def build_lock(data_dir: str, verbose: bool = True) -> Iterator[None]:
  """One builder of a data_dir at a time, across processes: three seeds launched at once on a fresh
  data_dir each began the same datasets, and two of them died on TFDS's "Cannot rename
  ... incomplete.* Destination ... already exists". Whoever waits then finds them prepared. An
  advisory lock (flock) on a file in data_dir, released when the process ends however it ends."""
  try:
    os.makedirs(data_dir, exist_ok=True)
    lock = open(os.path.join(data_dir, LOCK_FILE), "a")
  except OSError:
    # A read-only data_dir (a shared, prepared copy) cannot be built into by anyone: nothing to
    # guard, and TFDS names the problem if something there still needs building.
    yield
    return
  with lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      if verbose:
        print(f"waiting for another process building datasets under {data_dir}", flush=True)
      fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def build_synthetic(data_dir: str, *, verbose: bool = True) -> dict[str, float]:
  """Prepare every synthetic builder under data_dir (skipping prepared ones) and the tokenizer,
  one process at a time (`build_lock`).

  Returns seconds spent per builder (0 for one already prepared) and on the tokenizer; with
  `verbose`, one line per builder actually built, none for those already there.
  """
  data_dir = os.path.expanduser(data_dir)
  with build_lock(data_dir, verbose):
    return _build_synthetic(data_dir, verbose)


def _prepare_builder(module: str, name: str, data_dir: str) -> float:
  """Prepare one builder (in a pool's process); seconds it took."""
  import importlib

  import tensorflow_datasets as tfds
  tfds.disable_progress_bar()  # one line per builder says enough
  start = time.perf_counter()
  getattr(importlib.import_module(module), name)(data_dir=data_dir).download_and_prepare()
  return time.perf_counter() - start


def _build_synthetic(data_dir: str, verbose: bool) -> dict[str, float]:
  import concurrent.futures
  import multiprocessing

  from medpalm_m.data import pipeline, synthetic, tokenizer
  data_dir = os.path.expanduser(data_dir)
  timings: dict[str, float] = {}
  builders = {t.builder for t in synthetic.synthetic_tasks().values()}
  missing = []
  for builder_cls in sorted(builders, key=lambda b: b.__name__):
    builder = builder_cls(data_dir=data_dir)
    if builder.is_prepared():
      timings[builder.name] = 0.0  # no line for work not done
    else:
      missing.append((builder.name, builder_cls))
  if missing:
    # One process per core: each builder draws and compresses its own images (single-threaded
    # Python), so on 2 cores the 15 builders took 27 s in two processes where one took 45 s
    # (AMD EPYC). Spawned, not forked: this process may already run TensorFlow's threads.
    workers = min(len(missing), os.cpu_count() or 1)
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
      futures = {pool.submit(_prepare_builder, cls.__module__, cls.__name__, data_dir): name
                 for name, cls in missing}
      for future in concurrent.futures.as_completed(futures):
        name = futures[future]
        timings[name] = future.result()  # a builder's error is raised here, naming its traceback
        if verbose:
          print(f"built {name} in {timings[name]:.1f}s", flush=True)
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


def prepare(data_dir: str, manual_dirs: Mapping[str, str], *,
            builder_options: Mapping[str, Mapping[str, Any]] | None = None, skip_malformed: bool = False,
            verbose: bool = True) -> dict[str, float]:
  """Prepare each named task's builder from its manual dir; empty paths are ignored.

  Several tasks may read one dataset (one builder); they must then name the same folder.
  `builder_options` gives {task: {option: value}} (the builder's OPTIONS, e.g. PrecisionFDA's
  train_fraction); a dataset already prepared with other option values is refused rather than
  silently kept. Training calls this on first use when the config gives `data.manual_dirs`.
  One process at a time (`build_lock`). Returns seconds spent per builder (0 for one already
  prepared).
  """
  data_dir = os.path.expanduser(data_dir)
  with build_lock(data_dir, verbose):
    return _prepare(data_dir, manual_dirs, builder_options, skip_malformed, verbose)


def _prepare(data_dir: str, manual_dirs: Mapping[str, str], builder_options, skip_malformed: bool,
             verbose: bool) -> dict[str, float]:
  import tensorflow_datasets as tfds

  from medpalm_m.data import tasks
  data_dir = os.path.expanduser(data_dir)
  paths: dict[type, tuple[str, str]] = {}  # builder -> (manual dir, first task naming it)
  for task_name, path in manual_dirs.items():
    if not path:
      continue
    builder_cls = tasks.get(task_name).builder
    path = os.path.expanduser(str(path))
    if builder_cls in paths and paths[builder_cls][0] != path:
      raise ValueError(f"tasks {paths[builder_cls][1]!r} and {task_name!r} read the same dataset but were "
                       f"given different folders ({paths[builder_cls][0]} and {path}); give one")
    paths.setdefault(builder_cls, (path, task_name))
  options = options_by_builder(builder_options or {})
  tfds.disable_progress_bar()
  timings: dict[str, float] = {}
  for builder_cls, (path, task_name) in paths.items():
    start = time.perf_counter()
    builder = builder_cls(data_dir=data_dir, manual_dir=path, skip_malformed=skip_malformed,
                          **options.get(builder_cls, {}))
    if builder.is_prepared():
      _check_prepared_options(builder, task_name)
    else:
      builder.download_and_prepare()
      if verbose:
        counts = ", ".join(f"{s} {info.num_examples}" for s, info in sorted(builder.info.splits.items()))
        print(f"built {builder.name} ({task_name}) from {path}: {counts} "
              f"in {time.perf_counter() - start:.0f}s", flush=True)
    timings[builder.name] = time.perf_counter() - start
  return timings


def options_by_builder(builder_options: Mapping[str, Mapping[str, Any]]) -> dict[type, dict[str, Any]]:
  """{task: {option: value}} as {builder class: {option: value}}, each option checked against
  the builder's OPTIONS; tasks of one builder must not disagree."""
  from medpalm_m.data import tasks
  merged: dict[type, dict[str, Any]] = {}
  for task_name, task_options in builder_options.items():
    builder_cls = tasks.get(task_name).builder
    known = getattr(builder_cls, "OPTIONS", {})
    for option, value in dict(task_options).items():
      if option not in known:
        offered = ", ".join(f"{name} ({what})" for name, what in known.items()) or "none"
        raise ValueError(f"data.builder_options.{task_name}: the {task_name} dataset has no option "
                         f"{option!r}; its options: {offered}")
      chosen = merged.setdefault(builder_cls, {})
      if option in chosen and chosen[option] != value:
        raise ValueError(f"data.builder_options: tasks of one dataset give {option} both "
                         f"{chosen[option]!r} and {value!r}; give one")
      chosen[option] = value
  return merged


def _check_prepared_options(builder, task_name: str) -> None:
  """Refuse a prepared dataset whose stored options differ from those asked now (datasets
  prepared before options were stored are taken as they are)."""
  stored = builder.info.metadata.get("builder_options") if builder.info.metadata else None
  if stored is None:
    return
  asked = builder.option_values()
  differ = {name: (stored.get(name), value) for name, value in asked.items() if stored.get(name) != value}
  if differ:
    what = ", ".join(f"{name}={old!r} (asked: {new!r})" for name, (old, new) in differ.items())
    raise ValueError(f"{task_name}: {builder.data_dir} was prepared with {what}; delete that folder to "
                     "rebuild it with the options asked, or ask for the options it was built with")

"""Build the real MultiMedBench datasets a run needs from the user's manual downloads.

    python -m medpalm_m.data.builders.prepare --data_dir=DIR medqa=~/dl/MedQA/data_clean \\
        medmcqa=~/dl/medmcqa slake=~/dl/Slake1.0 [--skip_malformed]

Each TASK=PATH pair names a registered task (`python -m medpalm_m.data list`) and the folder that
holds its download; the task's builder is prepared under DIR unless it already is. Training does
the same on first use when the config gives `data.manual_dirs` (see
configs/medpalm_m_12b_multimedbench.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Mapping


def prepare(data_dir: str, manual_dirs: Mapping[str, str], *, skip_malformed: bool = False,
            verbose: bool = True) -> dict[str, float]:
  """Prepare each named task's builder from its manual dir; empty paths are ignored.

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


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data_dir", required=True, help="where the prepared TFDS datasets go")
  parser.add_argument("--skip_malformed", action="store_true",
                      help="skip and count malformed records instead of stopping at the first one")
  parser.add_argument("pairs", nargs="+", metavar="TASK=PATH")
  args = parser.parse_args(argv)
  manual_dirs = {}
  for pair in args.pairs:
    task, sep, path = pair.partition("=")
    if not sep or not task or not path:
      parser.error(f"{pair!r} is not TASK=PATH")
    manual_dirs[task] = path
  from medpalm_m.data.builders import base
  try:
    prepare(args.data_dir, manual_dirs, skip_malformed=args.skip_malformed)
  except (base.ManualDataError, base.MalformedRecordError, KeyError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  main()

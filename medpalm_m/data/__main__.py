"""Build and look at the data: list tasks and mixtures, build datasets, write examples to a folder.

    python -m medpalm_m.data list
    python -m medpalm_m.data build [--data_dir=DIR]
    python -m medpalm_m.data build [--data_dir=DIR] medqa=~/dl/MedQA/data_clean \\
        medmcqa=~/dl/medmcqa slake=~/dl/Slake1.0 [--skip_malformed] \\
        [--builder_option slake.english_only=True ...]
    python -m medpalm_m.data show --data_dir=DIR [--mixture=synthetic] [--n=20] --out=FOLDER

`build` alone builds the synthetic MultiMedBench-mini and its tokenizer. Given TASK=PATH pairs it
builds real datasets instead: each pair names a registered task (see `list`) and the folder that
holds its manual download, and the task's builder is prepared under DIR unless it already is.
`--builder_option TASK.OPTION=VALUE` sets an option of a task's dataset (`list` shows them).
A refused download is one `error:` line naming the file.
Training does the same on first use when the config gives `data.manual_dirs` (see
configs/medpalm_m_12b_multimedbench.py).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import os

import numpy as np
from PIL import Image

from medpalm_m import repository, user_errors

DEFAULT_DATA_DIR = "~/.cache/medpalm_m/tensorflow_datasets"


def _mixture(name: str) -> dict[str, float]:
  try:
    return dict(importlib.import_module(f"configs.mixtures.{name}").MIXTURE)
  except ModuleNotFoundError:
    raise ValueError(f"--mixture={name}: no {repository.CONFIGS}/mixtures/{name}.py "
                     "(`python -m medpalm_m.data list` lists the mixtures)") from None


def cmd_list(args) -> None:
  from medpalm_m.data import tasks
  for name, task in sorted(tasks.all_tasks().items()):
    options = f" options={list(task.options)}" if task.options else ""
    builder_options = getattr(task.builder, "OPTIONS", {})
    settable = f" builder_options={sorted(builder_options)}" if builder_options else ""
    print(f"{name:38s} metrics={','.join(task.metrics)} exemplars={task.num_exemplars}"
          f" paper_task={task.paper_task!r}{options}{settable}")
  root = os.path.join(repository.CONFIGS, "mixtures")
  if os.path.isdir(root):
    for file in sorted(os.listdir(root)):
      if file.endswith(".py") and not file.startswith("_"):
        mixture = _mixture(file[:-3])
        total = sum(mixture.values())
        print(f"\nmixture {file[:-3]}:")
        for task, weight in sorted(mixture.items(), key=lambda kv: -kv[1]):
          print(f"  {task:38s} {100 * weight / total:6.2f}%")


def cmd_build(args) -> None:
  from medpalm_m.data import build
  if not args.manual_dirs:
    timings = build.build_synthetic(args.data_dir)
    print(f"MultiMedBench-mini ready under {os.path.expanduser(args.data_dir)} "
          f"({sum(timings.values()):.1f}s)")
    return
  build.prepare(args.data_dir, args.manual_dirs, builder_options=args.builder_options,
                skip_malformed=args.skip_malformed)


def _manual_dirs(parser: argparse.ArgumentParser, pairs: list[str]) -> dict[str, str]:
  manual_dirs = {}
  for pair in pairs:
    task, sep, path = pair.partition("=")
    if not sep or not task or not path:
      parser.error(f"{pair!r} is not TASK=PATH")
    manual_dirs[task] = path
  return manual_dirs


def _builder_options(parser: argparse.ArgumentParser, settings: list[str]) -> dict[str, dict]:
  """TASK.OPTION=VALUE settings as {task: {option: value}}; values are Python literals (1.0,
  True) or else strings."""
  options: dict[str, dict] = {}
  for setting in settings:
    name, sep, text = setting.partition("=")
    task, dot, option = name.partition(".")
    if not (sep and dot and task and option and text):
      parser.error(f"--builder_option {setting!r} is not TASK.OPTION=VALUE")
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    options.setdefault(task, {})[option] = value
  return options


def cmd_show(args) -> None:
  """The mixture's first N training examples: prompt, target and images as PNG, plus index.jsonl."""
  from medpalm_m.data import mixtures, pipeline
  mixture = mixtures.normalize(_mixture(args.mixture), where=f"mixture {args.mixture}")
  # Read before creating --out: a wrong --data_dir fails with nothing created.
  examples = list(pipeline.first_examples(mixture, os.path.expanduser(args.data_dir), args.n))
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "index.jsonl"), "w") as index:
    for i, example in enumerate(examples):
      images = []
      for k, image in enumerate(example["images"]):
        path = f"{i:04d}_{k}.png"
        array = np.asarray(image)
        Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(os.path.join(args.out, path))
        images.append(path)
      index.write(json.dumps({"index": i, "id": example["id"], "task": example["task"],
                              "prompt": example["prompt"], "target": example["target"],
                              "images": images}) + "\n")
  print(f"wrote {args.n} examples to {args.out}")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(prog="python -m medpalm_m.data", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  sub.add_parser("list", help="registered tasks and the mixtures in configs/mixtures")
  build = sub.add_parser("build", help="build MultiMedBench-mini and its tokenizer, or the real "
                         "datasets given as TASK=PATH")
  build.add_argument("--data_dir", default=DEFAULT_DATA_DIR, help="where the prepared TFDS datasets go")
  build.add_argument("--skip_malformed", action="store_true",
                     help="real datasets: skip and count malformed records instead of stopping at the first one")
  build.add_argument("--builder_option", action="append", default=[], metavar="TASK.OPTION=VALUE",
                     help="real datasets: an option of a task's dataset, e.g. precision_fda.train_fraction=1.0")
  build.add_argument("pairs", nargs="*", metavar="TASK=PATH",
                     help="a real task and the folder of its manual download")
  show = sub.add_parser("show", help="write a mixture's first examples to a folder")
  show.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
  show.add_argument("--mixture", default="synthetic")
  show.add_argument("--n", type=int, default=20)
  show.add_argument("--out", required=True)
  args = parser.parse_args(argv)
  if args.command == "build":
    args.manual_dirs = _manual_dirs(build, args.pairs)
    args.builder_options = _builder_options(build, args.builder_option)
    if (args.skip_malformed or args.builder_options) and not args.manual_dirs:
      build.error("--skip_malformed and --builder_option apply to real datasets, given as TASK=PATH")
  repository.use_configs()  # configs/mixtures, from any working directory
  from medpalm_m import runtime
  runtime.quiet_libraries()
  from medpalm_m.data.builders import base
  # A refused download (missing or malformed file, unsafe pickle, bad image): the build ran and
  # stopped, exit 1, one line naming the file.
  with user_errors.as_lines():
    try:
      {"list": cmd_list, "build": cmd_build, "show": cmd_show}[args.command](args)
    except base.REFUSALS as e:
      user_errors.fail(user_errors.message_of(e), user_errors.FAILED)


if __name__ == "__main__":
  main()

"""Look at the data: list tasks and mixtures, build MultiMedBench-mini, write examples to a folder.

    python -m medpalm_m.data list
    python -m medpalm_m.data build --data_dir=DIR
    python -m medpalm_m.data show --data_dir=DIR [--mixture=synthetic] [--n=20] --out=FOLDER
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

import numpy as np
from PIL import Image

DEFAULT_DATA_DIR = "~/.cache/medpalm_m/tensorflow_datasets"


def _mixture(name: str) -> dict[str, float]:
  try:
    return dict(importlib.import_module(f"configs.mixtures.{name}").MIXTURE)
  except ModuleNotFoundError:
    raise SystemExit(f"unknown mixture {name!r}; mixtures live in configs/mixtures/ "
                     "(run from the repository root)")


def cmd_list(args) -> None:
  from medpalm_m.data import tasks
  for name, task in sorted(tasks.all_tasks().items()):
    options = f" options={list(task.options)}" if task.options else ""
    print(f"{name:38s} metrics={','.join(task.metrics)} exemplars={task.num_exemplars}"
          f" paper_task={task.paper_task!r}{options}")
  root = os.path.join(os.getcwd(), "configs", "mixtures")
  if os.path.isdir(root):
    for file in sorted(os.listdir(root)):
      if file.endswith(".py") and not file.startswith("_"):
        mixture = _mixture(file[:-3])
        total = sum(mixture.values())
        print(f"\nmixture {file[:-3]}:")
        for task, weight in sorted(mixture.items(), key=lambda kv: -kv[1]):
          print(f"  {task:38s} {100 * weight / total:6.2f}%")


def cmd_build(args) -> None:
  from medpalm_m.data import synthetic
  timings = synthetic.build(args.data_dir)
  print(f"MultiMedBench-mini ready under {os.path.expanduser(args.data_dir)} "
        f"({sum(timings.values()):.1f}s)")


def cmd_show(args) -> None:
  """The mixture's first N training examples: prompt, target and images as PNG, plus index.jsonl."""
  from medpalm_m.data import mixtures, pipeline
  mixture = mixtures.normalize(_mixture(args.mixture), where=f"mixture {args.mixture}")
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "index.jsonl"), "w") as index:
    for i, example in enumerate(pipeline.first_examples(mixture, os.path.expanduser(args.data_dir), args.n)):
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
  build = sub.add_parser("build", help="build MultiMedBench-mini and its tokenizer")
  build.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
  show = sub.add_parser("show", help="write a mixture's first examples to a folder")
  show.add_argument("--data_dir", default=DEFAULT_DATA_DIR)
  show.add_argument("--mixture", default="synthetic")
  show.add_argument("--n", type=int, default=20)
  show.add_argument("--out", required=True)
  args = parser.parse_args(argv)
  sys.path.insert(0, os.getcwd())  # configs/ is importable from the repository root
  {"list": cmd_list, "build": cmd_build, "show": cmd_show}[args.command](args)


if __name__ == "__main__":
  main()

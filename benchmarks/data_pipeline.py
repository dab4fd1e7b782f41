"""Examples per second of the training input pipeline (read, format, tokenize, resize, batch).

    .venv/bin/python benchmarks/data_pipeline.py [--config=configs/tiny.py] [--batches=100] [--workers=0]

Builds MultiMedBench-mini under config.data.data_dir if it is missing, then times `--batches`
batches of the config's training stream after a warm-up batch, and prints the median of three
passes. Compare with the trainer's consumption (batch size x steps/s in metrics.jsonl).
"""

import argparse
import importlib.util
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from medpalm_m.data import mixtures, pipeline, preprocess  # noqa: E402
from medpalm_m.runtime import prepare_data, sequence_spec  # noqa: E402
from medpalm_m.model.medpalm import ModelConfig  # noqa: E402


def load_config(path):
  spec = importlib.util.spec_from_file_location("bench_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def config_from_command_line(parser: argparse.ArgumentParser):
  """(args, config) for a benchmark of one config's data: `parser` gains --config and --data_dir
  (which replaces config.data.data_dir)."""
  parser.add_argument("--config", default="configs/tiny.py")
  parser.add_argument("--data_dir", default=None)
  args = parser.parse_args()
  cfg = load_config(args.config)
  if args.data_dir:
    cfg.data.data_dir = args.data_dir
  return args, cfg


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--batches", type=int, default=100)
  parser.add_argument("--workers", type=int, default=0)
  args, cfg = config_from_command_line(parser)
  from absl import flags
  flags.FLAGS.mark_as_parsed()  # grain's worker processes read absl flags (defaults suffice)
  data_dir, tokenizer = prepare_data(cfg)
  mixture = mixtures.normalize(dict(cfg.data.mixture))
  model_cfg = ModelConfig.from_dict(cfg.model)
  pre = preprocess.Preprocessor(tokenizer, sequence_spec(cfg, model_cfg), pipeline.task_ids(list(mixture)))
  packing = pipeline.Packing.from_config(cfg.data)
  rates = []
  for trial in range(3):
    ds = pipeline.train_dataset(mixture, data_dir, pre, batch_size=cfg.train.batch_size, seed=trial,
                                num_workers=args.workers, packing=packing)
    it = iter(ds)
    next(it)
    start = time.perf_counter()
    examples = 0
    for _ in range(args.batches):
      batch = next(it)
      examples += int(batch["example_valid"].sum()) if packing else len(batch["tokens"])
    rates.append(examples / (time.perf_counter() - start))
  print(f"input pipeline: median {statistics.median(rates):.0f} examples/s over 3 passes of "
        f"{args.batches} batches of {cfg.train.batch_size} rows (workers={args.workers}, "
        f"packing {'on' if packing else 'off'}); passes: {', '.join(f'{r:.0f}' for r in rates)}")


if __name__ == "__main__":
  main()

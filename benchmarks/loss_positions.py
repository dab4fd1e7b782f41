"""The train step with the loss on every position against only the scoring ones, in one process.

    .venv/bin/python benchmarks/loss_positions.py [--config=configs/tiny.py] [--rounds=15] [--data_dir=DIR]

Builds two Trainers of the config, `config.train.loss_positions` "all" and "auto", compiles both,
then alternates one step of each per round on the same batches (alternating, so a machine whose
speed drifts slows both alike) and prints each one's median seconds per step and the median of the
per-round ratios.
"""

import argparse
import copy
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from benchmarks.data_pipeline import config_from_command_line  # noqa: E402
from medpalm_m.data import mixtures, pipeline, preprocess  # noqa: E402
from medpalm_m.runtime import prepare_data, sequence_spec  # noqa: E402
from medpalm_m.trainer import Trainer  # noqa: E402

VARIANTS = ("all", "auto")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--rounds", type=int, default=15)
  args, cfg = config_from_command_line(parser)
  data_dir, tokenizer = prepare_data(cfg)
  mixture = mixtures.normalize(dict(cfg.data.mixture))
  trainers = {}
  for variant in VARIANTS:
    variant_cfg = copy.deepcopy(cfg)
    variant_cfg.train.loss_positions = variant
    trainers[variant] = Trainer(variant_cfg, num_tasks=len(mixture))
  first = trainers[VARIANTS[0]]
  pre = preprocess.Preprocessor(tokenizer, sequence_spec(cfg, first.model_cfg),
                                pipeline.task_ids(list(mixture)))
  stream = iter(pipeline.train_dataset(
      mixture, data_dir, pre, batch_size=cfg.train.batch_size, seed=cfg.seed,
      packing=pipeline.Packing.from_config(cfg.data), upsampling=pipeline.Upsampling.from_config(cfg.data)))
  batches = [first.global_batch(next(stream)) for _ in range(args.rounds + 1)]
  states = {v: t.init_state() for v, t in trainers.items()}
  for variant, trainer in trainers.items():  # compile and warm up
    states[variant], metrics = trainer.train_step(states[variant], batches[0])
    jax.block_until_ready(metrics)
  seconds = {v: [] for v in trainers}
  for r in range(1, args.rounds + 1):
    for variant, trainer in trainers.items():
      start = time.perf_counter()
      states[variant], metrics = trainer.train_step(states[variant], batches[r])
      jax.block_until_ready(metrics)
      seconds[variant].append(time.perf_counter() - start)
  budget = trainers["auto"].loss_positions
  length = sequence_spec(cfg, first.model_cfg).length
  for variant in VARIANTS:
    runs = " ".join(f"{s:.3f}" for s in seconds[variant])
    print(f"loss_positions={variant}: {statistics.median(seconds[variant]):.3f} s/step (median of "
          f"{args.rounds}; runs {runs})")
  ratios = [a / b for a, b in zip(seconds["all"], seconds["auto"])]
  print(f"all / auto: {statistics.median(ratios):.3f}x (median of per-round ratios); 'auto' projects "
        f"{budget if budget is not None else length} of {length} positions a row")


if __name__ == "__main__":
  main()

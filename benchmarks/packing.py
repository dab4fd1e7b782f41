"""Training examples per second with and without packing, side by side in one process.

    .venv/bin/python benchmarks/packing.py [--config=configs/tiny.py] [--rounds=10] [--data_dir=DIR]

Builds the config's training stream twice (rows of one example; rows packed as
config.data.packing says), compiles the train step for both layouts, then alternates one step of
each per round on distinct batches and prints medians: seconds per step, examples per step,
examples per second, and the fraction of positions holding real tokens.
"""

import argparse
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


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--rounds", type=int, default=10)
  args, cfg = config_from_command_line(parser)
  packing = pipeline.Packing.from_config(cfg.data)
  if packing is None:
    raise SystemExit(f"{args.config} has config.data.packing off; nothing to compare")
  data_dir, tokenizer = prepare_data(cfg)
  mixture = mixtures.normalize(dict(cfg.data.mixture))
  trainer = Trainer(cfg, num_tasks=len(mixture))
  pre = preprocess.Preprocessor(tokenizer, sequence_spec(cfg, trainer.model_cfg),
                                pipeline.task_ids(list(mixture)))
  layouts = {"unpacked": None, "packed": packing}
  batches, examples, fill = {}, {}, {}
  for name, layout in layouts.items():
    it = iter(pipeline.train_dataset(mixture, data_dir, pre, batch_size=cfg.train.batch_size,
                                     seed=cfg.seed, packing=layout))
    host = [next(it) for _ in range(args.rounds + 1)]
    examples[name] = [int(b["example_valid"].sum()) if layout else len(b["tokens"]) for b in host]
    fill[name] = statistics.mean(float(b["input_mask"].mean()) for b in host)
    batches[name] = [trainer.global_batch(b) for b in host]
  state = trainer.init_state()
  for name in layouts:  # compile both, and warm up
    state, metrics = trainer.train_step(state, batches[name][0])
    jax.block_until_ready(metrics)
  seconds = {name: [] for name in layouts}
  for r in range(1, args.rounds + 1):
    for name in layouts:
      start = time.perf_counter()
      state, metrics = trainer.train_step(state, batches[name][r])
      jax.block_until_ready(metrics)
      seconds[name].append(time.perf_counter() - start)
  rate = {}
  for name in layouts:
    step = statistics.median(seconds[name])
    per_step = statistics.mean(examples[name][1:])
    rate[name] = statistics.median(e / s for e, s in zip(examples[name][1:], seconds[name]))
    print(f"{name:9s} {step:.3f} s/step (median of {args.rounds}), {per_step:.1f} examples/step, "
          f"{rate[name]:.1f} examples/s, {fill[name]:.0%} of positions are real tokens")
  print(f"packed / unpacked examples/s: {rate['packed'] / rate['unpacked']:.2f}x "
        f"({jax.devices()[0].device_kind}, batch {cfg.train.batch_size} x "
        f"{sequence_spec(cfg, trainer.model_cfg).length} tokens)")


if __name__ == "__main__":
  main()

"""Grafting (frozen ViT and decoder, trained adapter) against full fine-tuning: the cost of one
training step, side by side in one process.

    .venv/bin/python benchmarks/grafting.py [--full=configs/tiny.py] [--graft=configs/grafting.py] \\
      [--rounds=20] [--data_dir=DIR]

Compiles both configs' train steps and prints XLA's cost analysis (FLOPs) and memory analysis
(the state and batch the step takes, and the temporaries it allocates besides), then alternates
one step of each per round on the same batches and prints the median seconds per step. Both start
from their seeded initialisation: a step's cost does not depend on the values of the weights.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from benchmarks.data_pipeline import load_config  # noqa: E402
from medpalm_m import planning  # noqa: E402
from medpalm_m.data import mixtures, pipeline, preprocess  # noqa: E402
from medpalm_m.runtime import prepare_data  # noqa: E402
from medpalm_m.trainer import Trainer  # noqa: E402


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--full", default="configs/tiny.py")
  parser.add_argument("--graft", default="configs/grafting.py")
  parser.add_argument("--rounds", type=int, default=20)
  parser.add_argument("--data_dir", default=None)
  args = parser.parse_args()
  configs = {"full": load_config(args.full), "graft": load_config(args.graft)}
  for cfg in configs.values():
    if args.data_dir:
      cfg.data.data_dir = args.data_dir
  data_dir, tokenizer = prepare_data(configs["full"])
  mixture = mixtures.normalize(dict(configs["full"].data.mixture))
  trainers = {name: Trainer(cfg, num_tasks=len(mixture)) for name, cfg in configs.items()}
  specs = {name: t.runtime.spec for name, t in trainers.items()}
  if specs["full"] != specs["graft"]:
    raise SystemExit(f"the two configs lay out examples differently ({specs}); compare configs "
                     "whose decoder gets the same image tokens and sequence length")
  pre = preprocess.Preprocessor(tokenizer, specs["full"], pipeline.task_ids(list(mixture)))
  cfg = configs["full"]
  stream = iter(pipeline.train_dataset(mixture, data_dir, pre, batch_size=cfg.train.batch_size,
                                       seed=cfg.seed, packing=pipeline.Packing.from_config(cfg.data)))
  host = [next(stream) for _ in range(args.rounds + 1)]
  states, batches = {}, {}
  for name, trainer in trainers.items():
    compiled = planning.compiled_step(trainer)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    memory = compiled.memory_analysis()
    print(f"{name:5s} {trainer.num_trained:,} of {trainer.num_params:,} parameters trained; "
          f"XLA: {cost['flops'] / 1e9:.1f} GFLOP per step, arguments (state and batch) "
          f"{memory.argument_size_in_bytes / 2**20:.1f} MiB, temporaries "
          f"{memory.temp_size_in_bytes / 2**20:.1f} MiB")
    batches[name] = [trainer.global_batch(b) for b in host]
    states[name], metrics = trainer.train_step(trainer.init_state(), batches[name][0])  # warm up
    jax.block_until_ready(metrics)
  seconds = {name: [] for name in trainers}
  for r in range(1, args.rounds + 1):
    for name, trainer in trainers.items():
      start = time.perf_counter()
      states[name], metrics = trainer.train_step(states[name], batches[name][r])
      jax.block_until_ready(metrics)
      seconds[name].append(time.perf_counter() - start)
  median = {name: statistics.median(s) for name, s in seconds.items()}
  for name in trainers:
    print(f"{name:5s} {median[name]:.3f} s/step (median of {args.rounds})")
  print(f"graft / full seconds per step: {median['graft'] / median['full']:.2f} "
        f"({jax.devices()[0].device_kind}, {jax.device_count()} device(s), batch "
        f"{cfg.train.batch_size} x {specs['full'].length} tokens)")


if __name__ == "__main__":
  main()

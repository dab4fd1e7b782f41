"""Greedy decoding speed of a config's model as the evaluation runs it, at several batch sizes.

    .venv/bin/python benchmarks/decode.py [--config=configs/tiny.py] [--workdir=workdirs/tiny] \
        [--batch_sizes=1,16] [--task=synthetic_mimic_cxr_report] [--repeats=5]

Times `medpalm_m.evaluation.Evaluator.decode` (one jitted prefill + a scan over the KV cache, the
code `python -m medpalm_m.evaluate` runs) on real prompts of one task, after a compile-and-warm-up
call. The scan always runs `config.eval.max_decode_tokens` steps, so tokens/s counts every decoded
position (batch x max_decode_tokens per call), EOS or not. With --workdir the trained parameters
are used, otherwise fresh ones (the speed does not depend on their values).
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.data_pipeline import load_config  # noqa: E402
from medpalm_m import evaluation  # noqa: E402
from medpalm_m.data import pipeline, preprocess, tasks  # noqa: E402
from medpalm_m.model.template import ModelTemplate  # noqa: E402
from medpalm_m.runtime import Runtime, prepare_data, sequence_spec  # noqa: E402


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="configs/tiny.py")
  parser.add_argument("--workdir", default=None)
  parser.add_argument("--batch_sizes", default="1,16")
  parser.add_argument("--task", default="synthetic_mimic_cxr_report")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--data_dir", default=None)
  args = parser.parse_args()
  cfg = load_config(args.config)
  if args.data_dir:
    cfg.data.data_dir = args.data_dir
  data_dir, tokenizer = prepare_data(cfg)
  runtime = Runtime(cfg)
  model_cfg = runtime.model_cfg
  _, params = ModelTemplate.create(model_cfg, cfg.seed)
  if args.workdir:
    params, step = Runtime(cfg).restore_params(args.workdir)
    print(f"parameters of {args.workdir} at step {step}")
  task = tasks.get(args.task)
  preprocessor = preprocess.Preprocessor(tokenizer, sequence_spec(cfg, model_cfg), {args.task: 0})
  batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
  examples = list(pipeline.eval_examples(task, data_dir, "test", max_examples=max(batch_sizes), seed=0))
  features = [preprocessor(ex) for ex in examples]
  new_tokens = cfg.eval.max_decode_tokens
  sequence = sequence_spec(cfg, model_cfg)
  print(f"{args.config}: {model_cfg.num_params()['total'] / 1e6:.2f}M parameters, prompts of "
        f"{sequence.max_prompt_tokens} positions ({model_cfg.num_image_tokens} image tokens), "
        f"{new_tokens} new tokens, task {args.task}")
  for b in batch_sizes:
    cfg.eval.batch_size = b
    evaluator = evaluation.Evaluator(runtime, tokenizer)
    chunk = features[:b]
    evaluator.decode(params, chunk)  # compile and warm up
    times = []
    for _ in range(args.repeats):
      start = time.perf_counter()
      evaluator.decode(params, chunk)
      times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"batch {b:3d}: median {median * 1000:.0f} ms per call = {b * new_tokens / median:.0f} tokens/s "
          f"({', '.join(f'{t * 1000:.0f}' for t in times)} ms)")


if __name__ == "__main__":
  main()

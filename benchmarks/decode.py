"""Greedy decoding speed of a config's model as the evaluation runs it, at several batch sizes.

    .venv/bin/python benchmarks/decode.py [--config=configs/tiny.py] [--workdir=workdirs/tiny] \
        [--batch_sizes=1,16] [--task=synthetic_mimic_cxr_report] [--repeats=5]

Times `medpalm_m.evaluation.Evaluator.decode` (one jitted prefill + a while loop over the KV cache,
the code `python -m medpalm_m.evaluate` runs) on real prompts of one task, after a compile-and-warm-up
call. Decoding stops when every row of the batch has produced EOS, or after the task's limit (its
longest option plus EOS for a task with options, else config.eval.max_decode_tokens), so the time
per call is what evaluating that task costs; tokens/s counts the tokens up to and including each
row's EOS. With --workdir the trained parameters are used, otherwise fresh ones (which rarely
produce EOS, so every call runs to the limit).
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.data_pipeline import config_from_command_line  # noqa: E402
from medpalm_m import evaluation  # noqa: E402
from medpalm_m.data import pipeline, preprocess, tasks, tokenizer as tok  # noqa: E402
from medpalm_m.model.template import ModelTemplate  # noqa: E402
from medpalm_m.runtime import Runtime, prepare_data, sequence_spec  # noqa: E402


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", default=None)
  parser.add_argument("--batch_sizes", default="1,16")
  parser.add_argument("--task", default="synthetic_mimic_cxr_report")
  parser.add_argument("--repeats", type=int, default=5)
  args, cfg = config_from_command_line(parser)
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
  sequence = sequence_spec(cfg, model_cfg)
  print(f"{args.config}: {model_cfg.num_params()['total'] / 1e6:.2f}M parameters, prompts of "
        f"{sequence.max_prompt_tokens} positions ({model_cfg.num_image_tokens} image tokens), "
        f"at most {cfg.eval.max_decode_tokens} new tokens, task {args.task}")
  continuations = [preprocessor.target_ids(option)[0] for option in task.options or ()]
  for b in batch_sizes:
    cfg.eval.batch_size = b
    evaluator = evaluation.Evaluator(runtime, tokenizer)
    limit = evaluator.decode_limit(continuations)
    chunk = features[:b]
    generated = evaluator.decode(params, chunk, limit)  # compile and warm up
    # Up to and including each row's EOS; a row cut at the limit is EOS-filled from there on.
    decoded = sum(min(row.index(tok.EOS_ID) + 1 if tok.EOS_ID in row else len(row), limit)
                  for row in generated)
    times = []
    for _ in range(args.repeats):
      start = time.perf_counter()
      evaluator.decode(params, chunk, limit)
      times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"batch {b:3d}: median {median * 1000:.0f} ms per call = {decoded / median:.0f} tokens/s "
          f"({decoded} tokens, limit {limit}; {', '.join(f'{t * 1000:.0f}' for t in times)} ms)")


if __name__ == "__main__":
  main()

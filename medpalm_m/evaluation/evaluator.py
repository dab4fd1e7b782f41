"""Evaluate parameters on the benchmark, as the paper does: greedy decoding scored with each task's
metrics; classification AUC from option log-likelihoods.

    report = evaluate(cfg, workdir)       # the latest checkpoint; writes eval/step_N.json

The report is {"step": N, "split": ..., "tasks": {task: {metric: value, "n": count,
"baseline": {metric: value}}}}, values in percent; `medpalm_m.evaluation.report` formats it.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Sequence

import jax
import numpy as np
import scipy.special
from absl import logging

from medpalm_m import runtime as runtime_lib
from medpalm_m.data import pipeline, preprocess, tasks as tasks_lib
from medpalm_m.data import tokenizer as tok
from medpalm_m.evaluation import report as report_lib
from medpalm_m.evaluation import scoring
from medpalm_m.model import decode
from medpalm_m.model.template import ModelTemplate


class Evaluator:
  """Compiled decoding and option scoring for one model config; reused across calls, so a second
  evaluation compiles nothing new. Greedy decoding of config.eval.max_decode_tokens by default."""

  def __init__(self, cfg, template: ModelTemplate, tokenizer: tok.Tokenizer, spec: preprocess.SequenceSpec,
               *, sampling: decode.SamplingConfig | None = None, beam_width: int = 1,
               batch_size: int | None = None):
    self.cfg, self.template, self.tokenizer, self.spec = cfg, template, tokenizer, spec
    self.batch_size = batch_size or cfg.eval.batch_size
    self.sampling = sampling or decode.SamplingConfig(max_new_tokens=cfg.eval.max_decode_tokens)
    self.beam_width = beam_width
    self.decode_batch = jax.jit(self._decode_fn)
    self._score = jax.jit(self._score_fn)

  def _decode_fn(self, params, batch, key=None):
    """(new tokens [B, max_new_tokens], their log-probs [B, max_new_tokens] or None for beams)."""
    model = self.template.bind(params)
    prompt = decode.prompt_only(batch["tokens"], batch["prompt_length"], tok.PAD_ID)
    if self.beam_width > 1:
      new_tokens, _ = decode.beam_search(model, prompt, batch["images"], batch["prompt_length"],
                                         batch["mask_ar"], self.sampling.max_new_tokens,
                                         self.beam_width, tok.EOS_ID)
      return new_tokens, None
    return decode.generate(model, prompt, batch["images"], batch["prompt_length"], batch["mask_ar"],
                           self.sampling, tok.EOS_ID, key)

  def _score_fn(self, params, batch):
    model = self.template.bind(params)
    return decode.score_continuations(model, batch["tokens"], batch["images"], batch["input_mask"],
                                      batch["mask_ar"], batch["mask_loss"])

  def _batches(self, features: list[dict]):
    """Fixed-size batches (the last one padded with copies), so shapes never change."""
    for start in range(0, len(features), self.batch_size):
      chunk = features[start:start + self.batch_size]
      real = len(chunk)
      chunk = chunk + [chunk[-1]] * (self.batch_size - real)
      yield preprocess.collate(chunk), real

  def decode(self, params, features: list[dict]) -> list[list[int]]:
    """The new token ids of every example (EOS-padded to max_new_tokens)."""
    out = []
    for batch, real in self._batches(features):
      new_tokens, _ = self.decode_batch(params, batch)
      out.extend(np.asarray(new_tokens)[:real].tolist())
    return out

  def option_probabilities(self, params, preprocessor, examples: list[dict], options: Sequence[str]) -> np.ndarray:
    """Normalised likelihood of each option's text as the answer: [N, num_options]."""
    features = [preprocessor({**ex, "target": option}) for ex in examples for option in options]
    scores = []
    for batch, real in self._batches(features):
      scores.extend(np.asarray(self._score(params, batch))[:real].tolist())
    scores = np.asarray(scores).reshape(len(examples), len(options))
    return scipy.special.softmax(scores, axis=1)

  def evaluate_task(self, params, task: tasks_lib.Task, data_dir: str, split: str,
                    task_ids: dict[str, int]) -> tuple[dict[str, Any], list[dict]]:
    preprocessor = preprocess.Preprocessor(self.tokenizer, self.spec, task_ids)
    examples = list(pipeline.eval_examples(task, data_dir, split,
                                           max_examples=self.cfg.eval.max_examples_per_task,
                                           seed=self.cfg.seed))
    features = [preprocessor(ex) for ex in examples]
    generated = self.decode(params, features)
    predictions = [task.postprocess(self.tokenizer.decode(ids)) for ids in generated]
    targets = [ex["target"] for ex in examples]
    probs = None
    if task.options and "macro_auc" in task.metrics:
      probs = self.option_probabilities(params, preprocessor, examples, task.options)
    counts = {k: int(sum(bool(f[k]) for f in features))
              for k in ("prompt_truncated", "target_truncated", "dropped")}
    result = scoring.score_grouped(task, examples, predictions, targets, probs, self.cfg)
    result.update({"n": len(examples), **{k: v for k, v in counts.items() if v}})
    if self.cfg.eval.bootstrap:
      result["margin_ci95"] = scoring.bootstrap_margin(task, examples, predictions, targets, probs,
                                                       self.cfg, self.cfg.eval.bootstrap,
                                                       seed=self.cfg.seed)
    records = [{"id": ex["id"], "prompt": ex["prompt"], "target": t, "prediction": p}
               for ex, t, p in zip(examples, targets, predictions)]
    return result, records


def evaluate(cfg, workdir: str, *, step: int | None = None, task_names: Sequence[str] | None = None,
             split: str | None = None, params=None, runtime: runtime_lib.Runtime | None = None,
             evaluator: Evaluator | None = None) -> dict[str, Any]:
  """Evaluate `params` (default: the workdir's checkpoint `step`, else its latest) on every task
  of the mixture (or `task_names`); writes and returns the report."""
  workdir = os.path.abspath(workdir)
  split = split or cfg.eval.split
  data_dir, tokenizer = runtime_lib.prepare_data(cfg)
  runtime = runtime or runtime_lib.Runtime(cfg)
  if params is None:
    params, step = runtime.restore_params(workdir, step)
  elif step is None:
    raise ValueError("evaluate(params=...) needs the step the parameters come from")
  task_names = list(task_names or sorted(cfg.data.mixture))
  task_ids = pipeline.task_ids(task_names)
  evaluator = evaluator or Evaluator(cfg, runtime.template, tokenizer, runtime.spec)
  results, start = {}, time.perf_counter()
  for name in task_names:
    task = tasks_lib.get(name)
    t0 = time.perf_counter()
    results[name], records = evaluator.evaluate_task(params, task, data_dir, split, task_ids)
    logging.info("evaluated %s (%d examples) in %.1fs", name, results[name]["n"], time.perf_counter() - t0)
    if cfg.eval.write_predictions and jax.process_index() == 0:
      directory = os.path.join(workdir, "eval", f"predictions_step_{step}")
      os.makedirs(directory, exist_ok=True)
      with open(os.path.join(directory, f"{name}.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
  report = {"step": int(step), "split": split, "wall_time_sec": time.perf_counter() - start,
            "tasks": results}
  return report_lib.write_report(report, report_lib.report_path(workdir, step, split, cfg.eval.split))

"""Evaluate a checkpoint on every task of the benchmark, as the paper does: greedy generation,
scored with each task's metrics; classification AUC from option log-likelihoods.

    python -m medpalm_m.evaluate --config=configs/tiny.py --workdir=DIR [--step=N] [--tasks=a,b] [--split=test]

Writes DIR/eval/step_N.json = {"step": N, "tasks": {task: {metric: value, "n": count,
"baseline": {metric: value}}}} (values in percent; the baseline is the majority-class or
most-frequent-answer score of the same metric on the same examples) and prints the table with
the paper's numbers beside ours. `--tasks` re-evaluates those tasks and keeps the step's other
results; a split other than config.eval.split is written to DIR/eval/step_N_<split>.json.
Predictions (medical text) are written only when asked (config.eval.write_predictions).
`--config.eval.bootstrap=N` adds each metric's 95% paired-bootstrap interval of ours - baseline
("margin_ci95"; N resamples of the examples), so that "above the baseline" can be told from luck.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import sys
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
from absl import app, flags, logging
from ml_collections import config_flags

from medpalm_m import checkpoint as ckpt_lib
from medpalm_m import metrics as metrics_lib
from medpalm_m import paper_results
from medpalm_m.data import pipeline, preprocess, tasks as tasks_lib
from medpalm_m.data import tokenizer as tok
from medpalm_m.model import decode
from medpalm_m.model.state import ModelTemplate

class Evaluator:
  """Compiled generation and option scoring for one model config; reused across calls, so a
  second evaluation compiles nothing new."""

  def __init__(self, cfg, template: ModelTemplate, tokenizer: tok.Tokenizer, spec: preprocess.SequenceSpec):
    self.cfg, self.template, self.tokenizer, self.spec = cfg, template, tokenizer, spec
    self.batch_size = cfg.eval.batch_size
    self.sampling = decode.SamplingConfig(max_new_tokens=cfg.eval.max_decode_tokens)
    self._generate = jax.jit(self._generate_fn)
    self._score = jax.jit(self._score_fn)

  def _generate_fn(self, params, batch):
    model = self.template.bind(params)
    positions = jnp.arange(batch["tokens"].shape[1])[None, :]
    prompt_only = jnp.where(positions < batch["prompt_length"][:, None], batch["tokens"], tok.PAD_ID)
    return decode.generate(model, prompt_only, batch["images"], batch["prompt_length"],
                           batch["mask_ar"], self.sampling, tok.EOS_ID)

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

  def generate(self, params, features: list[dict]) -> list[list[int]]:
    out = []
    for batch, real in self._batches(features):
      new_tokens, _ = self._generate(params, batch)
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
    generated = self.generate(params, features)
    predictions = [task.postprocess(self.tokenizer.decode(ids)) for ids in generated]
    targets = [ex["target"] for ex in examples]
    probs = None
    if task.options and "macro_auc" in task.metrics:
      probs = self.option_probabilities(params, preprocessor, examples, task.options)
    counts = {k: int(sum(bool(f[k]) for f in features))
              for k in ("prompt_truncated", "target_truncated", "dropped")}
    result = score_grouped(task, examples, predictions, targets, probs, self.cfg)
    result.update({"n": len(examples), **{k: v for k, v in counts.items() if v}})
    resamples = int(self.cfg.eval.get("bootstrap", 0) or 0)
    if resamples:
      result["margin_ci95"] = bootstrap_margin(task, examples, predictions, targets, probs, self.cfg,
                                               resamples, seed=self.cfg.seed)
    records = [{"id": ex["id"], "prompt": ex["prompt"], "target": t, "prediction": p}
               for ex, t, p in zip(examples, targets, predictions)]
    return result, records


def _condition_groups(examples) -> dict[str, list[int]]:
  """Example indices per condition (MIMIC-CXR classification); one group when none is named."""
  groups: dict[str, list[int]] = collections.defaultdict(list)
  for i, ex in enumerate(examples):
    groups[ex.get("condition", "")].append(i)
  return groups


def score_grouped(task, examples, predictions, targets, probs, cfg) -> dict[str, Any]:
  """Task metrics and baseline; averaged over conditions when examples name one (MIMIC-CXR
  classification is reported as the mean over its 5 conditions, as in the paper)."""
  if "options" in examples[0]:
    predictions, targets = _as_option_letters(examples, predictions)
    task = dataclasses.replace(task, options=tuple(_LETTERS[:max(len(e["options"]) for e in examples)]))
  groups = _condition_groups(examples)
  scorer_paths = dict(cfg.eval.get("scorer_paths", {}) or {})
  per_group, per_group_baseline = [], []
  for indices in groups.values():
    kwargs = dict(options=list(task.options) if task.options else None,
                  variant_types=([examples[i]["variant_type"] for i in indices]
                                 if "variant_type" in examples[indices[0]] else None))
    per_group.append(metrics_lib.score(
        task.metrics, [predictions[i] for i in indices], [targets[i] for i in indices],
        option_probs=probs[indices] if probs is not None else None, scorer_paths=scorer_paths, **kwargs))
    per_group_baseline.append(metrics_lib.baseline(task.metrics, [targets[i] for i in indices],
                                                   scorer_paths=scorer_paths, **kwargs))
  return {**_mean(per_group), "baseline": _mean(per_group_baseline)}


def bootstrap_margin(task, examples, predictions, targets, probs, cfg, resamples: int,
                     seed: int = 0) -> dict[str, list[float]]:
  """95% interval of (ours - baseline) per numeric metric, by the paired bootstrap: resample the
  examples with replacement (within each condition where the task averages over conditions),
  score our predictions and the baseline on the same resample (the baseline's constant answer is
  re-chosen on each resample, as a majority-class predictor fitted to it would be, which counts
  against us where the majority is close to a tie), take the 2.5th and
  97.5th percentiles of the difference. A lower end above 0 says the model beats the baseline by
  more than the luck of drawing these n examples; corpus metrics (BLEU, CIDEr-D) and AUC have no
  closed-form standard error, which is why this resamples instead.
  """
  rng = np.random.default_rng(seed)
  groups = _condition_groups(examples)
  differences: dict[str, list[float]] = collections.defaultdict(list)
  for _ in range(resamples):
    picked = np.concatenate([rng.choice(indices, size=len(indices)) for indices in groups.values()])
    result = score_grouped(task, [examples[i] for i in picked], [predictions[i] for i in picked],
                           [targets[i] for i in picked], probs[picked] if probs is not None else None, cfg)
    for metric, value in result.items():
      base = result["baseline"].get(metric) if metric != "baseline" else None
      if isinstance(value, float) and isinstance(base, float):
        differences[metric].append(value - base)
  return {metric: [float(np.nanpercentile(d, 2.5)), float(np.nanpercentile(d, 97.5))]
          for metric, d in differences.items() if not np.all(np.isnan(d))}


_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _as_option_letters(examples, predictions) -> tuple[list[str], list[str]]:
  """Multiple choice with different options per question (MedQA, MedMCQA): map each answer to
  the letter of the option it names ("(C) zorivax", "C" or "zorivax" all count as C)."""
  letters_pred, letters_target = [], []
  for ex, prediction in zip(examples, predictions):
    index = metrics_lib.parse_choice(prediction, ex["options"])
    letters_pred.append(_LETTERS[index] if index is not None else prediction)
    letters_target.append(_LETTERS[ex["label"]])
  return letters_pred, letters_target


def _mean(results: list[dict[str, Any]]) -> dict[str, Any]:
  out = {}
  for key in results[0]:
    values = [r[key] for r in results]
    if all(isinstance(v, (int, float)) for v in values):
      finite = [v for v in values if not math.isnan(v)]
      out[key] = float(np.mean(finite)) if finite else float("nan")
    else:
      out[key] = values[0]  # e.g. "skipped: needs local weights at ..."
  return out


def load_params(cfg, workdir: str, step: int | None):
  from medpalm_m.train import Trainer
  trainer = Trainer(cfg, num_tasks=1)
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
  step = step if step is not None else checkpointer.latest_step()
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {checkpointer.directory}; train first "
                            f"(python -m medpalm_m.train --workdir={workdir} ...)")
  state, _ = checkpointer.restore(step, trainer.abstract_state, None, trainer.abstract_state["params"])
  checkpointer.close()
  return trainer, state["params"], step


def evaluate(cfg, workdir: str, *, step: int | None = None, task_names: Sequence[str] | None = None,
             split: str | None = None, params=None, trainer=None, evaluator: Evaluator | None = None
             ) -> dict[str, Any]:
  from medpalm_m.train import prepare_data, sequence_spec
  workdir = os.path.abspath(workdir)
  split = split or cfg.eval.split
  data_dir, tokenizer = prepare_data(cfg)
  if params is None:
    trainer, params, step = load_params(cfg, workdir, step)
  elif step is None:
    raise ValueError("evaluate(params=...) needs the step the parameters come from")
  task_names = list(task_names or sorted(cfg.data.mixture))
  task_ids = pipeline.task_ids(task_names)
  evaluator = evaluator or Evaluator(cfg, trainer.template, tokenizer, sequence_spec(cfg, trainer.model_cfg))
  results, start = {}, time.perf_counter()
  for name in task_names:
    task = tasks_lib.get(name)
    t0 = time.perf_counter()
    results[name], records = evaluator.evaluate_task(params, task, data_dir, split, task_ids)
    logging.info("evaluated %s (%d examples) in %.1fs", name, results[name]["n"], time.perf_counter() - t0)
    if cfg.eval.write_predictions and jax.process_index() == 0:
      os.makedirs(os.path.join(workdir, "eval", f"predictions_step_{step}"), exist_ok=True)
      with open(os.path.join(workdir, "eval", f"predictions_step_{step}", f"{name}.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
  report = {"step": int(step), "split": split, "wall_time_sec": time.perf_counter() - start,
            "tasks": results}
  # The config's split is the step's report; another split (--split=train) goes beside it, so
  # that neither overwrites the other.
  suffix = "" if split == cfg.eval.split else f"_{split}"
  path = os.path.join(workdir, "eval", f"step_{step}{suffix}.json")
  if os.path.exists(path):
    # Evaluating some tasks again (--tasks) updates them and keeps the step's other results.
    with open(path) as f:
      report["tasks"] = {**json.load(f).get("tasks", {}), **results}
  if jax.process_index() == 0:
    os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
    with open(path, "w") as f:
      json.dump(report, f, indent=2, sort_keys=True)
  return report


def format_table(report: dict[str, Any]) -> str:
  with_ci = any("margin_ci95" in result for result in report["tasks"].values())
  header = ["task", "metric", "n", "ours", "baseline", *(["ours-baseline 95% CI"] if with_ci else []),
            *paper_results.COLUMNS]
  rows = []
  for name, result in sorted(report["tasks"].items()):
    paper_task = tasks_lib.get(name).paper_task
    for metric in tasks_lib.get(name).metrics:
      value = result.get(metric)
      paper = paper_results.PAPER.get(paper_task or "", {}).get(metric, (None,) * 4)
      interval = result.get("margin_ci95", {}).get(metric)
      ci = ([f"[{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "-"] if with_ci else [])
      rows.append([name, metric, str(result["n"]), _fmt(value), _fmt(result["baseline"].get(metric)),
                   *ci, *(_fmt(v) for v in paper)])
  widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
  line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))
  out = [f"MultiMedBench results at step {report['step']} ({report['split']} split); "
         "paper columns: the real task this one stands in for (Tu et al. 2023, Table 2)",
         line(header), line(["-" * w for w in widths])]
  beaten, compared = baseline_summary(report)
  summary = f"above the baseline on {beaten} of {compared} scored metrics"
  if with_ci:
    clear = sum(interval[0] > 0 for result in report["tasks"].values()
                for interval in result.get("margin_ci95", {}).values())
    summary += f"; on {clear} the whole 95% interval of ours-baseline is above 0"
  return "\n".join(out + [line(r) for r in rows] + [summary])


def baseline_summary(report: dict[str, Any]) -> tuple[int, int]:
  """How many numeric metrics beat their baseline (skipped scorers are not counted)."""
  beaten = compared = 0
  for name, result in report["tasks"].items():
    for metric in tasks_lib.get(name).metrics:
      ours, base = result.get(metric), result["baseline"].get(metric)
      if isinstance(ours, float) and isinstance(base, float) and not (math.isnan(ours) or math.isnan(base)):
        compared += 1
        beaten += ours > base
  return beaten, compared


def _fmt(value) -> str:
  if value is None:
    return "-"
  if isinstance(value, str):
    return "skipped" if value.startswith("skipped") else value
  return "nan" if math.isnan(value) else f"{value:.2f}"


def main(argv) -> None:
  del argv
  from medpalm_m.train import quiet_libraries
  FLAGS = flags.FLAGS
  if FLAGS.workdir is None or FLAGS.config is None:
    raise app.UsageError("--config and --workdir are required")
  quiet_libraries()
  try:
    report = evaluate(FLAGS.config, FLAGS.workdir, step=FLAGS.step, task_names=FLAGS.tasks,
                      split=FLAGS.split)
  except (FileNotFoundError, KeyError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  if jax.process_index() == 0:
    print(format_table(report))
    print(f"wrote {os.path.join(os.path.abspath(FLAGS.workdir), 'eval', 'step_%d.json' % report['step'])} "
          f"({report['wall_time_sec']:.0f}s)")


if __name__ == "__main__":
  config_flags.DEFINE_config_file("config", None, "Path to an ml-collections config file.")
  flags.DEFINE_string("workdir", None, "Training workdir holding checkpoints/.")
  flags.DEFINE_integer("step", None, "Checkpoint step; default: the latest.")
  flags.DEFINE_list("tasks", None, "Tasks to evaluate; default: every task of the mixture.")
  flags.DEFINE_string("split", None, "Split; default: config.eval.split.")
  app.run(main)

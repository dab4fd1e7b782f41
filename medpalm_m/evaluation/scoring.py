"""Scoring an evaluated task: grouping by condition, option letters, the bootstrap margin.

A task's metrics are computed per condition and averaged where its examples name one (MIMIC-CXR
classification, as in the paper); multiple choice with different options per question is scored
on option letters; `bootstrap_margin` says whether ours beats the baseline by more than luck.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import warnings
from typing import Any

import numpy as np

from medpalm_m import metrics as metrics_lib
from medpalm_m.data import prompts
from medpalm_m.data.genomics import truth_set
from medpalm_m.evaluation import resampling


def condition_groups(examples) -> dict[str, list[int]]:
  """Example indices per condition (MIMIC-CXR classification); one group when none is named."""
  groups: dict[str, list[int]] = collections.defaultdict(list)
  for i, ex in enumerate(examples):
    groups[ex.get("condition", "")].append(i)
  return groups


def score_grouped(task, examples, predictions, targets, probs, cfg,
                  truth_without_example: metrics_lib.Alleles | str | None = None) -> dict[str, Any]:
  """Task metrics and baseline; averaged over conditions when examples name one (MIMIC-CXR
  classification is reported as the mean over its 5 conditions, as in the paper).
  `truth_without_example`: a genomics split's truth variants without an example, or why they
  are unknown (`split_truth`), for the truth-set F1."""
  if "options" in examples[0]:
    predictions, targets = as_option_letters(examples, predictions)
    task = dataclasses.replace(task, options=tuple(prompts.option_letter(i) for i in range(max(len(e["options"]) for e in examples))))
  groups = condition_groups(examples)
  scorer_paths = dict(cfg.eval.scorer_paths)
  per_group, per_group_baseline = [], []
  for indices in groups.values():
    kwargs = dict(options=list(task.options) if task.options else None,
                  variant_types=([examples[i]["variant_type"] for i in indices]
                                 if "variant_type" in examples[indices[0]] else None),
                  loci=[examples[i]["locus"] for i in indices] if "locus" in examples[indices[0]] else None,
                  truth_without_example=truth_without_example)
    per_group.append(metrics_lib.score(
        task.metrics, [predictions[i] for i in indices], [targets[i] for i in indices],
        option_probs=probs[indices] if probs is not None else None, scorer_paths=scorer_paths, **kwargs))
    per_group_baseline.append(metrics_lib.baseline(task.metrics, [targets[i] for i in indices],
                                                   scorer_paths=scorer_paths, **kwargs))
  return {**_mean(per_group), "baseline": _mean(per_group_baseline)}


def bootstrap_margin(task, examples, predictions, targets, probs, cfg, resamples: int,
                     seed: int = 0, rescore_every_metric: bool = False) -> dict[str, list[float]]:
  """95% interval of (ours - baseline) per numeric metric, by the paired bootstrap: resample the
  examples with replacement (within each condition where the task averages over conditions),
  score our predictions and the baseline on the same resample (the baseline's constant answer is
  re-chosen on each resample, as a majority-class predictor fitted to it would be, which counts
  against us where the majority is close to a tie), take the 2.5th and
  97.5th percentiles of the difference. A lower end above 0 says the model beats the baseline by
  more than the luck of drawing these n examples; corpus metrics (BLEU, CIDEr-D) and AUC have no
  closed-form standard error, which is why this resamples instead.

  Metrics that are functions of sums over examples are computed for every resample at once
  (`resampling`); the others, and all of them with `rescore_every_metric` (the reference the
  vectorised path is tested against), are rescored resample by resample. Both see the same draws.
  """
  groups = list(condition_groups(examples).values())
  rng = np.random.default_rng(seed)
  picks = [[rng.choice(indices, size=len(indices)) for indices in groups] for _ in range(resamples)]
  by_group = [np.stack([picked[g] for picked in picks]) for g in range(len(groups))]  # [R, n_g] each
  differences = {} if rescore_every_metric else _vectorised_differences(task, examples, predictions, targets,
                                                                       probs, groups, by_group)
  # Metrics that resampling has no meaning for (the truth-set F1) get no interval.
  rest = [m for m in task.metrics if m not in differences and metrics_lib.METRICS[m].resampled]
  if rest:
    differences.update(_rescored_differences(dataclasses.replace(task, metrics=tuple(rest)), examples,
                                             predictions, targets, probs, cfg, picks))
  return {metric: [float(np.nanpercentile(d, 2.5)), float(np.nanpercentile(d, 97.5))]
          for metric, d in differences.items() if not np.all(np.isnan(d))}


def _rescored_differences(task, examples, predictions, targets, probs, cfg,
                          picks: list[list[np.ndarray]]) -> dict[str, list[float]]:
  """ours - baseline of each resample (its per-condition picks), scored from scratch."""
  differences: dict[str, list[float]] = collections.defaultdict(list)
  for per_group in picks:
    picked = np.concatenate(per_group)
    result = score_grouped(task, [examples[i] for i in picked], [predictions[i] for i in picked],
                           [targets[i] for i in picked], probs[picked] if probs is not None else None, cfg)
    for metric, value in result.items():
      base = result["baseline"].get(metric) if metric != "baseline" else None
      if isinstance(value, float) and isinstance(base, float):
        differences[metric].append(value - base)
  return differences


def _vectorised_differences(task, examples, predictions, targets, probs, groups: list[list[int]],
                            by_group: list[np.ndarray]) -> dict[str, np.ndarray]:
  """ours - baseline [R] of the metrics `resampling` computes from sums, each the mean over
  conditions (NaN ones left out) as score_grouped averages them."""
  options = list(task.options) if task.options else None
  if "options" in examples[0]:
    counts = {len(e["options"]) for e in examples}
    if len(counts) > 1:
      return {}  # a resample's option letters depend on which questions it drew: rescore
    predictions, targets = as_option_letters(examples, predictions)
    options = [prompts.option_letter(i) for i in range(counts.pop())]
  per_metric: dict[str, list[np.ndarray]] = collections.defaultdict(list)
  for indices, picks in zip(groups, by_group):
    position = {index: p for p, index in enumerate(indices)}
    variant_types = ([examples[i]["variant_type"] for i in indices]
                     if "variant_type" in examples[indices[0]] else None)
    scores = resampling.resampled_scores(
        task.metrics, [predictions[i] for i in indices], [targets[i] for i in indices],
        np.vectorize(position.__getitem__, otypes=[int])(picks), options=options,
        option_probs=probs[indices] if probs is not None else None, variant_types=variant_types)
    for metric, (ours, baseline) in scores.items():
      per_metric[metric].append(np.stack([ours, baseline]))
  differences = {}
  for metric, values in per_metric.items():
    if len(values) < len(groups):
      continue
    with np.errstate(all="ignore"), warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)  # a metric undefined in every condition: NaN
      ours, baseline = np.nanmean(np.stack(values), axis=0)
    differences[metric] = ours - baseline
  return differences


def split_truth(task, data_dir: str, split: str, scored: int) -> metrics_lib.Alleles | str | None:
  """What the truth-set F1 needs of a task's split beyond its examples: the truth variants its
  prepared dataset records as having no example (`data.genomics.truth_set`), when all of the
  split's examples are `scored`; else why not (the figure is then skipped). None for a task
  without truth-set metrics."""
  if not any("truth_without_example" in metrics_lib.METRICS[m].needs for m in task.metrics):
    return None
  builder = task.builder(data_dir=data_dir)
  split_name = task.split_name(split)
  recorded = truth_set.without_example(builder.info.metadata or {}, split_name)
  if recorded is None:
    return (f"the prepared {builder.name} data ({builder.data_dir}) records no truth set for split "
            f"{split_name!r}: it was built before builds recorded one; delete that folder and build "
            "again to get the truth-set F1")
  total = builder.info.splits[split_name].num_examples
  if scored != total:
    return (f"scores {scored} of the {total} candidates of split {split_name!r} "
            "(eval.max_examples_per_task); the truth set needs every candidate")
  return recorded


def unparseable(task, examples, predictions) -> int:
  """How many answers of a multiple-choice task name none of its options (each is scored wrong:
  a chain of thought that never states its answer, a reply off the option list); 0 for a task
  without options."""
  if "options" in examples[0]:
    option_lists = [ex["options"] for ex in examples]
  elif task.options:
    option_lists = [task.options] * len(examples)
  else:
    return 0
  return sum(metrics_lib.parse_choice(p, options) is None for p, options in zip(predictions, option_lists))


def as_option_letters(examples, predictions) -> tuple[list[str], list[str]]:
  """Multiple choice with different options per question (MedQA, MedMCQA): map each answer to
  the letter of the option it names ("(C) zorivax", "C" or "zorivax" all count as C)."""
  letters_pred, letters_target = [], []
  for ex, prediction in zip(examples, predictions):
    index = metrics_lib.parse_choice(prediction, ex["options"])
    letters_pred.append(prompts.option_letter(index) if index is not None else prediction)
    letters_target.append(prompts.option_letter(ex["label"]))
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



"""Metrics of many bootstrap resamples at once, from the matrix of how often each was drawn.

A resample of n examples is a row of counts [n] (how many times each example was drawn); R of
them are a matrix [R, n]. A metric that is a function of sums over examples (a mean of
per-example scores, a confusion count, corpus BLEU's n-gram counts) is then that function of
`counts @ statistics`, one matrix product for every resample; ROC-AUC is one from weighted rank
sums, and CIDEr-D, whose IDF comes from each resample's own references, a sparse product per
n-gram order with each resample's squared IDF. The baseline, the constant answer refitted to each
resample as `metrics.baseline` fits it, is the same function of the constant's statistics. The
clinical scorers, which run models, are left to rescoring resample by resample
(`scoring.bootstrap_margin`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from medpalm_m import metrics as metrics_lib
from medpalm_m.metrics import text
from medpalm_m.metrics.choice import normalize_choice, parse_predictions, parse_targets
from medpalm_m.metrics.genomics import GENOTYPE_OPTIONS

# Metrics whose value on a set is the mean of their value on each example alone.
_MEANS_OF_EXAMPLES = ("token_f1", "rouge_l", "bleu1_sentence")


@dataclasses.dataclass(frozen=True)
class _Decomposed:
  """A metric as per-example statistics [n, S] of (predictions, targets) and a function of
  their sums [..., S] (NaN where the metric is undefined)."""
  statistics: Callable[[Sequence[str], Sequence[str]], np.ndarray]
  value: Callable[[np.ndarray], np.ndarray]


def _ratio(numerator: np.ndarray, denominator: np.ndarray, empty: float) -> np.ndarray:
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), empty)


def _f1_counts(y_pred: np.ndarray, y_true: np.ndarray, classes: Sequence[int]) -> np.ndarray:
  """TP, FP, FN of each class, per example [n, 3 * len(classes)]."""
  columns = []
  for k in classes:
    columns += [(y_pred == k) & (y_true == k), (y_pred == k) & (y_true != k), (y_pred != k) & (y_true == k)]
  return np.stack(columns, axis=1).astype(float)


def _mean_f1(totals: np.ndarray) -> np.ndarray:
  """The mean over classes of 2TP / (2TP + FP + FN), 0 for a class with none (sklearn's
  zero_division=0), from _f1_counts sums."""
  tp, fp, fn = totals[..., 0::3], totals[..., 1::3], totals[..., 2::3]
  return 100.0 * _ratio(2 * tp, 2 * tp + fp + fn, 0.0).mean(axis=-1)


def _decomposed(name: str, options: Sequence[str] | None, variant_types: Sequence[str] | None
                ) -> _Decomposed | None:
  """The metric `name` as statistics and their function, or None when it is not a function of
  sums over examples (or needs an input this task lacks)."""
  if name == "accuracy":
    def correct(predictions, targets):
      if options is None:
        hits = [normalize_choice(p) == normalize_choice(t) for p, t in zip(predictions, targets)]
      else:
        hits = parse_predictions(predictions, options) == parse_targets(targets, options, name)
      return np.stack([np.asarray(hits, float), np.ones(len(targets))], axis=1)
    return _Decomposed(correct, lambda s: 100.0 * s[..., 0] / s[..., 1])
  if name in ("macro_f1", "positive_f1") and options is not None:
    classes = range(len(options)) if name == "macro_f1" else [len(options) - 1]
    return _Decomposed(lambda p, t: _f1_counts(parse_predictions(p, options), parse_targets(t, options, name),
                                                classes), _mean_f1)
  if name in ("snp_f1", "indel_f1") and variant_types is not None:
    choices = GENOTYPE_OPTIONS if options is None else options
    selected = np.asarray([str(v).strip().lower() == name[:-3] for v in variant_types])

    def genotype_counts(predictions, targets):
      truth = parse_targets(targets, choices, name)
      pred = np.maximum(parse_predictions(predictions, choices), 0)  # unparseable: no call
      counts = [(truth > 0) & (pred == truth), (pred > 0) & (pred != truth), (truth > 0) & (pred != truth)]
      return (np.stack(counts, axis=1) & selected[:, None]).astype(float)
    return _Decomposed(genotype_counts,
                       lambda s: 100.0 * _ratio(2 * s[..., 0], 2 * s[..., 0] + s[..., 1] + s[..., 2], np.nan))
  if name in ("bleu1", "bleu4"):
    n = int(name[-1])
    return _Decomposed(lambda p, t: text.bleu_statistics(p, t, n), lambda s: text.bleu_from_statistics(s, n))
  if name in _MEANS_OF_EXAMPLES:
    def per_example(predictions, targets):
      scores = [metrics_lib.score([name], [p], [t])[name] for p, t in zip(predictions, targets)]
      return np.stack([np.asarray(scores, float), np.ones(len(targets))], axis=1)
    return _Decomposed(per_example, lambda s: s[..., 0] / s[..., 1])
  return None


def counts_of(picks: np.ndarray, n: int) -> np.ndarray:
  """[R, n]: how often each of n examples is in each resample of picks [R, m] (positions)."""
  counts = np.zeros((picks.shape[0], n))
  np.add.at(counts, (np.arange(picks.shape[0])[:, None], picks), 1)
  return counts


def _most_frequent_first_seen(classes: np.ndarray, picks: np.ndarray, num_classes: int) -> np.ndarray:
  """Per resample [R], the most frequent of the picked examples' classes; ties go to the class
  drawn first, as `metrics.baseline` takes the first seen of equally frequent targets."""
  drawn = classes[picks]  # [R, m]
  rows = np.arange(picks.shape[0])[:, None]
  frequency = np.zeros((picks.shape[0], num_classes))
  np.add.at(frequency, (rows, drawn), 1)
  first = np.full((picks.shape[0], num_classes), picks.shape[1])
  np.minimum.at(first, (rows, drawn), np.broadcast_to(np.arange(picks.shape[1]), drawn.shape))
  return np.argmax(frequency * (picks.shape[1] + 1) - first, axis=1)


def _macro_auc(counts: np.ndarray, targets: Sequence[str], option_probs: np.ndarray,
               options: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
  """(ours, baseline) [R] of metrics.macro_auc: one-vs-rest AUC as the weighted Mann-Whitney
  statistic (ties count half), classes present as both positives and negatives averaged; the
  baseline's uniform scores give 50 wherever some class is."""
  y = parse_targets(targets, options, "macro_auc")
  aucs = []
  for k in range(len(options)):
    levels, level = np.unique(option_probs[:, k], return_inverse=True)
    at_level = np.eye(len(levels))[level]  # [n, L]
    positive = counts @ (at_level * (y == k)[:, None])  # [R, L]
    negative = counts @ (at_level * (y != k)[:, None])
    below = np.cumsum(negative, axis=1) - negative
    wins = (positive * (below + 0.5 * negative)).sum(axis=1)
    aucs.append(_ratio(wins, positive.sum(axis=1) * negative.sum(axis=1), np.nan))
  aucs = np.stack(aucs)  # [K, R]
  defined = ~np.isnan(aucs)
  ours = 100.0 * _ratio(np.nansum(aucs, axis=0), defined.sum(axis=0), np.nan)
  return ours, np.where(defined.any(axis=0), 50.0, np.nan)


def _cider_d(counts: np.ndarray, predictions: Sequence[str], targets: Sequence[str],
             picks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(ours, baseline) [R] of CIDEr-D, each resample with its own IDF (text.cider_d_of_resamples)."""
  baseline = np.empty(counts.shape[0])
  for answer, rows in _constant_answers(targets, picks, normalised=False).items():
    baseline[rows] = text.cider_d_of_resamples([answer] * len(targets), targets, counts[rows])
  return text.cider_d_of_resamples(predictions, targets, counts), baseline


def resampled_scores(metric_names: Sequence[str], predictions: Sequence[str], targets: Sequence[str],
                     picks: np.ndarray, *, options: Sequence[str] | None = None,
                     option_probs: np.ndarray | None = None,
                     variant_types: Sequence[str] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{metric: (ours [R], baseline [R])} on each resample of picks [R, n] (positions into these
  n examples), as `metrics.score` and `metrics.baseline` give them on the picked lists; only the
  metrics this module computes from sums are in it."""
  n = len(targets)
  counts = counts_of(picks, n)
  results: dict[str, tuple[np.ndarray, np.ndarray]] = {}
  for name in metric_names:
    if name == "macro_auc":
      if option_probs is not None and options is not None:
        results[name] = _macro_auc(counts, targets, np.asarray(option_probs, float), options)
      continue
    if name == "cider_d":
      results[name] = _cider_d(counts, predictions, targets, picks)
      continue
    decomposed = _decomposed(name, options, variant_types)
    if decomposed is None:
      continue
    ours = decomposed.value(counts @ decomposed.statistics(predictions, targets))
    results[name] = ours, _baseline(name, decomposed, counts, targets, picks, options)
  return results


def _baseline(name: str, decomposed: _Decomposed, counts: np.ndarray, targets: Sequence[str],
              picks: np.ndarray, options: Sequence[str] | None) -> np.ndarray:
  """[R]: the metric of the constant answer `metrics.baseline` fits to each resample."""
  kind = metrics_lib.METRICS[name].kind
  if kind == "genotype" or (kind == "classification" and options is not None):
    # Every most frequent option is a majority answer; the best scoring of them is taken.
    choices = GENOTYPE_OPTIONS if options is None else options
    frequency = counts @ np.eye(len(choices))[parse_targets(targets, choices, name)]  # [R, K]
    values = np.stack([decomposed.value(counts @ decomposed.statistics([choice] * len(targets), targets))
                       for choice in choices], axis=1)
    values = np.where(frequency == frequency.max(axis=1, keepdims=True), values, np.nan)
    with np.errstate(all="ignore"):
      best = np.nanmax(np.where(np.isnan(values), -np.inf, values), axis=1)
    return np.where(np.isinf(best), np.nan, best)
  values = np.empty(counts.shape[0])
  for answer, rows in _constant_answers(targets, picks, normalised=kind == "classification").items():
    values[rows] = decomposed.value(counts[rows] @ decomposed.statistics([answer] * len(targets), targets))
  return values


def _constant_answers(targets: Sequence[str], picks: np.ndarray, normalised: bool) -> dict[str, np.ndarray]:
  """{answer: the resamples [R] (a mask) whose free-text baseline answers it}: the most frequent
  target string (after normalize_choice, for accuracy without options), first drawn on ties."""
  keys = [normalize_choice(t) for t in targets] if normalised else list(targets)
  distinct, classes = np.unique(np.asarray(keys, dtype=object), return_inverse=True)
  chosen = _most_frequent_first_seen(classes, picks, len(distinct))
  # Any target of the chosen class answers as its string does.
  return {targets[int(np.flatnonzero(classes == c)[0])]: chosen == c for c in np.unique(chosen)}

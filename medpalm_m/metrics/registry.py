"""The metric registry (:data:`METRICS`), :func:`score` and the trivial-predictor :func:`baseline`."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

import numpy as np

from medpalm_m.metrics.choice import normalize_choice, parse_targets
from medpalm_m.metrics.classification import macro_auc, macro_f1, multiple_choice_accuracy, positive_f1
from medpalm_m.metrics.clinical import ScorerUnavailable, chexbert_f1, f1_radgraph
from medpalm_m.metrics.genomics import GENOTYPE_OPTIONS, Alleles, genotype_f1, split_truth_set_f1
from medpalm_m.metrics.text import bleu, cider_d, rouge_l, token_f1


MetricKind = Literal["classification", "generation", "genotype", "clinical"]


@dataclass
class _Inputs:
  predictions: list[str]
  targets: list[str]
  options: list[str] | None
  option_probs: np.ndarray | None
  variant_types: list[str] | None
  loci: list[str] | None
  # The split's truth variants without an example (genomics), or why they are unknown here.
  truth_without_example: Alleles | str | None
  scorer_paths: dict
  # The four CheXbert metrics share one labelling pass per score() call.
  memo: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MetricSpec:
  """One registered metric.

  ``needs`` names the :func:`score` keyword inputs the metric cannot do without
  ("options", "option_probs", "variant_types", "loci", "truth_without_example"); ``scorer_key``
  is the ``scorer_paths`` key of the weights a clinical metric needs. ``kind`` picks the
  baseline predictor. ``resampled``: whether the bootstrap margin resamples it (false where
  drawing examples with replacement has no meaning for the metric).
  """

  name: str
  kind: MetricKind
  compute: Callable[[_Inputs], float | str]
  needs: tuple[str, ...] = ()
  scorer_key: str | None = None
  description: str = ""
  resampled: bool = True


def _chexbert_metric(name: str) -> Callable[[_Inputs], float]:
  def compute(x: _Inputs) -> float:
    if "chexbert" not in x.memo:
      x.memo["chexbert"] = chexbert_f1(
          x.predictions,
          x.targets,
          x.scorer_paths.get("chexbert_checkpoint"),
          bert_dir=x.scorer_paths.get("chexbert_bert_dir"),
      )
    return x.memo["chexbert"][name]

  return compute


def _truth_set_metric(variant_type: str) -> Callable[[_Inputs], float | str]:
  def compute(x: _Inputs) -> float | str:
    if isinstance(x.truth_without_example, str):  # reported like a clinical scorer without weights
      return f"skipped: {x.truth_without_example}"
    scores = split_truth_set_f1(x.predictions, x.targets, x.loci, x.truth_without_example, x.options)
    return scores[f"{variant_type}_f1"]

  return compute


def _spec(name: str, kind: MetricKind, compute: Callable[[_Inputs], float | str], description: str, **kw: Any) -> MetricSpec:
  return MetricSpec(name=name, kind=kind, compute=compute, description=description, **kw)


METRICS: dict[str, MetricSpec] = {
    s.name: s
    for s in [
        _spec("accuracy", "classification", lambda x: multiple_choice_accuracy(x.predictions, x.targets, x.options),
              "parsed-choice accuracy (normalised exact match without options)"),
        _spec("macro_f1", "classification", lambda x: macro_f1(x.predictions, x.targets, x.options),
              "mean per-class F1 over the option list", needs=("options",)),
        _spec("positive_f1", "classification", lambda x: positive_f1(x.predictions, x.targets, x.options),
              "F1 of the positive (last) option; per condition, the paper's MIMIC-CXR macro-F1",
              needs=("options",)),
        _spec("macro_auc", "classification", lambda x: macro_auc(x.targets, x.option_probs, x.options),
              "mean one-vs-rest AUC of option scores", needs=("options", "option_probs")),
        _spec("bleu1", "generation", lambda x: bleu(x.predictions, x.targets, 1), "corpus BLEU-1"),
        _spec("bleu4", "generation", lambda x: bleu(x.predictions, x.targets, 4), "corpus BLEU-4"),
        _spec("bleu1_sentence", "generation", lambda x: bleu(x.predictions, x.targets, 1, corpus=False),
              "mean per-example BLEU-1 (MultiMedEval VQA convention)"),
        _spec("rouge_l", "generation", lambda x: rouge_l(x.predictions, x.targets), "ROUGE-L F1, no stemming"),
        _spec("cider_d", "generation", lambda x: cider_d(x.predictions, x.targets), "CIDEr-D x100"),
        _spec("token_f1", "generation", lambda x: token_f1(x.predictions, x.targets), "SQuAD-style token F1"),
        _spec("snp_f1", "genotype",
              lambda x: genotype_f1(x.predictions, x.targets, x.variant_types, "snp", x.options),
              "genotype-aware F1 on SNP candidates", needs=("variant_types",)),
        _spec("indel_f1", "genotype",
              lambda x: genotype_f1(x.predictions, x.targets, x.variant_types, "indel", x.options),
              "genotype-aware F1 on indel candidates", needs=("variant_types",)),
        # Not resampled: a bootstrap draw of candidates has no truth set (the variants without an
        # example are not examples to draw, and a drawn copy of a candidate is not a second call),
        # so these are reported without a margin.
        *[_spec(f"truth_{t}_f1", "genotype", _truth_set_metric(t),
                f"genotype-matched {t.upper() if t == 'snp' else t} F1 against the split's truth "
                "set (hap.py's view: a truth variant without a candidate is a false negative)",
                needs=("loci", "truth_without_example"), resampled=False)
          for t in ("snp", "indel")],
        *[
            _spec(f"chexbert_{avg}_f1_{n}", "clinical", _chexbert_metric(f"chexbert_{avg}_f1_{n}"),
                  f"CheXbert {avg}-F1 over {n} conditions", scorer_key="chexbert_checkpoint")
            for n in ("14", "5")
            for avg in ("micro", "macro")
        ],
        _spec("f1_radgraph", "clinical",
              lambda x: f1_radgraph(x.predictions, x.targets, x.scorer_paths.get("radgraph_model_dir")),
              "F1-RadGraph (radgraph v1, partial reward)", scorer_key="radgraph_model_dir"),
    ]
}  # fmt: skip


def score(
    metric_names: Sequence[str],
    predictions: Sequence[str],
    targets: Sequence[str],
    *,
    options: Sequence[str] | None = None,
    option_probs: np.ndarray | None = None,
    variant_types: Sequence[str] | None = None,
    loci: Sequence[str] | None = None,
    truth_without_example: Alleles | str | None = None,
    scorer_paths: dict | None = None,
) -> dict[str, float | str]:
  """Compute the named metrics (percent) of ``predictions`` against ``targets``.

  Inputs each metric needs are listed in its :class:`MetricSpec`; a missing one raises
  ``ValueError`` naming the metric. Clinical scorers without usable weights return
  the string ``"skipped: needs local weights at <config key> (...)"`` instead of a number, and
  so do the truth-set metrics with ``truth_without_example`` a string saying why it is unknown
  ("skipped: <why>"); as alleles, the examples must be every candidate of their split.
  Undefined values (e.g. AUC with one class present) are NaN.
  """
  predictions, targets = list(predictions), list(targets)
  if len(predictions) != len(targets):
    raise ValueError(f"{len(predictions)} predictions but {len(targets)} targets")
  if not targets:
    raise ValueError("cannot score an empty set")
  unknown = [m for m in metric_names if m not in METRICS]
  if unknown:
    raise ValueError(f"unknown metrics {unknown}; known: {sorted(METRICS)}")
  if variant_types is not None and len(variant_types) != len(targets):
    raise ValueError(f"{len(variant_types)} variant_types but {len(targets)} targets")
  if loci is not None and len(loci) != len(targets):
    raise ValueError(f"{len(loci)} loci but {len(targets)} targets")
  inputs = _Inputs(
      predictions=predictions,
      targets=targets,
      options=None if options is None else list(options),
      option_probs=None if option_probs is None else np.asarray(option_probs, dtype=float),
      variant_types=None if variant_types is None else list(variant_types),
      loci=None if loci is None else list(loci),
      truth_without_example=truth_without_example,
      scorer_paths=dict(scorer_paths or {}),
  )
  results: dict[str, float | str] = {}
  for name in metric_names:
    spec = METRICS[name]
    missing = [k for k in spec.needs if getattr(inputs, k) is None]
    if missing:
      raise ValueError(f"metric {name!r} needs {', '.join(missing)}")
    try:
      results[name] = spec.compute(inputs)
    except ScorerUnavailable as e:
      results[name] = str(e)
  return results


def _most_frequent(items: Sequence[Any]) -> Any:
  # Counter keeps first-seen order among ties, so ties go to the earliest item.
  return Counter(items).most_common(1)[0][0]


def baseline(
    metric_names: Sequence[str],
    targets: Sequence[str],
    *,
    options: Sequence[str] | None = None,
    variant_types: Sequence[str] | None = None,
    loci: Sequence[str] | None = None,
    truth_without_example: Alleles | str | None = None,
    scorer_paths: dict | None = None,
) -> dict[str, float | str]:
  """Score of a trivial constant predictor on the same set, per metric.

  * classification (accuracy, macro_f1, positive_f1, macro_auc): always answer the most frequent
    target option; macro_auc scores the constant uniform probabilities, i.e. 50 (NaN if
    only one class is present). Without ``options``, accuracy uses the most frequent
    normalised target string.
  * genotype (snp_f1, indel_f1, truth_*): always call the most frequent genotype over the
    whole set (both types pooled, so the same constant call as a classifier would make).
  * When several options are equally frequent, each metric takes whichever of them scores
    highest on it: a balanced test set (synthetic genomics is 50/50/50) must not get the
    weakest constant (always "0", SNP-F1 0) when always "1" is just as much a majority
    call and scores ~42.
  * generation and clinical (bleu*, rouge_l, cider_d, token_f1, chexbert_*,
    f1_radgraph): always output the most frequent target string (ties -> first seen);
    the clinical ones still need their weights.
  """
  targets = list(targets)
  if not targets:
    raise ValueError("cannot score an empty set")
  by_kind: dict[str, list[str]] = {}
  for name in metric_names:
    if name not in METRICS:
      raise ValueError(f"unknown metric {name!r}; known: {sorted(METRICS)}")
    by_kind.setdefault(METRICS[name].kind, []).append(name)

  common = dict(options=options, variant_types=variant_types, loci=loci,
                truth_without_example=truth_without_example, scorer_paths=scorer_paths)
  results: dict[str, float | str] = {}
  for kind, names in by_kind.items():
    probs = None
    if kind == "genotype" or (kind == "classification" and options is not None):
      choice_options = GENOTYPE_OPTIONS if options is None else options
      counts = np.bincount(parse_targets(targets, choice_options, names[0]), minlength=len(choice_options))
      choices = [choice_options[i] for i in np.flatnonzero(counts == counts.max())]
      if kind == "classification":
        probs = np.full((len(targets), len(choice_options)), 1.0 / len(choice_options))
    elif kind == "classification":
      choices = [_most_frequent([normalize_choice(t) for t in targets])]
    else:
      # Free text: ties go to the first seen. Scoring every tied report (often all of them
      # are unique) would cost a CIDEr-D pass per candidate, per bootstrap resample.
      choices = [_most_frequent(targets)]
    per_choice = [score(names, [choice] * len(targets), targets, option_probs=probs, **common)
                  for choice in choices]
    for name in names:
      values = [scored[name] for scored in per_choice]
      numeric = [v for v in values if isinstance(v, float) and not math.isnan(v)]
      results[name] = max(numeric) if numeric else values[0]
  return {name: results[name] for name in metric_names}

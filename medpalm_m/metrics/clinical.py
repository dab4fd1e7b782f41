"""Clinical scorers that need model weights: CheXbert F1, F1-RadGraph (percent).

No package ships the weights; without a local path they raise :class:`ScorerUnavailable`,
which :func:`medpalm_m.metrics.score` reports as a ``"skipped: needs local weights at
<config key>"`` string. Nothing here ever downloads.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from typing import Any, Callable, Literal, Sequence

import numpy as np
from sklearn.metrics import f1_score


CHEXBERT_CONDITIONS = (
    "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
    "Pleural Other", "Fracture", "Support Devices", "No Finding",
)  # fmt: skip
CHEXBERT_5_CONDITIONS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
_CHEXBERT_5_IDX = [CHEXBERT_CONDITIONS.index(c) for c in CHEXBERT_5_CONDITIONS]


class ScorerUnavailable(RuntimeError):
  """A clinical scorer cannot run here (no local weights, or optional packages missing).

  ``str(exc)`` is the value :func:`score` reports: "skipped: needs local weights at
  <config key>" plus the reason in parentheses.
  """

  def __init__(self, config_key: str, detail: str = "") -> None:
    self.config_key = config_key
    self.detail = detail
    msg = f"skipped: needs local weights at config.eval.scorer_paths.{config_key}"
    super().__init__(f"{msg} ({detail})" if detail else msg)


def _binarize_chexbert(labels: Any, uncertain_as_positive: bool) -> np.ndarray:
  """Map a (N, 14) label table to 0/1.

  Accepts CheXbert head outputs (0 blank, 1 positive, 2 negative, 3 uncertain) and
  CheXpert CSV values (1 positive, 0 negative, -1 uncertain, NaN/None/"" blank); the
  two codings agree on everything that matters here, so both work unchanged.
  """
  rows = [[_chexbert_value(v) for v in row] for row in labels]
  arr = np.asarray(rows, dtype=float).reshape(len(rows), -1)
  if arr.shape[1] != len(CHEXBERT_CONDITIONS):
    raise ValueError(f"CheXbert labels need {len(CHEXBERT_CONDITIONS)} columns, got {arr.shape[1]}")
  uncertain = (arr == 3) | (arr == -1)
  return ((arr == 1) | (uncertain & uncertain_as_positive)).astype(int)


def _chexbert_value(v: Any) -> float:
  if v is None or (isinstance(v, str) and not v.strip()):
    return 0.0
  v = float(v)
  return 0.0 if math.isnan(v) else v


def chexbert_f1_from_labels(
    pred_labels: Any, ref_labels: Any, *, uncertain_as_positive: bool = True
) -> dict[str, float]:
  """CheXbert clinical-efficacy F1s (percent) from per-report label tables.

  ``pred_labels`` / ``ref_labels``: (N, 14) in :data:`CHEXBERT_CONDITIONS` order, coded
  as CheXbert outputs or CheXpert values (see :func:`_binarize_chexbert`). Each
  condition becomes a binary "positive" label: positive = 1, negative and blank = 0,
  uncertain = 1 by default. That default is what ysmiura/ifcc ``eval_prf.py`` (without
  ``--uncertain``) and ``f1chexbert`` (``mode="rrg"``) do, i.e. the convention behind the
  published Micro/Macro-F1-14/-5 numbers; ``uncertain_as_positive=False`` maps uncertain
  to 0 instead.

  micro = F1 of TP/FP/FN pooled over all (report, condition) pairs; macro = unweighted
  mean of per-condition F1, where a condition with no positives in either table scores
  0 and stays in the mean (sklearn ``zero_division=0``, as f1chexbert's
  ``classification_report``). "_5" restricts to :data:`CHEXBERT_5_CONDITIONS`.
  """
  pred = _binarize_chexbert(pred_labels, uncertain_as_positive)
  ref = _binarize_chexbert(ref_labels, uncertain_as_positive)
  if pred.shape != ref.shape:
    raise ValueError(f"CheXbert label tables differ in shape: {pred.shape} vs {ref.shape}")
  out = {}
  for suffix, cols in (("14", slice(None)), ("5", _CHEXBERT_5_IDX)):
    for avg in ("micro", "macro"):
      out[f"chexbert_{avg}_f1_{suffix}"] = 100.0 * float(
          f1_score(ref[:, cols], pred[:, cols], average=avg, zero_division=0)
      )
  return out


def _force_hf_offline() -> None:
  # Only effective if huggingface_hub/transformers are not imported yet; together with
  # local_files_only below it keeps the lazy loaders from ever reaching the Hub.
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@lru_cache(maxsize=2)
def _load_chexbert_labeler(checkpoint: str, bert_dir: str | None) -> Callable[[Sequence[str]], np.ndarray]:
  """Build a batch labeler: reports -> (N, 14) CheXbert head outputs (0-3).

  Uses f1chexbert's model/tokenisation code, but loads the checkpoint from the given
  path: f1chexbert.F1CheXbert itself downloads ``chexbert.pth`` and bert-base-uncased.
  """
  _force_hf_offline()
  try:
    import pandas as pd
    import torch
    from f1chexbert.f1chexbert import bert_labeler, generate_attention_masks, tokenize
    from transformers import BertTokenizer
  except ImportError as e:
    raise ScorerUnavailable(
        "chexbert_checkpoint",
        f"weights given but optional package {e.name!r} is not installed; "
        "pip install f1chexbert==0.0.2 torch transformers pandas",
    ) from e
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  try:
    if bert_dir:
      model = bert_labeler(pretrain_path=bert_dir)
      tokenizer = BertTokenizer.from_pretrained(bert_dir, local_files_only=True)
    else:
      model = bert_labeler(inference=True)  # config of bert-base-uncased from the HF cache
      tokenizer = BertTokenizer.from_pretrained("bert-base-uncased", local_files_only=True)
  except OSError as e:
    raise ScorerUnavailable(
        "chexbert_bert_dir",
        f"bert-base-uncased config/vocab not in the local HF cache and no chexbert_bert_dir given: {e}",
    ) from e
  state = torch.load(checkpoint, map_location=device)["model_state_dict"]
  state = {k.replace("module.", ""): v for k, v in state.items()}
  # strict=False as in f1chexbert (position_ids buffers differ across transformers
  # versions), but the label heads must be there or every label would be random.
  missing, _ = model.load_state_dict(state, strict=False)
  if any(k.startswith("linear_heads") for k in missing):
    raise ValueError(f"{checkpoint} is not a CheXbert checkpoint (missing {missing[:3]} ...)")
  model = model.to(device).eval()

  def label(reports: Sequence[str], batch_size: int = 32) -> np.ndarray:
    ids = tokenize(pd.Series([r.strip() for r in reports], dtype=object), tokenizer)
    out = []
    with torch.no_grad():
      for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        lengths = [len(x) for x in chunk]
        batch = torch.zeros((len(chunk), max(lengths)), dtype=torch.long)
        for j, x in enumerate(chunk):
          batch[j, : len(x)] = torch.tensor(x, dtype=torch.long)
        mask = generate_attention_masks(batch, lengths, device)
        heads = model(batch.to(device), mask)
        out.append(torch.stack([h.argmax(dim=1) for h in heads], dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(CHEXBERT_CONDITIONS)), dtype=int)

  return label


def chexbert_f1(
    predictions: Sequence[str],
    targets: Sequence[str],
    chexbert_checkpoint: str | None,
    *,
    bert_dir: str | None = None,
    uncertain_as_positive: bool = True,
) -> dict[str, float]:
  """Label both report lists with CheXbert and return :func:`chexbert_f1_from_labels`.

  Raises :class:`ScorerUnavailable` (never downloads) when ``chexbert_checkpoint`` is
  unset or missing, or when f1chexbert/torch/transformers are not installed.
  """
  if not chexbert_checkpoint or not os.path.isfile(chexbert_checkpoint):
    detail = f"no file at {chexbert_checkpoint}" if chexbert_checkpoint else "not configured"
    raise ScorerUnavailable("chexbert_checkpoint", detail)
  label = _load_chexbert_labeler(chexbert_checkpoint, bert_dir)
  return chexbert_f1_from_labels(
      label(list(predictions)), label(list(targets)), uncertain_as_positive=uncertain_as_positive
  )


def _radgraph_candidates(annotation: dict, reward_level: str) -> set:
  entities = annotation["entities"]
  out: set = set()
  for ent in entities.values():
    if not ent["relations"]:
      out.add((ent["tokens"], ent["label"]))
    elif reward_level == "simple":
      out.add((ent["tokens"], ent["label"]))
    elif reward_level == "partial":
      out.add((ent["tokens"], ent["label"], True))
    else:  # complete: one item per relation triple
      out.update(
          (ent["tokens"].lower(), ent["label"], r[0], entities[r[1]]["tokens"].lower())
          for r in ent["relations"]
      )
  return out


def _radgraph_reward(hyp: dict, ref: dict, reward_level: str) -> float:
  if not hyp["entities"] or not ref["entities"]:
    return 0.0
  h, r = _radgraph_candidates(hyp, reward_level), _radgraph_candidates(ref, reward_level)
  precision = len(h & r) / len(h) if h else 0.0
  recall = len(h & r) / len(r) if r else 0.0
  return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def radgraph_f1_from_annotations(
    hyp_annotations: Sequence[dict],
    ref_annotations: Sequence[dict],
    reward_level: Literal["simple", "partial", "complete"] = "partial",
) -> float:
  """F1-RadGraph (percent) from RadGraph annotation dicts, mirroring radgraph 0.1.18's
  ``rewards.compute_reward``: per report, F1 between the sets of

  * simple: (entity tokens, label);
  * partial (the usual "RG_ER", default): (tokens, label) for entities without a
    relation, (tokens, label, True) for entities with one;
  * complete: entities without relations plus one (tokens, label, relation, target
    tokens) per relation;

  then the mean over reports. A report whose hypothesis or reference has no entities
  scores 0. Kept here so the set logic is testable without the model.
  """
  if len(hyp_annotations) != len(ref_annotations):
    raise ValueError("f1_radgraph: annotation lists differ in length")
  rewards = [_radgraph_reward(h, r, reward_level) for h, r in zip(hyp_annotations, ref_annotations)]
  return 100.0 * float(np.mean(rewards))


@lru_cache(maxsize=2)
def _load_f1radgraph(model_dir: str, model_type: str, reward_level: str) -> Callable[..., Any]:
  _force_hf_offline()
  try:
    from radgraph import F1RadGraph
  except ImportError as e:
    raise ScorerUnavailable(
        "radgraph_model_dir",
        f"weights given but optional package {e.name!r} is not installed; pip install radgraph==0.1.18",
    ) from e
  return F1RadGraph(reward_level=reward_level, model_type=model_type, model_cache_dir=model_dir)


def _resolve_radgraph_dir(radgraph_model_dir: str | None, model_type: str) -> str:
  """Return the cache dir radgraph expects (it reads ``<dir>/<model_type>/weights.th``).

  Accepts that cache dir or the model folder itself. radgraph downloads whenever the
  model folder is missing or empty, so anything else is refused here.
  """
  if not radgraph_model_dir:
    raise ScorerUnavailable("radgraph_model_dir", "not configured")
  d = os.path.abspath(radgraph_model_dir)
  if os.path.basename(d) == model_type and os.path.isfile(os.path.join(d, "weights.th")):
    d = os.path.dirname(d)
  needed = [os.path.join(d, model_type, f) for f in ("weights.th", "config.json")]
  if not all(os.path.isfile(f) for f in needed):
    raise ScorerUnavailable(
        "radgraph_model_dir", f"expected {model_type}/weights.th and config.json under {radgraph_model_dir}"
    )
  return d


def f1_radgraph(
    predictions: Sequence[str],
    targets: Sequence[str],
    radgraph_model_dir: str | None,
    *,
    model_type: str = "radgraph",
    reward_level: str = "partial",
) -> float:
  """F1-RadGraph (percent) with radgraph's ``F1RadGraph``; model v1 ("radgraph") and the
  "partial" reward by default, the 2023-era setting Med-PaLM M's comparisons use.

  Raises :class:`ScorerUnavailable` (never downloads) without local weights or package.
  The BERT the model embeds with must already be in the local HF cache.
  """
  cache_dir = _resolve_radgraph_dir(radgraph_model_dir, model_type)
  scorer = _load_f1radgraph(cache_dir, model_type, reward_level)
  mean_reward, *_ = scorer(refs=list(targets), hyps=list(predictions))
  return 100.0 * float(mean_reward)

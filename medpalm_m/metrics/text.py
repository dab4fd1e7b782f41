"""Text generation metrics: BLEU, ROUGE-L, CIDEr-D, token F1 (percent).

* BLEU-1/BLEU-4 are corpus-level (statistics pooled over the set) with pycocoevalcap's
  ``Bleu`` (``closest`` reference length), the implementation behind the R2Gen-family
  report-generation numbers Med-PaLM M compares to. ``bleu1_sentence`` (mean of
  per-example BLEU-1, the MultiMedEval VQA convention) is available as well.
* Tokenisation for BLEU and CIDEr-D: NFKC, lowercase, tokens are runs of letters/digits
  and single CJK characters; punctuation and ``_`` are dropped (like the COCO PTB
  tokenizer, which also removes punctuation, but without needing Java).
* ROUGE-L: ``rouge_score`` ``rougeL`` F-measure (beta = 1), **no stemming**, mean over
  examples (matches Hugging Face ``evaluate``'s rouge default used by summarisation work).
* CIDEr-D: pycocoevalcap ``Cider`` (which is CIDEr-D), reported x100 like the paper.
* Token F1: SQuAD-style, hand-written (see :func:`token_f1`).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from functools import lru_cache
from typing import Sequence

import numpy as np


_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_NGRAM_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")


def _ngram_tokens(text: str) -> list[str]:
  """Tokens for BLEU/CIDEr-D: lowercase letter/digit runs; each CJK character alone.

  Punctuation is dropped, as the COCO PTB tokenizer does before BLEU/CIDEr, so "effusion."
  and "effusion" match. CJK characters are split because Slake's Chinese answers carry
  no spaces and would otherwise be one token each.
  """
  return _NGRAM_TOKEN.findall(unicodedata.normalize("NFKC", text).lower())


def _coco_inputs(predictions: Sequence[str], targets: Sequence[str]) -> tuple[dict, dict]:
  gts = {i: [" ".join(_ngram_tokens(t))] for i, t in enumerate(targets)}
  res = {i: [" ".join(_ngram_tokens(p))] for i, p in enumerate(predictions)}
  return gts, res


def bleu(predictions: Sequence[str], targets: Sequence[str], n: int, *, corpus: bool = True) -> float:
  """BLEU-n in percent (uniform weights up to n, brevity penalty), one reference each.

  corpus=True pools n-gram counts and lengths over the whole set before taking the
  geometric mean (Papineni's definition; what pycocoevalcap and HF ``evaluate`` report).
  corpus=False averages per-example BLEU (MultiMedEval's VQA BLEU-1). pycocoevalcap adds
  1e-15/1e-9 to counts to avoid log(0), so a perfect match reads 99.9999999..., not 100.
  """
  from pycocoevalcap.bleu.bleu import Bleu

  gts, res = _coco_inputs(predictions, targets)
  pooled, per_example = Bleu(n).compute_score(gts, res, verbose=0)
  return 100.0 * float(pooled[n - 1] if corpus else np.mean(per_example[n - 1]))


@lru_cache(maxsize=1)
def _rouge_l_scorer():
  from rouge_score import rouge_scorer

  # No stemming: matches HF evaluate's rouge default and pycocoevalcap's Rouge.
  return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(predictions: Sequence[str], targets: Sequence[str]) -> float:
  """Mean over examples of rouge_score's ROUGE-L F-measure (beta = 1), in percent.

  rouge_score lowercases and keeps only [a-z0-9] tokens; an empty prediction or
  reference scores 0 (also when both are empty: the library's convention).
  """
  scorer = _rouge_l_scorer()
  return 100.0 * float(np.mean([scorer.score(t, p)["rougeL"].fmeasure for p, t in zip(predictions, targets)]))


def cider_d(predictions: Sequence[str], targets: Sequence[str]) -> float:
  """CIDEr-D x100 with pycocoevalcap's ``Cider`` (clipped TF-IDF n=1..4, Gaussian length
  penalty sigma=6, x10), so 26.17 in the paper is a raw CIDEr-D of 0.2617.

  IDF comes from the references of this very set, so the value depends on the set: an
  n-gram that occurs in every reference weighs 0, and a one-example set always scores 0.
  An empty prediction contributes 0. pycocoevalcap's length penalty counts bigrams (its
  ``if n == 1`` quirk); kept so numbers match published ones.
  """
  from pycocoevalcap.cider.cider import Cider

  gts, res = _coco_inputs(predictions, targets)
  if not any(g[0] for g in gts.values()):
    # Document frequencies would be empty and pycocoevalcap asserts on max(); nothing to match.
    return 0.0
  mean, _ = Cider().compute_score(gts, res)
  return 100.0 * float(mean)


def _squad_tokens(text: str) -> list[str]:
  text = unicodedata.normalize("NFKC", text).lower()
  # SQuAD deletes ASCII punctuation; also delete Unicode punctuation (Chinese "，。").
  text = "".join(ch for ch in text if ch not in string.punctuation and not unicodedata.category(ch).startswith("P"))
  text = re.sub(r"\b(a|an|the)\b", " ", text)
  tokens = []
  for word in text.split():
    # MLQA-style mixed segmentation: each CJK character is its own token.
    tokens.extend(re.findall(rf"[{_CJK}]|[^{_CJK}]+", word))
  return tokens


def _token_f1_one(prediction: str, target: str) -> float:
  pred, gold = _squad_tokens(prediction), _squad_tokens(target)
  if not pred and not gold:
    return 1.0
  if not pred or not gold:
    return 0.0
  common = sum((Counter(pred) & Counter(gold)).values())
  if common == 0:
    return 0.0
  precision, recall = common / len(pred), common / len(gold)
  return 2 * precision * recall / (precision + recall)


def token_f1(predictions: Sequence[str], targets: Sequence[str]) -> float:
  """Mean over examples of SQuAD-style token F1, in percent.

  Normalise (NFKC, lowercase, delete punctuation, drop a/an/the), split on whitespace
  (CJK characters individually), then F1 of the bag-of-tokens (multiset) overlap. Both
  empty -> 100, one empty -> 0. Hand-written because no installed library exposes
  SQuAD's F1 (HF ``evaluate`` downloads its metric scripts at run time).
  """
  return 100.0 * float(np.mean([_token_f1_one(p, t) for p, t in zip(predictions, targets)]))

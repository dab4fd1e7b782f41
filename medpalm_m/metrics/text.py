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


def bleu_statistics(predictions: Sequence[str], targets: Sequence[str], n: int) -> np.ndarray:
  """What corpus BLEU-n pools, per example [N, 2 + 2n]: prediction length, reference length, then
  the n-gram guesses and the clipped matches of orders 1..n (pycocoevalcap's own counts). Sums
  of these rows over any multiset of examples give its corpus BLEU (`bleu_from_statistics`)."""
  from pycocoevalcap.bleu.bleu_scorer import BleuScorer

  gts, res = _coco_inputs(predictions, targets)
  scorer = BleuScorer(n=n)
  for i in range(len(targets)):
    scorer += (res[i][0], gts[i])
  return np.asarray([[c["testlen"], c["reflen"][0], *c["guess"][:n], *c["correct"][:n]] for c in scorer.ctest],
                    float)


def bleu_from_statistics(totals: np.ndarray, n: int) -> np.ndarray:
  """Corpus BLEU-n in percent from pooled `bleu_statistics` [..., 2 + 2n], computed as
  pycocoevalcap's BleuScorer.compute_score does (its 1e-15/1e-9 guards included)."""
  small, tiny = 1e-9, 1e-15
  testlen, reflen = totals[..., 0], totals[..., 1]
  guess, correct = totals[..., 2:2 + n], totals[..., 2 + n:2 + 2 * n]
  value = np.prod((correct + tiny) / (guess + small), axis=-1) ** (1.0 / n)
  ratio = (testlen + tiny) / (reflen + small)
  # Only short corpora pay the brevity penalty; the where keeps 1/ratio from dividing by 0.
  penalty = np.exp(1 - 1 / np.where(ratio < 1, ratio, 1.0))
  return 100.0 * value * penalty


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


def cider_d_of_resamples(predictions: Sequence[str], targets: Sequence[str], counts: np.ndarray) -> np.ndarray:
  """`cider_d` of each resample [R] of these examples, given counts [R, N] (how often each is
  drawn), without rescoring each: a resample's IDF comes from its document frequencies (sums of
  counts), and since IDF >= 0 every clipped tf-idf product and norm of an example is a sum of
  IDF^2 terms, so one sparse product per n-gram order gives every example on every resample."""
  from pycocoevalcap.cider.cider_scorer import precook
  from scipy import sparse

  gts, res = _coco_inputs(predictions, targets)
  columns: dict[tuple, int] = {}
  entries: dict[str, list] = {"row": [], "column": [], "clipped": [], "hyp": [], "ref": [], "present": []}
  bigrams = np.zeros((2, len(targets)))  # pycocoevalcap's length: bigram counts (its n == 1 quirk)
  for i in range(len(targets)):
    hyp, ref = precook(res[i][0]), precook(gts[i][0])
    for side, grams in enumerate((hyp, ref)):
      bigrams[side, i] = sum(tf for g, tf in grams.items() if len(g) == 2)
    for gram in hyp.keys() | ref.keys():
      entries["row"].append(i)
      entries["column"].append(columns.setdefault(gram, len(columns)))
      entries["clipped"].append(min(hyp.get(gram, 0), ref.get(gram, 0)) * ref.get(gram, 0))
      entries["hyp"].append(hyp.get(gram, 0) ** 2)
      entries["ref"].append(ref.get(gram, 0) ** 2)
      entries["present"].append(float(gram in ref))
  shape = (len(targets), max(len(columns), 1))
  matrix = {k: sparse.csr_matrix((entries[k], (entries["row"], entries["column"])), shape=shape)
            for k in ("clipped", "hyp", "ref", "present")}
  order = np.zeros(shape[1], int)
  for gram, column in columns.items():
    order[column] = len(gram)
  documents = counts.sum(axis=1)  # [R]
  frequency = np.asarray(matrix["present"].T @ counts.T)  # [G, R]
  idf_squared = (np.log(documents)[None, :] - np.log(np.maximum(1.0, frequency))) ** 2
  similarity = np.zeros((len(targets), counts.shape[0]))
  for n in range(1, 5):
    weights = np.where((order == n)[:, None], idf_squared, 0.0)
    norms = np.sqrt(np.asarray(matrix["hyp"] @ weights) * np.asarray(matrix["ref"] @ weights))
    clipped = np.asarray(matrix["clipped"] @ weights)
    with np.errstate(divide="ignore", invalid="ignore"):
      similarity += np.where(norms > 0, clipped / np.where(norms > 0, norms, 1), 0.0) / 4
  penalty = np.exp(-((bigrams[0] - bigrams[1]) ** 2) / (2 * 6.0 ** 2))
  per_example = 10.0 * similarity * penalty[:, None]  # [N, R]
  return 100.0 * (counts * per_example.T).sum(axis=1) / documents


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

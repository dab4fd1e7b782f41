"""MultiMedBench metrics, every value in percent (0-100) like Med-PaLM M's tables.

One entry point, :func:`score`, turns generated answers into the numbers the paper
reports; :func:`baseline` gives the trivial-predictor value of the same metrics so a
result can be read against a floor. :data:`METRICS` is the registry both use.

Choices the paper leaves open, fixed here (see each function for the reason):

* Multiple-choice answers are parsed back to an option with :func:`parse_choice`; an
  answer that matches no option is wrong (never dropped).
* accuracy / macro-F1 use scikit-learn; macro-F1 runs over the task's full option list
  (``labels=``) with ``zero_division=0``, so a class that is never a target and never
  predicted scores F1 = 0 and still counts in the mean.
* macro-AUC is the unweighted mean of one-vs-rest AUCs over the classes that have both
  positives and negatives among the targets; no such class -> NaN.
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
* SNP-F1 / Indel-F1: genotype-aware F1 over candidates (see :func:`genotype_f1`).
* CheXbert F1 and F1-RadGraph need model weights that no package ships; without a
  local path they yield a ``"skipped: needs local weights at <config key>"`` string.
"""

from __future__ import annotations

import math
import os
import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Literal, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

__all__ = [
    "CHEXBERT_CONDITIONS",
    "CHEXBERT_5_CONDITIONS",
    "METRICS",
    "MetricSpec",
    "ScorerUnavailable",
    "baseline",
    "bleu",
    "chexbert_f1",
    "chexbert_f1_from_labels",
    "cider_d",
    "f1_radgraph",
    "genotype_f1",
    "macro_auc",
    "macro_f1",
    "multiple_choice_accuracy",
    "parse_choice",
    "radgraph_f1_from_annotations",
    "rouge_l",
    "score",
    "token_f1",
]

# ---------------------------------------------------------------------------
# Multiple-choice answer parsing
# ---------------------------------------------------------------------------

_LETTERS = string.ascii_lowercase
_TRAILING = ".,;:!?\u3002\uff0c\uff1b\uff1a\uff01\uff1f \t\n\"'"
_LETTER_ONLY = re.compile(r"^\(?([a-z])\)?[.:]?$")
# "(b) yes", "b) yes", "b. yes", "b: yes"; a bare "a " is NOT a letter (it is the article).
_LETTER_PREFIX = re.compile(r"^(?:\(([a-z])\)|([a-z])[).:])(?:\s+|$)")
_LETTER_PAREN = re.compile(r"\(([a-z])\)")


def _norm_choice(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    text = " ".join(text.split())
    return text.strip(_TRAILING).strip()


def parse_choice(prediction: str, options: Sequence[str]) -> int | None:
    """Map a generated multiple-choice answer to the index of an option, or None.

    Options are lettered A, B, C, ... in the given order. Tried in order, all case,
    whitespace and trailing-punctuation insensitive:

    1. the whole answer is an option's text ("Basal Cell Carcinoma.");
    2. the whole answer is a letter: "B", "B.", "(B)", "B)";
    3. the answer starts with a letter marker: "(B) Yes", "B) Yes", "B. Yes", "B: Yes".
       The letter wins over any text after it, because the prompts list options as
       "(A) ... (B) ..." and the model's letter is its actual choice (unless other
       "(X)" markers follow, as when the model echoes the option list);
    4. exactly one distinct in-range "(X)" occurs anywhere ("The answer is (C).");
       several distinct ones (the model echoing the option list) is ambiguous;
    5. the answer starts with an option's text followed by a non-alphanumeric
       character ("Yes, because ..."); the longest such option wins, so
       "benign without callback" is not read as "benign".

    Returns None when nothing matches; callers count that as a wrong answer.
    """
    pred = _norm_choice(prediction)
    if not pred or not options:
        return None
    opts = [_norm_choice(o) for o in options]
    n = len(opts)

    if pred in opts:
        return opts.index(pred)

    m = _LETTER_ONLY.match(pred)
    if m and _LETTERS.index(m.group(1)) < n:
        return _LETTERS.index(m.group(1))

    paren = {i for i in (_LETTERS.index(x) for x in _LETTER_PAREN.findall(pred)) if i < n}
    m = _LETTER_PREFIX.match(pred)
    if m:
        idx = _LETTERS.index(m.group(1) or m.group(2))
        if idx < n and paren <= {idx}:
            return idx

    if len(paren) == 1:
        return paren.pop()

    best: int | None = None
    for i, opt in enumerate(opts):
        if opt and pred.startswith(opt) and not pred[len(opt)].isalnum():
            if best is None or len(opt) > len(opts[best]):
                best = i
    return best


def _parse_targets(targets: Sequence[str], options: Sequence[str], metric: str) -> np.ndarray:
    idx = []
    for t in targets:
        i = parse_choice(t, options)
        if i is None:
            # A gold answer outside the option list is a data bug, not a model error.
            raise ValueError(f"{metric}: target {t!r} matches none of the options {list(options)}")
        idx.append(i)
    return np.asarray(idx, dtype=int)


def _parse_predictions(predictions: Sequence[str], options: Sequence[str]) -> np.ndarray:
    # -1 is outside labels=range(K): an unparseable answer is a miss for its true class.
    return np.asarray([(-1 if (i := parse_choice(p, options)) is None else i) for p in predictions], dtype=int)


# ---------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------


def multiple_choice_accuracy(
    predictions: Sequence[str], targets: Sequence[str], options: Sequence[str] | None = None
) -> float:
    """Percent of answers equal to the target.

    With ``options``: both sides are parsed with :func:`parse_choice` and an unparseable
    prediction is wrong. Without: exact match after :func:`_norm_choice` normalisation
    (case, whitespace, trailing punctuation), for free-text tasks with no option list.
    """
    if options is None:
        y_true = [_norm_choice(t) for t in targets]
        y_pred = [_norm_choice(p) for p in predictions]
    else:
        y_true = _parse_targets(targets, options, "accuracy")
        y_pred = _parse_predictions(predictions, options)
    return 100.0 * float(accuracy_score(y_true, y_pred))


def macro_f1(predictions: Sequence[str], targets: Sequence[str], options: Sequence[str]) -> float:
    """Unweighted mean of per-class F1 over *all* options, in percent.

    ``labels=range(len(options))`` fixes the class set to the task's option list rather
    than whatever happens to occur, so the number is comparable across subsets and
    checkpoints. ``zero_division=0``: a class with no positives and no predictions has
    F1 = 0 and still counts in the mean (sklearn's convention, and what a per-class table
    would show). On the full MultiMedBench test sets every class has positives, so this
    only matters for small subsets.
    """
    y_true = _parse_targets(targets, options, "macro_f1")
    y_pred = _parse_predictions(predictions, options)
    return 100.0 * float(
        f1_score(y_true, y_pred, labels=list(range(len(options))), average="macro", zero_division=0)
    )


def macro_auc(targets: Sequence[str], option_probs: np.ndarray, options: Sequence[str]) -> float:
    """Unweighted mean of one-vs-rest ROC-AUC over classes, in percent.

    ``option_probs[i, k]`` is any score for option k on example i (e.g. a softmax over
    length-normalised option log-likelihoods; only the ranking matters). A class whose
    targets are all positive or all negative has no defined AUC and is left out of the
    mean; if that leaves nothing (a single class present) the result is NaN. This loop
    over sklearn's binary ``roc_auc_score`` exists because
    ``roc_auc_score(multi_class='ovr')`` raises instead when a class is absent, which
    happens on small subsets.
    """
    y = _parse_targets(targets, options, "macro_auc")
    probs = np.asarray(option_probs, dtype=float)
    if probs.shape != (len(y), len(options)):
        raise ValueError(
            f"macro_auc: option_probs has shape {probs.shape}, expected {(len(y), len(options))}"
        )
    if not np.all(np.isfinite(probs)):
        raise ValueError("macro_auc: option_probs contains NaN or inf")
    aucs = []
    for k in range(len(options)):
        pos = y == k
        if pos.all() or not pos.any():
            continue
        aucs.append(roc_auc_score(pos, probs[:, k]))
    return 100.0 * float(np.mean(aucs)) if aucs else float("nan")


# ---------------------------------------------------------------------------
# Text generation: BLEU, ROUGE-L, CIDEr-D, token F1
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# Genomics: SNP-F1 / Indel-F1
# ---------------------------------------------------------------------------

GENOTYPE_OPTIONS = ("0", "1", "2")


def genotype_f1(
    predictions: Sequence[str],
    targets: Sequence[str],
    variant_types: Sequence[str],
    variant_type: Literal["snp", "indel"],
    options: Sequence[str] | None = None,
) -> float:
    """Genotype-aware F1 over the candidates of one variant type, in percent.

    Each candidate has a true and a predicted genotype g in {0, 1, 2} (copies of the
    alt allele; parsed with :func:`parse_choice` against ``options``, which must be in
    genotype order and default to ("0", "1", "2")). A variant is a call with g > 0.

    * TP: truth > 0 and prediction == truth;
    * FP: prediction > 0 and prediction != truth;
    * FN: truth > 0 and prediction != truth;
    * F1 = 2TP / (2TP + FP + FN).

    So a wrong genotype on a real variant (het called hom-alt) is both an FP and an FN,
    as in hap.py's genotype-matched comparison. An unparseable prediction is a no-call
    (genotype 0): it costs an FN on a real variant and nothing on a hom-ref candidate,
    like a variant missing from the query VCF. NaN when the set has no true and no
    predicted variants of this type. Hand-written: hap.py is not on PyPI and works on
    VCFs, not per-candidate genotypes.
    """
    options = GENOTYPE_OPTIONS if options is None else options
    metric = f"{variant_type}_f1"
    truth = _parse_targets(targets, options, metric)
    pred = np.maximum(_parse_predictions(predictions, options), 0)
    types = np.asarray([str(v).strip().lower() for v in variant_types])
    unknown = set(types) - {"snp", "indel"}
    if unknown:
        raise ValueError(f"{metric}: variant_types must be 'snp' or 'indel', got {sorted(unknown)}")
    sel = types == variant_type
    t, p = truth[sel], pred[sel]
    tp = int(np.sum((t > 0) & (p == t)))
    fp = int(np.sum((p > 0) & (p != t)))
    fn = int(np.sum((t > 0) & (p != t)))
    denom = 2 * tp + fp + fn
    return 100.0 * 2 * tp / denom if denom else float("nan")


# ---------------------------------------------------------------------------
# Clinical scorers that need weights: CheXbert F1, F1-RadGraph
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# Registry and entry points
# ---------------------------------------------------------------------------

MetricKind = Literal["classification", "generation", "genotype", "clinical"]


@dataclass
class _Inputs:
    predictions: list[str]
    targets: list[str]
    options: list[str] | None
    option_probs: np.ndarray | None
    variant_types: list[str] | None
    scorer_paths: dict
    # The four CheXbert metrics share one labelling pass per score() call.
    memo: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MetricSpec:
    """One registered metric.

    ``needs`` names the :func:`score` keyword inputs the metric cannot do without
    ("options", "option_probs", "variant_types"); ``scorer_key`` is the ``scorer_paths``
    key of the weights a clinical metric needs. ``kind`` picks the baseline predictor.
    """

    name: str
    kind: MetricKind
    compute: Callable[[_Inputs], float]
    needs: tuple[str, ...] = ()
    scorer_key: str | None = None
    description: str = ""


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


def _spec(name: str, kind: MetricKind, compute: Callable[[_Inputs], float], description: str, **kw: Any) -> MetricSpec:
    return MetricSpec(name=name, kind=kind, compute=compute, description=description, **kw)


METRICS: dict[str, MetricSpec] = {
    s.name: s
    for s in [
        _spec("accuracy", "classification", lambda x: multiple_choice_accuracy(x.predictions, x.targets, x.options),
              "parsed-choice accuracy (normalised exact match without options)"),
        _spec("macro_f1", "classification", lambda x: macro_f1(x.predictions, x.targets, x.options),
              "mean per-class F1 over the option list", needs=("options",)),
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
    scorer_paths: dict | None = None,
) -> dict[str, float | str]:
    """Compute the named metrics (percent) of ``predictions`` against ``targets``.

    Inputs each metric needs are listed in its :class:`MetricSpec`; a missing one raises
    ``ValueError`` naming the metric. Clinical scorers without usable weights return
    the string ``"skipped: needs local weights at <config key> (...)"`` instead of a number.
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
    inputs = _Inputs(
        predictions=predictions,
        targets=targets,
        options=None if options is None else list(options),
        option_probs=None if option_probs is None else np.asarray(option_probs, dtype=float),
        variant_types=None if variant_types is None else list(variant_types),
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
    scorer_paths: dict | None = None,
) -> dict[str, float | str]:
    """Score of a trivial constant predictor on the same set, per metric.

    * classification (accuracy, macro_f1, macro_auc): always answer the most frequent
      target option; macro_auc scores the constant uniform probabilities, i.e. 50 (NaN if
      only one class is present). Without ``options``, accuracy uses the most frequent
      normalised target string.
    * genotype (snp_f1, indel_f1): always call the most frequent genotype over the whole
      set (both types pooled, so the same constant call as a classifier would make).
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

    common = dict(options=options, variant_types=variant_types, scorer_paths=scorer_paths)
    results: dict[str, float | str] = {}
    for kind, names in by_kind.items():
        probs = None
        if kind == "genotype" or (kind == "classification" and options is not None):
            choice_options = GENOTYPE_OPTIONS if options is None else options
            counts = np.bincount(_parse_targets(targets, choice_options, names[0]), minlength=len(choice_options))
            choices = [choice_options[i] for i in np.flatnonzero(counts == counts.max())]
            if kind == "classification":
                probs = np.full((len(targets), len(choice_options)), 1.0 / len(choice_options))
        elif kind == "classification":
            choices = [_most_frequent([_norm_choice(t) for t in targets])]
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

"""MultiMedBench metrics, every value in percent (0-100) like Med-PaLM M's tables.

One entry point, :func:`score`, turns generated answers into the numbers the paper
reports; :func:`baseline` gives the trivial-predictor value of the same metrics so a
result can be read against a floor. :data:`METRICS` is the registry both use.

One module per metric family, each stating the choices the paper leaves open (and why):
`choice` (multiple-choice answer parsing), `classification` (accuracy, macro-F1, positive-class F1, macro-AUC),
`text` (BLEU, ROUGE-L, CIDEr-D, token F1), `genomics` (SNP-F1, Indel-F1, per candidate and against a truth set), `clinical` (CheXbert
F1, F1-RadGraph; they need local weights) and `registry` (:data:`METRICS`, :func:`score`,
:func:`baseline`). The names below are the package's public API.
"""

from __future__ import annotations

from medpalm_m.metrics.choice import parse_choice
from medpalm_m.metrics.classification import macro_auc, macro_f1, multiple_choice_accuracy, positive_f1
from medpalm_m.metrics.clinical import (CHEXBERT_5_CONDITIONS, CHEXBERT_CONDITIONS, ScorerUnavailable,
                                        chexbert_f1, chexbert_f1_from_labels, f1_radgraph,
                                        radgraph_f1_from_annotations)
from medpalm_m.metrics.genomics import (Alleles, called_alleles, genotype_f1, split_truth_set_f1, truth_set_f1,
                                        vcf_alleles)
from medpalm_m.metrics.registry import METRICS, MetricSpec, baseline, score
from medpalm_m.metrics.text import bleu, cider_d, rouge_l, token_f1

__all__ = [
    "Alleles",
    "CHEXBERT_CONDITIONS",
    "CHEXBERT_5_CONDITIONS",
    "METRICS",
    "MetricSpec",
    "ScorerUnavailable",
    "baseline",
    "bleu",
    "called_alleles",
    "chexbert_f1",
    "chexbert_f1_from_labels",
    "cider_d",
    "f1_radgraph",
    "genotype_f1",
    "macro_auc",
    "macro_f1",
    "multiple_choice_accuracy",
    "parse_choice",
    "positive_f1",
    "radgraph_f1_from_annotations",
    "rouge_l",
    "score",
    "token_f1",
    "split_truth_set_f1",
    "truth_set_f1",
    "vcf_alleles",
]

"""The paper's numbers [Tu et al. 2023, Table 2; zero-shot: Section 6.2, Table 5]: prior SOTA and
Med-PaLM M sizes.

Keyed by `Task.paper_task` and our metric names; values in percent; None where the paper has N/A.
"""

COLUMNS = ("prior SOTA", "MPM 12B", "MPM 84B", "MPM 562B")

PAPER: dict[str, dict[str, tuple[float | None, float, float, float]]] = {
    "MedQA": {"accuracy": (86.50, 29.22, 46.11, 69.68)},
    "MedMCQA": {"accuracy": (72.30, 32.20, 47.60, 62.59)},
    "PubMedQA": {"accuracy": (81.80, 48.60, 71.40, 80.00)},
    "MIMIC-III": {"rouge_l": (38.70, 29.45, 31.47, 32.03), "bleu4": (16.20, 12.14, 15.36, 15.21),
                  "f1_radgraph": (40.80, 31.43, 33.96, 34.71)},
    "VQA-RAD": {"bleu1": (71.03, 64.02, 69.38, 71.27), "token_f1": (None, 50.66, 59.90, 62.06)},
    "Slake-VQA": {"bleu1": (78.60, 90.77, 92.70, 91.64), "token_f1": (78.10, 86.22, 89.28, 87.50)},
    "Path-VQA": {"bleu1": (70.30, 68.97, 70.16, 72.27), "token_f1": (58.40, 57.24, 59.51, 62.69)},
    "MIMIC-CXR report": {
        "chexbert_micro_f1_14": (44.20, 51.41, 53.56, 51.60),
        "chexbert_macro_f1_14": (30.70, 37.31, 39.83, 37.81),
        "chexbert_micro_f1_5": (56.70, 56.54, 57.88, 56.28),
        "chexbert_macro_f1_5": (None, 50.57, 51.60, 49.86),
        "f1_radgraph": (24.40, 25.20, 26.71, 26.06),
        "bleu1": (39.48, 30.90, 32.31, 31.73), "bleu4": (13.30, 10.43, 11.31, 11.50),
        "rouge_l": (29.60, 26.16, 27.29, 27.49), "cider_d": (49.50, 23.43, 26.17, 25.27)},
    # Its macro-F1 is the mean over the 5 conditions of the positive class's F1 (our positive_f1).
    "MIMIC-CXR classification": {"macro_auc": (81.27, 76.67, 78.35, 79.09),
                                 "positive_f1": (None, 38.33, 36.83, 41.57)},
    "PAD-UFES-20": {"macro_auc": (None, 95.57, 97.27, 96.08), "macro_f1": (None, 78.42, 84.32, 77.03)},
    "VinDr-Mammo": {"macro_auc": (64.50, 66.29, 71.76, 71.42), "macro_f1": (None, 29.81, 35.70, 33.90)},
    "CBIS-DDSM mass": {"macro_auc": (None, 70.11, 73.09, 73.31), "macro_f1": (None, 47.23, 49.98, 51.12)},
    "CBIS-DDSM calcification": {"macro_auc": (None, 81.40, 82.22, 80.90),
                                "macro_f1": (70.71, 67.86, 63.81, 63.03)},
    "PrecisionFDA": {"indel_f1": (99.40, 96.42, 97.04, 95.46), "snp_f1": (99.70, 99.35, 99.32, 99.16)},
    # Zero-shot [Section 6.2]. TB: accuracy on Montgomery County, prior SOTA an EfficientNet
    # ensemble trained on those 138 images; the paper gives no AUC. Two-view reports: Table 5.
    "Montgomery TB (zero-shot)": {"accuracy": (92.60, 86.96, 82.60, 87.68)},
    "MIMIC-CXR two-view report (zero-shot)": {
        "chexbert_micro_f1_14": (None, 49.80, 50.54, 48.85),
        "chexbert_macro_f1_14": (None, 37.69, 37.78, 37.29),
        "chexbert_micro_f1_5": (None, 54.49, 56.37, 54.36),
        "chexbert_macro_f1_5": (None, 48.33, 51.23, 48.49),
        "f1_radgraph": (None, 26.73, 28.30, 27.28),
        "bleu1": (None, 33.31, 34.58, 33.83), "bleu4": (None, 11.51, 12.44, 12.47),
        "rouge_l": (None, 27.84, 28.71, 28.49), "cider_d": (None, 27.58, 29.80, 29.80)},
}

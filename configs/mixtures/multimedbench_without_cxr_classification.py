"""The transfer ablation [Tu et al. 2023, Table 6]: the paper's mixture without MIMIC-CXR
classification, the rest at their Table A.1 weights (renormalised when sampled).

The paper trained the 84B on it and found the report model still classifies the five
conditions (macro-AUC 73.88, macro-F1 43.97, never trained to; the full mixture: 78.35 / 36.83)
and writes slightly worse reports. Train, then evaluate the MultiMedBench suite, which still holds
mimic_cxr_classification:

    python -m medpalm_m.train --config=configs/medpalm_m_84b.py:multimedbench_without_cxr_classification --workdir=W ...
    python -m medpalm_m.evaluate --config=configs/medpalm_m_84b.py:multimedbench_without_cxr_classification --workdir=W --suite=multimedbench
"""

from configs.mixtures import multimedbench

MIXTURE = {task: weight for task, weight in multimedbench.MIXTURE.items()
           if task != "mimic_cxr_classification"}

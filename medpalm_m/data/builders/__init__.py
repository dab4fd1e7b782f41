"""Real MultiMedBench: one TFDS builder per source dataset, read from the user's manual download.

Each module defines a builder (see `base.ManualBuilder`) and registers the MultiMedBench task(s)
it feeds under the names used by `configs/mixtures/multimedbench.py`. Importing this package
registers every real task.
"""

from __future__ import annotations

# Text and VQA datasets.
from medpalm_m.data.builders import (medmcqa, medqa, mimic_iii, path_vqa, pubmedqa, slake,  # noqa: F401
                                     vqa_rad)
# Imaging and genomics datasets.
from medpalm_m.data.builders import (cbis_ddsm, mimic_cxr, pad_ufes_20, precision_fda,  # noqa: F401
                                     vindr_mammo)
# Evaluation only: zero-shot tuberculosis detection and two-view report generation.
from medpalm_m.data.builders import mimic_cxr_two_view, tuberculosis  # noqa: F401

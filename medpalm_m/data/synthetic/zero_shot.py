"""Zero-shot analogs on the synthetic chest X-rays: tuberculosis detection and two-view reports.

Evaluation only (a test split and nothing to train on), so they exercise the mechanics of the
paper's zero-shot results (§6.2) on a CPU:

* `synthetic_tb_zero_shot` (and its chain-of-thought variant `synthetic_tb_zero_shot_cot`):
  frontal radiographs of the MIMIC-CXR analog, half of them with an upper-lobe cavity
  (`chest_xray.Findings.tuberculosis`), a finding no training task draws or names, asked with
  the Montgomery task's question and its text-only exemplar.
* `synthetic_mimic_cxr_two_view`: one study drawn twice, frontal and lateral, with the frontal
  view's report: two `<img>` in one prompt, where training shows one.

Neither builder draws a training example of another task, and neither is in the tokenizer's
corpus, so MultiMedBench-mini's existing datasets and tokenizer are byte-for-byte what they were.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from medpalm_m.data import prompts
from medpalm_m.data import tasks
from medpalm_m.data.synthetic import base
from medpalm_m.data.synthetic import chest_xray

FRONTAL_VIEWS = ("PA", "AP")
_FRONTAL_PROBABILITIES = (0.55, 0.45)  # the MIMIC-CXR analog's PA : AP
_TUBERCULOSIS_PREVALENCE = 0.5


def _radiograph_feature() -> tfds.features.Tensor:
  return tfds.features.Tensor(shape=(None, None, 1), dtype=np.uint8, encoding="zlib")


def _frontal_view(rng: np.random.Generator) -> str:
  return str(rng.choice(FRONTAL_VIEWS, p=_FRONTAL_PROBABILITIES))


class SyntheticTbZeroShot(base.SyntheticBuilder):
  """Frontal radiographs with or without an upper-lobe cavity, over the usual five findings."""
  name = "synthetic_tb_zero_shot"
  SPLIT_SIZES = {"test": 200}
  DESCRIPTION = __doc__

  def features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),
        "image": _radiograph_feature(),
        "view": tfds.features.Text(),
        "label": tfds.features.ClassLabel(names=prompts.CHEST_XRAY_ANSWERS),  # Yes: tuberculosis
    })

  def generate(self, rng: np.random.Generator, index: int, split: str) -> dict[str, Any]:
    findings = chest_xray.sample_findings(rng)
    tuberculous = bool(rng.random() < _TUBERCULOSIS_PREVALENCE)
    if tuberculous:
      findings = dataclasses.replace(findings, tuberculosis=str(rng.choice(["right", "left"])))
    view = _frontal_view(rng)
    return {"image": chest_xray.draw_radiograph(rng, findings, view), "view": view,
            "label": int(tuberculous)}


class SyntheticMimicCxrTwoView(base.SyntheticBuilder):
  """One synthetic study drawn as a frontal and a lateral radiograph, with the frontal report."""
  name = "synthetic_mimic_cxr_two_view"
  SPLIT_SIZES = {"test": 150}
  DESCRIPTION = __doc__

  def features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),
        "frontal_image": _radiograph_feature(),
        "lateral_image": _radiograph_feature(),
        "frontal_view": tfds.features.Text(),
        "indication": tfds.features.Text(),
        "findings": tfds.features.Text(),
    })

  def generate(self, rng: np.random.Generator, index: int, split: str) -> dict[str, Any]:
    findings = chest_xray.sample_findings(rng)
    view = _frontal_view(rng)
    return {
        "frontal_image": chest_xray.draw_radiograph(rng, findings, view),
        "lateral_image": chest_xray.draw_radiograph(rng, findings, "LATERAL"),
        "frontal_view": view,
        "indication": str(rng.choice(chest_xray.INDICATIONS)),
        # The frontal view's report: only it can tell the sides apart.
        "findings": chest_xray.write_report(findings, view),
    }


TB_TASK, TB_COT_TASK = prompts.tuberculosis_tasks(
    "synthetic_tb_zero_shot", SyntheticTbZeroShot, instruction=prompts.SYNTHETIC_TUBERCULOSIS_INSTRUCTION,
    paper_task="Montgomery TB (zero-shot)")

TWO_VIEW_TASK = tasks.register(tasks.Task(
    name="synthetic_mimic_cxr_two_view",
    builder=SyntheticMimicCxrTwoView,
    formatter=prompts.two_view_report_formatter("synthetic_mimic_cxr_two_view",
                                                prompts.SYNTHETIC_MIMIC_CXR_REPORT_INSTRUCTION),
    metrics=prompts.REPORT_METRICS,
    num_exemplars=1,
    # Evaluation only: the exemplar is another study of the same split (never the example itself).
    splits={"test": "test"},
    exemplar_split="test",
    paper_task="MIMIC-CXR two-view report (zero-shot)",
))

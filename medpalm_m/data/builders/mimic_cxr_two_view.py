"""MIMIC-CXR two-view report generation: one frontal and one lateral image of a study -> findings.

Med-PaLM M trains on one image per report and was asked zero-shot for reports from two views
[§6.2.3, Table 5]. This builder reads the same local MIMIC-CXR-JPG copy as `mimic_cxr` and keeps
the studies that have exactly one frontal (PA or AP) and one lateral image, with a findings
section of at most 800 characters (the single-view selection). Evaluation only: the test split
is scored and the validate split supplies the text-only exemplar, so no mixture can train on it.
"""

from __future__ import annotations

import collections
import os
from typing import Iterator, Sequence

import tensorflow_datasets as tfds

from medpalm_m.data import prompts
from medpalm_m.data import tasks
from medpalm_m.data.builders import base
from medpalm_m.data.builders import mimic_cxr

SPLITS = ("validate", "test")
FRONTAL_VIEWS = ("PA", "AP")
LATERAL_VIEW = "LATERAL"


def two_view_studies(entries: Sequence[mimic_cxr.ImageEntry]) -> list[tuple[mimic_cxr.ImageEntry, mimic_cxr.ImageEntry]]:
  """(frontal, lateral) of each study with exactly one of each and no other image, in study order."""
  by_study: dict[str, list[mimic_cxr.ImageEntry]] = collections.defaultdict(list)
  for entry in entries:
    by_study[entry.study_id].append(entry)
  pairs = []
  for images in by_study.values():
    frontal = [e for e in images if e.view in FRONTAL_VIEWS]
    lateral = [e for e in images if e.view == LATERAL_VIEW]
    if len(images) == 2 and len(frontal) == 1 and len(lateral) == 1:
      pairs.append((frontal[0], lateral[0]))
  return pairs


class MimicCxrTwoView(base.ManualBuilder):
  """MIMIC-CXR studies with one frontal and one lateral view, and their findings."""
  name = "mimic_cxr_two_view"
  DESCRIPTION = __doc__
  HOMEPAGE = mimic_cxr.MimicCxrReport.HOMEPAGE
  OBTAIN = mimic_cxr.MimicCxrReport.OBTAIN
  CITATION = mimic_cxr.MimicCxrReport.CITATION
  IMAGE_MAX_SIDE = mimic_cxr.MimicCxrReport.IMAGE_MAX_SIDE
  REQUIRED_FILES = mimic_cxr.MimicCxrReport.REQUIRED_FILES

  def features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),  # the study id
        "frontal_image": self.image_feature(),
        "lateral_image": self.image_feature(),
        "frontal_view": tfds.features.Text(),  # PA or AP
        "indication": tfds.features.Text(),
        "findings": tfds.features.Text(),
        "subject_id": tfds.features.Text(),
    })

  def generate_splits(self, manual_dir: str):
    entries = [e for e in mimic_cxr.read_image_index(self, manual_dir) if e.split in SPLITS]
    reports = mimic_cxr._Reports(manual_dir)  # noqa: SLF001 (the single-view builder's reader)
    return {split: self._records(two_view_studies([e for e in entries if e.split == split]), reports,
                                 manual_dir)
            for split in SPLITS}

  def _records(self, pairs, reports, manual_dir: str) -> Iterator[base.KeyedRecord]:
    metadata_path = os.path.join(manual_dir, mimic_cxr.METADATA_CSV)
    for frontal, lateral in pairs:
      text = reports.read(frontal.subject_id, frontal.study_id)
      if text is None:
        self.malformed(metadata_path, frontal.line, f"no report for study s{frontal.study_id} at "
                       f"{reports.where(frontal.subject_id, frontal.study_id)}", entry=frontal.study_id)
        continue
      findings, indication = mimic_cxr.findings_and_indication(text)
      if not findings or len(findings) > mimic_cxr.MAX_FINDINGS_CHARS:
        continue  # the single-view task's selection, not a malformed record
      frontal_image = None
      with self.record_at(metadata_path, frontal.line, entry=frontal.study_id):
        frontal_image = self.load_image(frontal.path)
      if frontal_image is None:
        continue  # skipped and counted: the frontal image does not decode
      with self.record_at(metadata_path, lateral.line, entry=lateral.study_id):
        yield frontal.study_id, {
            "id": frontal.study_id, "frontal_image": frontal_image,
            "lateral_image": self.load_image(lateral.path), "frontal_view": frontal.view,
            "indication": indication, "findings": findings, "subject_id": frontal.subject_id}


TASK = tasks.register(tasks.Task(
    name="mimic_cxr_two_view",
    builder=MimicCxrTwoView,
    formatter=prompts.two_view_report_formatter("mimic_cxr_two_view", prompts.MIMIC_CXR_REPORT_INSTRUCTION),
    metrics=prompts.REPORT_METRICS,
    num_exemplars=1,
    splits={"validate": "validate", "test": "test"},
    exemplar_split="validate",
    paper_task="MIMIC-CXR two-view report (zero-shot)",
))

"""MIMIC-CXR (JPG): report generation (findings section) and 5-condition classification.

Reads a local copy of PhysioNet's MIMIC-CXR-JPG (images, metadata, official split, CheXpert
labels) and, for report generation, the free-text reports of MIMIC-CXR. Every image is its own
example, whatever its view, as in Med-PaLM M:

* `mimic_cxr_report`: the indication and one image -> the report's FINDINGS section. Images
  whose report has no findings section, or findings longer than 800 characters, are left out
  (paper: 353,542 / 2,866 / 4,834 train / validate / test).
* `mimic_cxr_classification`: "Is <condition> indicated by the image? (A) No (B) Yes", with
  CheXpert labels: positive (1.0) is Yes; negative (0.0), uncertain (-1.0) and blank are No.
  As the paper: train asks 11 CheXpert conditions (`CONDITIONS`) and repeats the positives of
  consolidation, enlarged cardiomediastinum, fracture and pneumonia twice; validate and test ask
  the 5 it scores (`SCORED_CONDITIONS`: atelectasis, cardiomegaly, consolidation, edema, pleural
  effusion) of every image, so each condition's AUC is computed on the whole split.
  Ours, where the paper is silent: which 11 of CheXpert's 14 observations (the 14 without "No
  Finding", which is no abnormality, "Support Devices", which is no pathology, and "Pleural
  Other", the rarest and least specific), and that train asks one condition per image, rotating
  through the 11 in image order (the paper gives no count of its training questions).

Images are stored with their longer side at 224 px, the model's input size: at 512 px the
377,110 radiographs would take several hundred GB.
"""

from __future__ import annotations

import dataclasses
import os
import re
import zipfile
from typing import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from medpalm_m.data import prompts
from medpalm_m.data import tasks
from medpalm_m.data import tokenizer
from medpalm_m.data.builders import base
from medpalm_m.data.builders import referenced_files

METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv.gz"
SPLIT_CSV = "mimic-cxr-2.0.0-split.csv.gz"
CHEXPERT_CSV = "mimic-cxr-2.0.0-chexpert.csv.gz"
REPORTS_ZIP = "mimic-cxr-reports.zip"
SPLITS = ("train", "validate", "test")
MAX_FINDINGS_CHARS = 800
# CheXpert column -> the name asked in the prompt: the 11 trained on, the 5 scored first.
CONDITIONS = {"Atelectasis": "atelectasis", "Cardiomegaly": "cardiomegaly",
              "Consolidation": "consolidation", "Edema": "edema", "Pleural Effusion": "pleural effusion",
              "Enlarged Cardiomediastinum": "enlarged cardiomediastinum", "Fracture": "fracture",
              "Lung Lesion": "lung lesion", "Lung Opacity": "lung opacity", "Pneumonia": "pneumonia",
              "Pneumothorax": "pneumothorax"}
SCORED_CONDITIONS = ("atelectasis", "cardiomegaly", "consolidation", "edema", "pleural effusion")
# Train: copies of each positive record asked about these (the paper's up-sampling).
UPSAMPLED_POSITIVES = {"consolidation": 2, "enlarged cardiomediastinum": 2, "fracture": 2, "pneumonia": 2}
_LATERAL_VIEWS = {"LL": "LATERAL", "XTABLE LATERAL": "LATERAL"}

_HOMEPAGE = "https://physionet.org/content/mimic-cxr-jpg/2.0.0/"
_OBTAIN = ("Credentialed PhysioNet access (CITI training, signed data use agreement). Download "
           "MIMIC-CXR-JPG 2.0.0 (the three .csv.gz files and files/) and, for report generation, "
           "mimic-cxr-reports.zip from https://physionet.org/content/mimic-cxr/2.0.0/ (keep it "
           "zipped, or unzip it here so reports sit at files/pXX/pSUBJECT/sSTUDY.txt).")


# Reports --------------------------------------------------------------------------------------
# A section header is an upper-case phrase at the start of a line followed by a colon, like
# "FINDINGS:" or "INDICATION:"; "FINAL REPORT" (no colon) is not one.
_SECTION = re.compile(r"^[ \t]*([A-Z][A-Z /()&,-]*[A-Z)])[ \t]*:", re.MULTILINE)
_INDICATION_SECTIONS = ("INDICATION", "CLINICAL INDICATION", "HISTORY", "CLINICAL HISTORY",
                        "REASON FOR EXAM", "REASON FOR EXAMINATION", "CLINICAL INFORMATION")


def report_sections(text: str) -> dict[str, str]:
  """Section name -> its text with whitespace collapsed; a repeated section keeps the first."""
  matches = list(_SECTION.finditer(text))
  sections: dict[str, str] = {}
  for match, following in zip(matches, matches[1:] + [None]):
    end = following.start() if following is not None else len(text)
    sections.setdefault(match.group(1), " ".join(text[match.end():end].split()))
  return sections


def findings_and_indication(text: str) -> tuple[str, str]:
  sections = report_sections(text)
  indication = next((sections[name] for name in _INDICATION_SECTIONS if sections.get(name)), "")
  return sections.get("FINDINGS", ""), indication


class _Reports:
  """Report text by study id, from mimic-cxr-reports.zip or from the unzipped files/ tree."""

  def __init__(self, manual_dir: str):
    self.manual_dir = manual_dir
    zip_path = os.path.join(manual_dir, REPORTS_ZIP)
    self.archive = zipfile.ZipFile(zip_path) if os.path.isfile(zip_path) else None
    self.entries: dict[str, str] = {}
    if self.archive is not None:
      # Keyed by the file name, so any top folder inside the zip works.
      for name in self.archive.namelist():
        stem = os.path.basename(name)
        if stem.startswith("s") and stem.endswith(".txt"):
          self.entries[stem[:-4]] = name

  def where(self, subject_id: str, study_id: str) -> str:
    relative = os.path.join("files", f"p{subject_id[:2]}", f"p{subject_id}", f"s{study_id}.txt")
    if self.archive is not None:
      return f"{REPORTS_ZIP}:{self.entries.get(f's{study_id}', relative)}"
    return os.path.join(self.manual_dir, relative)

  def read(self, subject_id: str, study_id: str) -> str | None:
    if self.archive is not None:
      name = self.entries.get(f"s{study_id}")
      return None if name is None else self.archive.read(name).decode("utf-8", errors="replace")
    path = self.where(subject_id, study_id)
    if not os.path.isfile(path):
      return None
    with open(path, encoding="utf-8", errors="replace") as f:
      return f.read()


# Index ----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ImageEntry:
  dicom_id: str
  subject_id: str
  study_id: str
  view: str
  split: str
  path: str
  line: int  # of the metadata CSV


def prompt_view(view_position: str) -> str:
  """MIMIC's ViewPosition as the prompt names it: PA, AP, LATERAL (also for LL), ... or ''."""
  view = view_position.strip().upper()
  return _LATERAL_VIEWS.get(view, view)


def read_image_index(builder: base.ManualBuilder, manual_dir: str) -> list[ImageEntry]:
  """Every image of the metadata CSV with its official split, in (subject, study, image) order."""
  split_path = os.path.join(manual_dir, SPLIT_CSV)
  split_of: dict[str, str] = {}
  for line, row in builder.csv_rows(split_path, ("dicom_id", "split")):
    with builder.record_at(split_path, line, entry=row.get("dicom_id")):
      if row["split"] not in SPLITS:
        raise ValueError(f"split {row['split']!r} is not one of {SPLITS}")
      split_of[row["dicom_id"]] = row["split"]
  metadata_path = os.path.join(manual_dir, METADATA_CSV)
  entries = []
  for line, row in builder.csv_rows(metadata_path, ("dicom_id", "subject_id", "study_id", "ViewPosition")):
    with builder.record_at(metadata_path, line, entry=row.get("dicom_id")):
      dicom_id, subject_id, study_id = row["dicom_id"], row["subject_id"], row["study_id"]
      if not (subject_id.isdigit() and study_id.isdigit()):
        raise ValueError(f"subject_id {subject_id!r} and study_id {study_id!r} must be numbers")
      if dicom_id not in split_of:
        raise KeyError(f"image {dicom_id} is not in {SPLIT_CSV}")
      path = os.path.join(manual_dir, "files", f"p{subject_id[:2]}", f"p{subject_id}", f"s{study_id}",
                          f"{dicom_id}.jpg")
      entries.append(ImageEntry(dicom_id, subject_id, study_id, prompt_view(row["ViewPosition"]),
                                split_of[dicom_id], path, line))
  entries.sort(key=lambda e: (e.subject_id, e.study_id, e.dicom_id))
  present = referenced_files.keep_present(
      builder, [referenced_files.Reference(e.path, metadata_path, e.line) for e in entries])
  return [e for e, ok in zip(entries, present) if ok]


def read_chexpert(builder: base.ManualBuilder, manual_dir: str) -> dict[str, tuple[int, ...]]:
  """study id -> 0/1 per CONDITIONS (1.0 is positive; 0.0, -1.0 and blank are negative)."""
  path = os.path.join(manual_dir, CHEXPERT_CSV)
  labels = {}
  for line, row in builder.csv_rows(path, ("study_id", *CONDITIONS)):
    with builder.record_at(path, line, entry=row.get("study_id")):
      values = []
      for column in CONDITIONS:
        value = row[column].strip()
        if value not in ("", "1.0", "0.0", "-1.0", "1", "0", "-1"):
          raise ValueError(f"{column} is {value!r}; CheXpert labels are 1.0, 0.0, -1.0 or blank")
        values.append(int(value != "" and float(value) == 1.0))
      labels[row["study_id"]] = tuple(values)
  return labels


# Builders -------------------------------------------------------------------------------------
class _MimicCxrBuilder(base.ManualBuilder, skip_registration=True):
  HOMEPAGE = _HOMEPAGE
  OBTAIN = _OBTAIN
  IMAGE_MAX_SIDE = 224
  CITATION = ("Johnson et al., MIMIC-CXR-JPG, a large publicly available database of labeled chest "
              "radiographs, arXiv:1901.07042 (2019).")


class MimicCxrReport(_MimicCxrBuilder):
  """MIMIC-CXR report generation: (view, indication, image) -> findings."""
  name = "mimic_cxr_report"
  DESCRIPTION = __doc__
  REQUIRED_FILES = (METADATA_CSV, SPLIT_CSV, (REPORTS_ZIP, "files/p1?/p*/s*.txt"), "files")

  def features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),  # the image's dicom_id
        "image": self.image_feature(),
        "view": tfds.features.Text(),
        "indication": tfds.features.Text(),
        "findings": tfds.features.Text(),
        "subject_id": tfds.features.Text(),
        "study_id": tfds.features.Text(),
    })

  def generate_splits(self, manual_dir: str):
    entries = read_image_index(self, manual_dir)
    reports = _Reports(manual_dir)
    return {split: self._records([e for e in entries if e.split == split], reports, manual_dir)
            for split in SPLITS}

  def _records(self, entries: Sequence[ImageEntry], reports: _Reports,
               manual_dir: str) -> Iterator[base.KeyedRecord]:
    metadata_path = os.path.join(manual_dir, METADATA_CSV)
    study, text = None, None
    for entry in entries:  # sorted by study, so each report is read once
      if entry.study_id != study:
        study, text = entry.study_id, reports.read(entry.subject_id, entry.study_id)
      if text is None:
        self.malformed(metadata_path, entry.line, f"no report for study s{entry.study_id} at "
                       f"{reports.where(entry.subject_id, entry.study_id)}", entry=entry.dicom_id)
        continue
      findings, indication = findings_and_indication(text)
      if not findings or len(findings) > MAX_FINDINGS_CHARS:
        continue  # the paper's selection, not a malformed record
      with self.record_at(metadata_path, entry.line, entry=entry.dicom_id):
        yield entry.dicom_id, {
            "id": entry.dicom_id, "image": self.load_image(entry.path), "view": entry.view,
            "indication": indication, "findings": findings, "subject_id": entry.subject_id,
            "study_id": entry.study_id}


class MimicCxrClassification(_MimicCxrBuilder):
  """MIMIC-CXR classification: (view, image, condition) -> No / Yes."""
  name = "mimic_cxr_classification"
  DESCRIPTION = __doc__
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.1.0": "Train asks the paper's 11 conditions with its up-sampling; 5 are scored."}
  REQUIRED_FILES = (METADATA_CSV, SPLIT_CSV, CHEXPERT_CSV, "files")

  def features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),  # <dicom_id>-<condition>[-copy<k>]
        "image": self.image_feature(),
        "view": tfds.features.Text(),
        "condition": tfds.features.Text(),  # one of CONDITIONS' prompt names
        "label": tfds.features.ClassLabel(names=prompts.CHEST_XRAY_ANSWERS),
        "subject_id": tfds.features.Text(),
        "study_id": tfds.features.Text(),
    })

  def generate_splits(self, manual_dir: str):
    labels = read_chexpert(self, manual_dir)
    # Studies without a CheXpert row have no labels to learn or score; they are left out.
    entries = [e for e in read_image_index(self, manual_dir) if e.study_id in labels]
    return {split: self._records([e for e in entries if e.split == split], labels, split, manual_dir)
            for split in SPLITS}

  def _records(self, entries: Sequence[ImageEntry], labels: dict[str, tuple[int, ...]], split: str,
               manual_dir: str) -> Iterator[base.KeyedRecord]:
    metadata_path = os.path.join(manual_dir, METADATA_CSV)
    names = list(CONDITIONS.values())
    for index, entry in enumerate(entries):
      asked = [names[index % len(names)]] if split == "train" else SCORED_CONDITIONS
      with self.record_at(metadata_path, entry.line, entry=entry.dicom_id):
        image = self.load_image(entry.path)
        for condition in asked:
          label = labels[entry.study_id][names.index(condition)]
          copies = UPSAMPLED_POSITIVES.get(condition, 1) if split == "train" and label else 1
          for copy in range(copies):
            key = f"{entry.dicom_id}-{condition.replace(' ', '_')}" + (f"-copy{copy}" if copy else "")
            yield key, {"id": key, "image": image, "view": entry.view, "condition": condition,
                        "label": label, "subject_id": entry.subject_id, "study_id": entry.study_id}


# Tasks ----------------------------------------------------------------------------------------


def _given_image(record: tasks.Record) -> str:
  view = tasks.text(record["view"])
  return (f"Given the {view} view X-ray image {tokenizer.IMAGE_MARKER}." if view
          else f"Given the X-ray image {tokenizer.IMAGE_MARKER}.")


def _report_query(record: tasks.Record) -> str:
  indication = tasks.text(record["indication"]).rstrip(". ")
  reason = f" Reason for the study: {indication}." if indication else ""
  return (f"{_given_image(record)}{reason} "
          "Q: Describe the findings in the image following the instructions. A:")


def format_report(record: tasks.Record, exemplars: Sequence[tasks.Record]) -> tasks.Example:
  parts = [prompts.MIMIC_CXR_REPORT_INSTRUCTION]
  for exemplar in exemplars:  # text-only: its image is the literal text "<img>"
    parts.append(tokenizer.escape_image_markers(_report_query(exemplar)) + " "
                 + prompts.answer(tasks.text(exemplar["findings"])))
  parts.append(_report_query(record))
  return {"id": tasks.text(record["id"]), "task": "mimic_cxr_report",
          "images": [np.asarray(record["image"])], "prompt": " ".join(parts),
          "target": prompts.answer(tasks.text(record["findings"]))}


def _classification_query(record: tasks.Record) -> str:
  return (f"{_given_image(record)} Q: Is {tasks.text(record['condition'])} indicated by the image? "
          f"{prompts.option_list(prompts.CHEST_XRAY_ANSWERS)} A:")


def format_classification(record: tasks.Record, exemplars: Sequence[tasks.Record]) -> tasks.Example:
  parts = [prompts.MIMIC_CXR_CLASSIFICATION_INSTRUCTION]
  for exemplar in exemplars:
    parts.append(tokenizer.escape_image_markers(_classification_query(exemplar)) + " "
                 + prompts.answer(prompts.CHEST_XRAY_ANSWERS[int(exemplar["label"])]))
  parts.append(_classification_query(record))
  label = int(record["label"])
  return {"id": tasks.text(record["id"]), "task": "mimic_cxr_classification",
          "images": [np.asarray(record["image"])], "prompt": " ".join(parts),
          "target": prompts.answer(prompts.CHEST_XRAY_ANSWERS[label]), "label": label,
          # The paper's metrics are means over the five conditions.
          "condition": tasks.text(record["condition"])}


REPORT_TASK = tasks.register(tasks.Task(
    name="mimic_cxr_report",
    builder=MimicCxrReport,
    formatter=format_report,
    metrics=("bleu1", "bleu4", "rouge_l", "cider_d", "chexbert_micro_f1_14", "chexbert_macro_f1_14",
             "chexbert_micro_f1_5", "chexbert_macro_f1_5", "f1_radgraph"),
    num_exemplars=1,
    paper_task="MIMIC-CXR report",
))

CLASSIFICATION_TASK = tasks.register(tasks.Task(
    name="mimic_cxr_classification",
    builder=MimicCxrClassification,
    formatter=format_classification,
    # Per condition, averaged over the conditions: the paper's 5-condition macro-AUC and macro-F1
    # (its macro-F1 is the F1 of "Yes", see metrics.classification.positive_f1).
    metrics=("macro_auc", "positive_f1"),
    options=prompts.CHEST_XRAY_ANSWERS,
    num_exemplars=1,
    paper_task="MIMIC-CXR classification",
))

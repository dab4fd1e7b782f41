"""CBIS-DDSM mass and calcification: the pathology of one abnormality from its ROI crop (DICOM).

Reads TCIA's release: the four case-description CSVs and the DICOM tree the NBIA Data Retriever
writes. The CSVs name each file `<folder>/<StudyInstanceUID>/<SeriesInstanceUID>/00000x.dcm`,
but the download is laid out differently (`<folder>/<date-and-description>/<series
description>/1-1.dcm`, and the crop and the ROI mask of an abnormality share one series in an
order that does not follow the CSV's 000000 / 000001). So the builder reads the header of every
DICOM file under the manual directory and matches each CSV row to its files by series UID; of a
series' files it takes the one whose SeriesDescription says "cropped images", or, if none says
so, the smallest image that is not described as a mask (a mask is full-mammogram sized). A file
at the CSV's literal path is used when no DICOM of the series is found.

Three classes (BENIGN, BENIGN_WITHOUT_CALLBACK, MALIGNANT), the official train / test split
(mass 1,318 / 378, calcification 1,544 / 326 in the paper), ROI crop + view as in the paper, and
0-shot prompts without an instruction [Med-PaLM M Table A.9].
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Iterator, Sequence

import tensorflow_datasets as tfds

from medpalm_m.data import prompts
from medpalm_m.data import tasks
from medpalm_m.data.builders import base
from medpalm_m.data.builders import referenced_files

# The DICOM tree, whether the manual directory holds CBIS-DDSM/ or is that folder.
_DICOM_TREE = ("*/*/*/*.dcm", "*/*/*/*/*.dcm")
_DICOM_HEADER_TAGS = ["StudyInstanceUID", "SeriesInstanceUID", "SeriesDescription", "Rows", "Columns"]


@dataclasses.dataclass(frozen=True)
class DicomFile:
  path: str
  description: str
  pixels: int


def index_dicoms(root: str) -> dict[str, list[DicomFile]]:
  """SeriesInstanceUID -> the DICOM files of that series under root (headers only)."""
  import pydicom
  from pydicom.errors import InvalidDicomError
  series: dict[str, list[DicomFile]] = {}
  for folder, _, names in os.walk(root):
    for name in sorted(names):
      if not name.lower().endswith(".dcm"):
        continue
      path = os.path.join(folder, name)
      try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_DICOM_HEADER_TAGS)
      except (InvalidDicomError, OSError, ValueError, EOFError):
        continue  # not a readable DICOM: if a row needs it, that row reports its file missing
      uid = str(header.get("SeriesInstanceUID", ""))
      if uid:
        series.setdefault(uid, []).append(DicomFile(
            path, str(header.get("SeriesDescription", "")),
            int(header.get("Rows", 0) or 0) * int(header.get("Columns", 0) or 0)))
  return series


def pick_crop(files: Sequence[DicomFile]) -> DicomFile | None:
  """The ROI crop among a series' files (see the module docstring), or None if there is none."""
  not_masks = [f for f in files if "mask" not in f.description.lower()]
  cropped = [f for f in not_masks if "crop" in f.description.lower()]
  if cropped:
    return cropped[0]
  return min(not_masks, key=lambda f: f.pixels) if not_masks else None


@dataclasses.dataclass(frozen=True)
class _Row:
  key: str  # the crop's folder name, e.g. Mass-Training_P_00001_LEFT_CC_1
  label: int
  view: str
  patient_id: str
  laterality: str
  abnormality_id: str
  path: str
  line: int


class _CbisDdsmBuilder(base.ManualBuilder, skip_registration=True):
  ABNORMALITY = ""  # "mass" | "calc": the CSV file prefix
  HOMEPAGE = "https://www.cancerimagingarchive.net/collection/cbis-ddsm/"
  OBTAIN = ("Open access (CC BY 3.0): download the four case-description CSVs and, with the NBIA "
            "Data Retriever, the DICOM images (the crops are what is read; full mammograms and "
            "masks may be there too). Any folder layout under the manual directory works.")
  CITATION = ("Lee et al., A curated mammography data set for use in computer-aided detection and "
              "diagnosis research, Scientific Data 4 (2017).")
  DESCRIPTION = __doc__

  def features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),  # the crop's folder name
        "image": self.image_feature(),
        "label": tfds.features.ClassLabel(names=prompts.PATHOLOGIES),
        "view": tfds.features.Text(),  # CC | MLO
        "patient_id": tfds.features.Text(),
        "laterality": tfds.features.Text(),  # LEFT | RIGHT
        "abnormality_id": tfds.features.Text(),
    })

  def generate_splits(self, manual_dir: str):
    series = index_dicoms(manual_dir)
    splits = {}
    for split in ("train", "test"):
      csv_path = os.path.join(manual_dir, f"{self.ABNORMALITY}_case_description_{split}_set.csv")
      rows = self._read_rows(csv_path, manual_dir, series)
      present = referenced_files.keep_present(
          self, [referenced_files.Reference(r.path, csv_path, r.line) for r in rows])
      splits[split] = self._records([r for r, ok in zip(rows, present) if ok], csv_path)
    return splits

  def _read_rows(self, csv_path: str, manual_dir: str, series: dict[str, list[DicomFile]]) -> list[_Row]:
    columns = ("patient_id", "left or right breast", "image view", "abnormality id", "pathology",
               "cropped image file path")
    rows, keys = [], set()
    for line, row in self.csv_rows(csv_path, columns):
      with self.record_at(csv_path, line, entry=row.get("patient_id")):
        if row["pathology"] not in prompts.PATHOLOGIES:
          raise ValueError(f"pathology {row['pathology']!r} is not one of {prompts.PATHOLOGIES}")
        # Paths in the CSVs sometimes end in a newline or spaces.
        relative = row["cropped image file path"].strip()
        parts = relative.split("/")
        if len(parts) < 4:
          raise ValueError(f"cropped image file path {relative!r} is not "
                           "<folder>/<study UID>/<series UID>/<file>")
        if parts[0] in keys:
          raise ValueError(f"abnormality {parts[0]} appears twice")
        keys.add(parts[0])
        crop = pick_crop(series.get(parts[-2], ()))
        rows.append(_Row(parts[0], prompts.PATHOLOGIES.index(row["pathology"]), row["image view"].strip(),
                         row["patient_id"], row["left or right breast"].strip(),
                         row["abnormality id"].strip(),
                         crop.path if crop else os.path.join(manual_dir, *parts), line))
    return rows

  def _records(self, rows: Sequence[_Row], csv_path: str) -> Iterator[base.KeyedRecord]:
    for row in rows:
      with self.record_at(csv_path, row.line, entry=row.key):
        yield row.key, {"id": row.key, "image": self.load_image(row.path), "label": row.label,
                        "view": row.view, "patient_id": row.patient_id,
                        "laterality": row.laterality, "abnormality_id": row.abnormality_id}


class CbisDdsmMass(_CbisDdsmBuilder):
  """CBIS-DDSM mass ROI crops with their pathology."""
  name = "cbis_ddsm_mass"
  ABNORMALITY = "mass"
  REQUIRED_FILES = ("mass_case_description_train_set.csv", "mass_case_description_test_set.csv",
                    _DICOM_TREE)


class CbisDdsmCalc(_CbisDdsmBuilder):
  """CBIS-DDSM calcification ROI crops with their pathology."""
  name = "cbis_ddsm_calc"
  ABNORMALITY = "calc"
  REQUIRED_FILES = ("calc_case_description_train_set.csv", "calc_case_description_test_set.csv",
                    _DICOM_TREE)


# Tasks: the synthetic analog's formatter is the paper's 0-shot prompt verbatim -----------------
MASS_TASK = tasks.register(tasks.Task(
    name="cbis_ddsm_mass",
    builder=CbisDdsmMass,
    formatter=functools.partial(prompts.format_cbis, task_name="cbis_ddsm_mass",
                                abnormality="mass"),
    metrics=("macro_auc", "macro_f1"),
    options=prompts.PATHOLOGIES,
    paper_task="CBIS-DDSM mass",
))

CALC_TASK = tasks.register(tasks.Task(
    name="cbis_ddsm_calc",
    builder=CbisDdsmCalc,
    formatter=functools.partial(prompts.format_cbis, task_name="cbis_ddsm_calc",
                                abnormality="calcification"),
    metrics=("macro_auc", "macro_f1"),
    options=prompts.PATHOLOGIES,
    paper_task="CBIS-DDSM calcification",
))

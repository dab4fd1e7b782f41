"""VinDr-Mammo: breast-level BI-RADS (1-5) of full-field digital mammograms (DICOM).

Reads PhysioNet's release: `breast-level_annotations.csv` (one row per image, with its official
split "training" / "test") and `images/<study_id>/<image_id>.dicom`. The label is the row's
`breast_birads`, the breast-level assessment the paper predicts (not the per-finding
`finding_birads` of `finding_annotations.csv`). Paper split: 16,000 / 4,000 images; in train,
the minority classes BI-RADS 2-5 are up-sampled x3 (stored as repeated records).

DICOMs are decoded with pydicom (MONOCHROME1 inverted, VOI LUT windowing, 16 -> 8 bits); the
JPEG 2000 files of some releases also need `pylibjpeg` + `pylibjpeg-openjpeg` (or `python-gdcm`).
"""

from __future__ import annotations

import os
from typing import Iterator, Sequence

import tensorflow_datasets as tfds

from medpalm_m.data import prompts
from medpalm_m.data import tasks
from medpalm_m.data.builders import base
from medpalm_m.data.builders import referenced_files

ANNOTATIONS_CSV = "breast-level_annotations.csv"
SPLITS = {"training": "train", "test": "test"}
UPSAMPLE_FACTOR = {1: 3, 2: 3, 3: 3, 4: 3}  # label index (BI-RADS 2-5) -> train copies


class VindrMammo(base.ManualBuilder):
  """VinDr-Mammo images with their breast-level BI-RADS category."""
  name = "vindr_mammo"
  DESCRIPTION = __doc__
  HOMEPAGE = "https://physionet.org/content/vindr-mammo/1.0.0/"
  OBTAIN = ("Credentialed PhysioNet access (signed data use agreement). Download the whole release: "
            "breast-level_annotations.csv and the images/ folder (images/<study_id>/<image_id>.dicom).")
  CITATION = ("Nguyen et al., VinDr-Mammo: A large-scale benchmark dataset for computer-aided "
              "diagnosis in full-field digital mammography, Scientific Data 10 (2023).")
  REQUIRED_FILES = (ANNOTATIONS_CSV, "images/*/*.dicom")

  def features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),  # image_id (train copies: <image_id>-copy<k>)
        "image": self.image_feature(),
        "label": tfds.features.ClassLabel(names=[f"BI-RADS {b}" for b in prompts.BIRADS_OPTIONS]),
        "laterality": tfds.features.Text(),  # L | R
        "view": tfds.features.Text(),  # CC | MLO
        "study_id": tfds.features.Text(),
        "breast_density": tfds.features.Text(),
    })

  def generate_splits(self, manual_dir: str):
    path = os.path.join(manual_dir, ANNOTATIONS_CSV)
    rows = []
    columns = ("study_id", "image_id", "laterality", "view_position", "breast_birads",
               "breast_density", "split")
    for line, row in self.csv_rows(path, columns):
      with self.record_at(path, line, entry=row.get("image_id")):
        birads = row["breast_birads"].strip()
        if not birads.startswith("BI-RADS ") or birads[len("BI-RADS "):] not in prompts.BIRADS_OPTIONS:
          raise ValueError(f"breast_birads {birads!r} is not 'BI-RADS 1' .. 'BI-RADS 5'")
        if row["split"] not in SPLITS:
          raise ValueError(f"split {row['split']!r} is not one of {sorted(SPLITS)}")
        if row["laterality"] not in prompts.MAMMOGRAM_SIDES or row["view_position"] not in prompts.MAMMOGRAM_VIEWS:
          raise ValueError(f"laterality {row['laterality']!r} / view_position "
                           f"{row['view_position']!r} is not L/R and CC/MLO")
        image_path = os.path.join(manual_dir, "images", row["study_id"], row["image_id"] + ".dicom")
        rows.append((line, row, prompts.BIRADS_OPTIONS.index(birads[len("BI-RADS "):]), image_path))
    present = referenced_files.keep_present(
        self, [referenced_files.Reference(r[3], path, r[0]) for r in rows])
    rows = [r for r, ok in zip(rows, present) if ok]
    return {split: self._records([r for r in rows if SPLITS[r[1]["split"]] == split], path, split)
            for split in SPLITS.values()}

  def _records(self, rows: Sequence[tuple], csv_path: str, split: str) -> Iterator[base.KeyedRecord]:
    for line, row, label, image_path in rows:
      with self.record_at(csv_path, line, entry=row["image_id"]):
        record = {"image": self.load_image(image_path), "label": label,
                  "laterality": row["laterality"], "view": row["view_position"],
                  "study_id": row["study_id"], "breast_density": row["breast_density"]}
        copies = UPSAMPLE_FACTOR.get(label, 1) if split == "train" else 1
        for copy in range(copies):
          key = row["image_id"] + (f"-copy{copy}" if copy else "")
          yield key, {"id": key, **record}


# Task: the paper's instruction and question [Med-PaLM M Table A.9] ------------------------------

TASK = tasks.register(tasks.Task(
    name="vindr_mammo",
    builder=VindrMammo,
    formatter=prompts.vindr_formatter("vindr_mammo", prompts.VINDR_MAMMO_INSTRUCTION),
    metrics=("macro_auc", "macro_f1"),
    options=prompts.BIRADS_OPTIONS,
    num_exemplars=1,
    paper_task="VinDr-Mammo",
))

"""PAD-UFES-20: smartphone photos of skin lesions, 6 diagnostic classes, with the patient history.

Reads the Mendeley Data release (`metadata.csv` and the PNGs of `images/imgs_part_{1,2,3}`, or
any folder layout under `images/`). The dataset has no official split: like the paper, a
stratified random 80 / 20 split of the 2,298 images (1,838 / 460), seeded so that it is the same
on every machine. (Images of one patient can fall on both sides, as in the paper.)

The prompt's patient history has the paper's 14 attributes [Med-PaLM M Fig. 2]; blank and
"UNK" values read "unknown".
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from medpalm_m.data import prompts
from medpalm_m.data import tasks
from medpalm_m.data import tokenizer
from medpalm_m.data.builders import base
from medpalm_m.data.builders import referenced_files

METADATA_CSV = "metadata.csv"
# The paper's option order [Med-PaLM M Fig. 2], which is also the label index.
DIAGNOSTIC_CODES = {"NEV": 0, "BCC": 1, "SCC": 2, "ACK": 3, "SEK": 4, "MEL": 5}
TEST_FRACTION = 0.2
SPLIT_SEED = 0
# Patient-history fields: (metadata column, how the prompt names it), in the paper's order.
HISTORY_FIELDS = (("age", "Age"), ("gender", "Gender"), ("smoke", "Smoke"), ("drink", "Drink"),
                  ("skin_cancer_history", "Family skin cancer history"),
                  ("cancer_history", "Family any cancer history"), ("region", "Lesion region"),
                  ("itch", "Lesion itch"), ("grew", "Lesion grew"), ("bleed", "Lesion bled"),
                  ("elevation", "Lesion elevation"), ("fitspatrick", "Fitzpatrick scale"))
DIAMETER_FIELDS = ("diameter_1", "diameter_2")


@dataclasses.dataclass(frozen=True)
class _Row:
  img_id: str
  label: int
  fields: dict[str, str]
  line: int


class PadUfes20(base.ManualBuilder):
  """PAD-UFES-20 skin-lesion photos with their diagnosis and patient history."""
  name = "pad_ufes_20"
  DESCRIPTION = __doc__
  HOMEPAGE = "https://data.mendeley.com/datasets/zr7vgbcyr2/1"
  OBTAIN = ("Open access (CC BY 4.0): download the dataset archive from Mendeley Data, unzip it and "
            "the image archives inside it (images/imgs_part_1.zip, _2, _3), so the PNGs lie under "
            "images/.")
  CITATION = ("Pacheco et al., PAD-UFES-20: a skin lesion dataset composed of patient data and "
              "clinical images collected from smartphones, Data in Brief 32 (2020).")
  REQUIRED_FILES = (METADATA_CSV, ("images/*.png", "images/*/*.png", "images/*/*/*.png"))

  def features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),  # img_id without .png
        "image": self.image_feature(),
        "label": tfds.features.ClassLabel(names=prompts.SKIN_LESION_CLASSES),
        "patient_id": tfds.features.Text(),
        "lesion_id": tfds.features.Text(),
        # The history exactly as in metadata.csv (text; blank when not recorded).
        **{column: tfds.features.Text() for column, _ in HISTORY_FIELDS},
        **{column: tfds.features.Text() for column in DIAMETER_FIELDS},
    })

  def generate_splits(self, manual_dir: str):
    rows = self._read_metadata(manual_dir)
    paths = _png_paths(os.path.join(manual_dir, "images"))
    metadata_path = os.path.join(manual_dir, METADATA_CSV)
    expected = [paths.get(r.img_id, os.path.join(manual_dir, "images", r.img_id)) for r in rows]
    present = referenced_files.keep_present(
        self, [referenced_files.Reference(p, metadata_path, r.line) for p, r in zip(expected, rows)])
    kept = [(r, p) for r, p, ok in zip(rows, expected, present) if ok]
    test_ids = split_test_ids([r.img_id for r, _ in kept], [r.label for r, _ in kept])
    return {split: self._records([(r, p) for r, p in kept if (r.img_id in test_ids) == (split == "test")],
                                 metadata_path)
            for split in ("train", "test")}

  def _read_metadata(self, manual_dir: str) -> list[_Row]:
    path = os.path.join(manual_dir, METADATA_CSV)
    columns = ("patient_id", "lesion_id", "img_id", "diagnostic",
               *(c for c, _ in HISTORY_FIELDS), *DIAMETER_FIELDS)
    rows, seen = [], set()
    for line, row in self.csv_rows(path, columns):
      with self.record_at(path, line, entry=row.get("img_id")):
        if row["diagnostic"] not in DIAGNOSTIC_CODES:
          raise ValueError(f"diagnostic {row['diagnostic']!r} is not one of {sorted(DIAGNOSTIC_CODES)}")
        if not row["img_id"].endswith(".png") or row["img_id"] in seen:
          raise ValueError(f"img_id {row['img_id']!r} is not a new .png file name")
        for column in ("age", "fitspatrick", *DIAMETER_FIELDS):
          if row[column].strip() and row[column].strip().upper() != "UNK":
            float(row[column])  # a number, or the row is malformed
        seen.add(row["img_id"])
        rows.append(_Row(row["img_id"], DIAGNOSTIC_CODES[row["diagnostic"]],
                         {c: row[c] or "" for c in columns}, line))
    return rows

  def _records(self, rows: Sequence[tuple[_Row, str]], metadata_path: str) -> Iterator[base.KeyedRecord]:
    for row, path in rows:
      with self.record_at(metadata_path, row.line, entry=row.img_id):
        key = row.img_id[:-len(".png")]
        record = {"id": key, "image": self.load_image(path), "label": row.label,
                  "patient_id": row.fields["patient_id"], "lesion_id": row.fields["lesion_id"]}
        record.update({c: row.fields[c] for c, _ in HISTORY_FIELDS})
        record.update({c: row.fields[c] for c in DIAMETER_FIELDS})
        yield key, record


def _png_paths(images_dir: str) -> dict[str, str]:
  """PNG file name -> path, wherever it sits under images/ (the release nests them in parts)."""
  paths = {}
  for folder, _, files in os.walk(images_dir):
    for name in files:
      if name.endswith(".png"):
        paths.setdefault(name, os.path.join(folder, name))
  return paths


def split_test_ids(img_ids: Sequence[str], labels: Sequence[int]) -> set[str]:
  """The seeded stratified 20% test split (460 of the 2,298 images of the full release)."""
  from sklearn.model_selection import train_test_split
  order = np.argsort(img_ids)  # independent of the CSV's row order
  ids, strata = np.asarray(img_ids)[order], np.asarray(labels)[order]
  _, test = train_test_split(ids, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=strata)
  return set(test.tolist())


# Task -----------------------------------------------------------------------------------------
QUESTION = "Q: Which of the following is the most likely diagnosis of the patient's skin lesion?"


def _value(raw: str, column: str) -> str:
  value = raw.strip()
  if not value or value.upper() == "UNK":
    return "unknown"
  if value in ("True", "False"):
    return value.lower()
  if column == "fitspatrick":
    return f"{float(value):.1f}"
  if column == "age":
    return str(int(float(value)))
  return value.lower()  # FEMALE -> female, NECK -> neck


def patient_history(record: tasks.Record) -> str:
  """The paper's 'Patient History: Age: 51, Gender: female, ... Diameters (mm): [12.0, 8.0].'"""
  parts = [f"{name}: {_value(tasks.text(record[column]), column)}" for column, name in HISTORY_FIELDS]
  diameters = []
  for column in DIAMETER_FIELDS:
    value = tasks.text(record[column]).strip()
    diameters.append(f"{float(value):.1f}" if value and value.upper() != "UNK" else "unknown")
  parts.append(f"Diameters (mm): [{', '.join(diameters)}]")
  return "Patient History: " + ", ".join(parts) + "."


def _query(record: tasks.Record) -> str:
  return (f"Given {tokenizer.IMAGE_MARKER}. {patient_history(record)} {QUESTION} "
          f"{prompts.option_list(prompts.SKIN_LESION_CLASSES)} A:")


def format_example(record: tasks.Record, exemplars: Sequence[tasks.Record]) -> tasks.Example:
  parts = [prompts.PAD_UFES_20_INSTRUCTION]
  for exemplar in exemplars:  # text-only: its image is the literal text "<img>"
    parts.append(tokenizer.escape_image_markers(_query(exemplar)) + " "
                 + prompts.answer(prompts.SKIN_LESION_CLASSES[int(exemplar["label"])]))
  parts.append(_query(record))
  label = int(record["label"])
  return {"id": tasks.text(record["id"]), "task": "pad_ufes_20",
          "images": [np.asarray(record["image"])], "prompt": " ".join(parts),
          "target": prompts.answer(prompts.SKIN_LESION_CLASSES[label]), "label": label}


TASK = tasks.register(tasks.Task(
    name="pad_ufes_20",
    builder=PadUfes20,
    formatter=format_example,
    metrics=("macro_auc", "macro_f1"),
    options=prompts.SKIN_LESION_CLASSES,
    num_exemplars=1,
    paper_task="PAD-UFES-20",
))

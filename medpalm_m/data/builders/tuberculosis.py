"""The NLM tuberculosis chest X-ray sets (Montgomery County, Shenzhen): zero-shot TB detection.

Med-PaLM M never trains on tuberculosis; the paper asks Montgomery County's 138 radiographs
(80 normal, 58 TB) a yes/no question with a text-only exemplar [§6.2.1]. Both sets share one
public layout, read here as distributed:

    CXR_png/MCUCXR_0001_0.png          the radiograph; the last digit is the label (0 normal, 1 TB)
    ClinicalReadings/MCUCXR_0001_0.txt sex, age and the radiologist's short reading

(`CHNCXR_` for Shenzhen, 662 images: 326 normal, 336 TB). `ManualMask/` is not read. Every image
goes into one "test" split: the tasks are evaluation only. The reading is stored but never put in
the prompt, since it states the answer ("right upper lobe cavitary TB").

A radiograph without its reading, or a reading without its radiograph, is a missing file: all are
listed at once (or, with skip_malformed, skipped and counted). A file name that does not follow
the pattern, an empty reading or an image that does not decode is a malformed record named by
its file.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Iterator, Sequence

import tensorflow_datasets as tfds

from medpalm_m.data import prompts
from medpalm_m.data.builders import base

IMAGES_DIR = "CXR_png"
READINGS_DIR = "ClinicalReadings"
VIEW = "PA"  # both sets are posteroanterior radiographs
_MISSING_SHOWN = 20


@dataclasses.dataclass(frozen=True)
class Case:
  stem: str  # e.g. MCUCXR_0001_0
  label: int  # 0 normal, 1 tuberculosis
  image_path: str
  reading_path: str


@dataclasses.dataclass(frozen=True)
class Reading:
  sex: str  # "M" / "F", or "" when the reading does not say
  age: str  # years, or ""
  text: str  # the radiologist's reading


_LABELLED_FIELD = re.compile(r"^patient'?s\s+(sex|age)\s*:\s*(.*)$", re.IGNORECASE)  # Montgomery
_SEX_AGE_LINE = re.compile(r"^(male|female|m|f)\b\W*(\d+)?", re.IGNORECASE)  # Shenzhen: "male 35yrs"


def parse_reading(text: str) -> Reading:
  """Montgomery's "Patient's Sex: M / Patient's Age: 058Y / reading" or Shenzhen's
  "male 35yrs / reading"; a reading with no text is malformed (ValueError)."""
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  fields: dict[str, str] = {}
  rest = []
  for line in lines:
    match = _LABELLED_FIELD.match(line)
    if match:
      fields[match.group(1).lower()] = match.group(2).strip()
    else:
      rest.append(line)
  if not fields and rest and (match := _SEX_AGE_LINE.match(rest[0])):
    fields = {"sex": match.group(1), "age": match.group(2) or ""}
    rest[0] = rest[0][match.end():].strip(" ,;yrsYRS")
    rest = [line for line in rest if line]
  if not rest:
    raise ValueError("the reading has no text")
  age = re.search(r"\d+", fields.get("age", ""))
  return Reading(sex=fields.get("sex", "")[:1].upper(), age=str(int(age.group())) if age else "",
                 text=" ".join(rest))


class TuberculosisSet(base.ManualBuilder, skip_registration=True):
  """One NLM TB set: CXR_png/ and ClinicalReadings/ named <PREFIX>_<number>_<label>."""
  PREFIX = ""
  REQUIRED_FILES = (f"{IMAGES_DIR}/*.png", f"{READINGS_DIR}/*.txt")
  OBTAIN = ("Open access from the U.S. National Library of Medicine (Jaeger et al. 2014): download "
            "the set's zip and unpack it; the folder holding CXR_png/ and ClinicalReadings/ is the "
            "manual directory.")
  CITATION = ("Jaeger et al., Two public chest X-ray datasets for computer-aided screening of "
              "pulmonary diseases, Quant Imaging Med Surg 4(6) (2014).")

  def features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),  # the file stem, e.g. MCUCXR_0001_0
        "image": self.image_feature(),
        "view": tfds.features.Text(),
        "label": tfds.features.ClassLabel(names=prompts.CHEST_XRAY_ANSWERS),  # Yes: tuberculosis
        "sex": tfds.features.Text(),
        "age": tfds.features.Text(),
        "reading": tfds.features.Text(),
    })

  def generate_splits(self, manual_dir: str):
    return {"test": self._records(self.cases(manual_dir))}

  def cases(self, manual_dir: str) -> list[Case]:
    """Every radiograph with its reading, by file name; the missing halves listed at once."""
    pattern = re.compile(rf"^{self.PREFIX}_\d+_([01])$")
    found: dict[str, dict[str, str]] = {}
    for folder, extension in ((IMAGES_DIR, ".png"), (READINGS_DIR, ".txt")):
      for name in sorted(os.listdir(os.path.join(manual_dir, folder))):
        path = os.path.join(manual_dir, folder, name)
        stem, ext = os.path.splitext(name)
        if ext.lower() != extension:
          continue  # Thumbs.db and the like
        if not pattern.match(stem):
          self.malformed(path, None, f"the file name does not follow {self.PREFIX}_<number>_<label>"
                         f"{extension} with label 0 (normal) or 1 (tuberculosis)")
          continue
        found.setdefault(stem, {})[folder] = path
    missing = [(stem, folder) for stem, paths in sorted(found.items())
               for folder in (IMAGES_DIR, READINGS_DIR) if folder not in paths]
    self._report_missing(manual_dir, missing)
    return [Case(stem, int(pattern.match(stem).group(1)), paths[IMAGES_DIR], paths[READINGS_DIR])
            for stem, paths in sorted(found.items()) if len(paths) == 2]

  def _report_missing(self, manual_dir: str, missing: Sequence[tuple[str, str]]) -> None:
    expected = {IMAGES_DIR: (".png", READINGS_DIR, ".txt"), READINGS_DIR: (".txt", IMAGES_DIR, ".png")}

    def describe(stem: str, folder: str) -> tuple[str, str]:
      ext, other, other_ext = expected[folder]
      return (os.path.join(manual_dir, folder, stem + ext),
              f"its {other}/{stem}{other_ext} is present")

    if missing and not self.skip_malformed:
      shown = "\n".join(f"  - {path} ({why})" for path, why in
                        (describe(*m) for m in missing[:_MISSING_SHOWN]))
      more = f"\n  ... and {len(missing) - _MISSING_SHOWN} more" if len(missing) > _MISSING_SHOWN else ""
      raise base.ManualDataError(
          f"{self.name}: {len(missing)} files are missing from {manual_dir}:\n{shown}{more}\n"
          f"The download is incomplete: obtain the set from {self.HOMEPAGE} ({self.OBTAIN}), or "
          f"build from the complete cases ({base.SKIP_FLAGS}).")
    for stem, folder in missing:
      path, why = describe(stem, folder)
      self.malformed(path, None, f"missing ({why})")

  def _records(self, cases: Sequence[Case]) -> Iterator[base.KeyedRecord]:
    for case in cases:
      reading = None
      with self.record_at(case.reading_path, None):
        with open(case.reading_path, encoding="utf-8") as f:  # not UTF-8: malformed (ValueError)
          reading = parse_reading(f.read())
      if reading is None:
        continue  # skipped and counted: its reading is malformed
      with self.record_at(case.image_path, None):
        yield case.stem, {"id": case.stem, "image": self.load_image(case.image_path), "view": VIEW,
                          "label": case.label, "sex": reading.sex, "age": reading.age,
                          "reading": reading.text}


class MontgomeryTb(TuberculosisSet):
  """Montgomery County chest X-rays (NLM): 138 PA radiographs, 80 normal and 58 with tuberculosis."""
  name = "montgomery_tb"
  DESCRIPTION = __doc__
  PREFIX = "MCUCXR"
  HOMEPAGE = "https://lhncbc.nlm.nih.gov/LHC-downloads/downloads.html#tuberculosis-image-data-sets"


class ShenzhenTb(TuberculosisSet):
  """Shenzhen No.3 People's Hospital chest X-rays (NLM): 662 radiographs, 326 normal, 336 TB."""
  name = "shenzhen_tb"
  DESCRIPTION = __doc__
  PREFIX = "CHNCXR"
  HOMEPAGE = "https://lhncbc.nlm.nih.gov/LHC-downloads/downloads.html#tuberculosis-image-data-sets"


# Tasks ----------------------------------------------------------------------------------------
MONTGOMERY_TASK, MONTGOMERY_COT_TASK = prompts.tuberculosis_tasks(
    "montgomery_tb", MontgomeryTb, instruction=prompts.TUBERCULOSIS_INSTRUCTION,
    paper_task="Montgomery TB (zero-shot)")
SHENZHEN_TASK, SHENZHEN_COT_TASK = prompts.tuberculosis_tasks(
    "shenzhen_tb", ShenzhenTb, instruction=prompts.TUBERCULOSIS_INSTRUCTION, paper_task=None)

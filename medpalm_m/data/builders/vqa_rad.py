"""VQA-RAD (Lau et al. 2018): radiology images with clinician-written questions, from its OSF release.

On disk (osf.io/89kps): `VQA_RAD Dataset Public.json`, a JSON list of 2,248 questions, and
`VQA_RAD Image Folder/` with the 315 images (`synpic*.jpg`). Fields read per question: `qid`,
`image_name`, `question`, `answer` (a string or a number), `answer_type` (OPEN / CLOSED),
`phrase_type`. The split is the dataset's own: `phrase_type` `test_freeform` or `test_para` is
test (451), `freeform` or `para` is train (1,797); any other `phrase_type` is malformed.
"""

from __future__ import annotations

import os
from typing import Iterator

from medpalm_m.data.builders import base, vqa

QUESTIONS_FILE = "VQA_RAD Dataset Public.json"
IMAGE_FOLDER = "VQA_RAD Image Folder"
SPLIT_OF_PHRASE_TYPE = {"freeform": "train", "para": "train", "test_freeform": "test", "test_para": "test"}


class VqaRad(vqa.VqaBuilder):
  DESCRIPTION = "VQA-RAD: questions and answers about radiology images (CT, MRI, X-ray)."
  HOMEPAGE = "https://osf.io/89kps/"
  OBTAIN = ("Download the VQA-RAD files from the OSF project (CC0) and use the folder holding the JSON "
            "file and the image folder as the manual directory.")
  REQUIRED_FILES = (QUESTIONS_FILE, os.path.join(IMAGE_FOLDER, "*.jpg"))
  CITATION = ("Lau et al., A dataset of clinically generated visual questions and answers about "
              "radiology images, Scientific Data 2018.")

  def generate_splits(self, manual_dir: str):
    return {split: self._records(manual_dir, split) for split in ("train", "test")}

  def _records(self, manual_dir: str, split: str) -> Iterator[base.KeyedRecord]:
    path = os.path.join(manual_dir, QUESTIONS_FILE)
    questions = []
    for line, index, entry in self.json_items(path):
      with self.record_at(path, line, entry=f"item {index}"):
        phrase_type = entry["phrase_type"]
        if phrase_type not in SPLIT_OF_PHRASE_TYPE:
          raise ValueError(f"phrase_type {phrase_type!r} is none of {sorted(SPLIT_OF_PHRASE_TYPE)}")
        if SPLIT_OF_PHRASE_TYPE[phrase_type] == split:
          questions.append((line, index, {
              "id": f"vqa_rad-{entry['qid']}", "image_name": str(entry["image_name"]),
              "question": str(entry["question"]).strip(), "answer": str(entry["answer"]).strip(),
              "answer_type": str(entry.get("answer_type", "")).strip()}))
    yield from self.with_images(path, questions, lambda name: os.path.join(manual_dir, IMAGE_FOLDER, name))


VQA_RAD = vqa.register("vqa_rad", VqaRad, "VQA-RAD")

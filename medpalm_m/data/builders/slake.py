"""Slake 1.0 (Liu et al. 2021), English questions only, from its release folder.

On disk (med-vqa.com/slake, `Slake1.0/`): `train.json`, `validate.json`, `test.json` (JSON lists)
and `imgs/xmlab<N>/source.jpg`. Fields read per question: `qid`, `img_name`
("xmlab1/source.jpg", relative to `imgs/`), `question`, `answer`, `q_lang` ("en" / "zh"),
`answer_type` (OPEN / CLOSED). Questions with `q_lang` other than "en" are left out, so the splits
are the English halves of 9,849 / 2,109 / 2,070: test has 1,061 questions. (The paper's 2,070 test
questions include the Chinese ones; most later work reports English only.)
"""

from __future__ import annotations

import os
from typing import Iterator

from medpalm_m.data.builders import base, vqa

SPLIT_FILES = {"train": "train.json", "validation": "validate.json", "test": "test.json"}
LANGUAGE = "en"


class Slake(vqa.VqaBuilder):
  DESCRIPTION = "Slake (English): questions and answers about radiology images with semantic labels."
  HOMEPAGE = "https://www.med-vqa.com/slake/"
  OBTAIN = ("Download Slake1.0 from the project site (its Google Drive link), unzip it (with imgs.zip "
            "unpacked into imgs/) and use the Slake1.0 folder as the manual directory.")
  REQUIRED_FILES = (*SPLIT_FILES.values(), os.path.join("imgs", "*", "source.jpg"))
  CITATION = ("Liu et al., SLAKE: A Semantically-Labeled Knowledge-Enhanced Dataset for Medical "
              "Visual Question Answering, ISBI 2021.")

  def generate_splits(self, manual_dir: str):
    return {split: self._records(manual_dir, file) for split, file in SPLIT_FILES.items()}

  def _records(self, manual_dir: str, file: str) -> Iterator[base.KeyedRecord]:
    path = os.path.join(manual_dir, file)
    questions = []
    for line, index, entry in self.json_items(path):
      with self.record_at(path, line, entry=f"item {index}"):
        if entry["q_lang"] == LANGUAGE:
          questions.append((line, index, {
              "id": f"slake-{entry['qid']}", "image_name": str(entry["img_name"]),
              "question": str(entry["question"]).strip(), "answer": str(entry["answer"]).strip(),
              "answer_type": str(entry.get("answer_type", "")).strip()}))
    yield from self.with_images(path, questions, lambda name: os.path.join(manual_dir, "imgs", name))


SLAKE = vqa.register("slake", Slake, "Slake-VQA")

"""Slake 1.0 (Liu et al. 2021), English and Chinese questions, from its release folder.

On disk (med-vqa.com/slake, `Slake1.0/`): `train.json`, `validate.json`, `test.json` (JSON lists)
and `imgs/xmlab<N>/source.jpg`. Fields read per question: `qid`, `img_name`
("xmlab1/source.jpg", relative to `imgs/`), `question`, `answer`, `q_lang` ("en" / "zh"),
`answer_type` (OPEN / CLOSED). Both languages are read, as the paper's counts are bilingual:
9,849 / 2,109 / 2,070. The builder option `english_only` keeps only `q_lang` "en" (test: 1,061
questions), as most later work reports.
"""

from __future__ import annotations

import os
from typing import Iterator

import tensorflow_datasets as tfds

from medpalm_m.data.builders import base, vqa

SPLIT_FILES = {"train": "train.json", "validation": "validate.json", "test": "test.json"}
ENGLISH = "en"


class Slake(vqa.VqaBuilder):
  DESCRIPTION = "Slake: questions and answers (English and Chinese) about radiology images with semantic labels."
  HOMEPAGE = "https://www.med-vqa.com/slake/"
  OBTAIN = ("Download Slake1.0 from the project site (its Google Drive link), unzip it (with imgs.zip "
            "unpacked into imgs/) and use the Slake1.0 folder as the manual directory.")
  REQUIRED_FILES = (*SPLIT_FILES.values(), os.path.join("imgs", "*", "source.jpg"))
  CITATION = ("Liu et al., SLAKE: A Semantically-Labeled Knowledge-Enhanced Dataset for Medical "
              "Visual Question Answering, ISBI 2021.")
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.1.0": "Both languages, as the paper's counts; english_only for the English half."}
  OPTIONS = {"english_only": "keep only the English questions (default False: both languages, as the paper)"}

  def __init__(self, *, english_only: bool = False, **kwargs):
    super().__init__(**kwargs)
    if not isinstance(english_only, bool):
      raise ValueError(f"slake: english_only must be True or False, got {english_only!r}")
    self.english_only = english_only

  def generate_splits(self, manual_dir: str):
    return {split: self._records(manual_dir, file) for split, file in SPLIT_FILES.items()}

  def _records(self, manual_dir: str, file: str) -> Iterator[base.KeyedRecord]:
    path = os.path.join(manual_dir, file)
    questions = []
    for line, index, entry in self.json_items(path):
      with self.record_at(path, line, entry=f"item {index}"):
        if not self.english_only or entry["q_lang"] == ENGLISH:
          questions.append((line, index, {
              "id": f"slake-{entry['qid']}", "image_name": str(entry["img_name"]),
              "question": str(entry["question"]).strip(), "answer": str(entry["answer"]).strip(),
              "answer_type": str(entry.get("answer_type", "")).strip()}))
    yield from self.with_images(path, questions, lambda name: os.path.join(manual_dir, "imgs", name))


SLAKE = vqa.register("slake", Slake, "Slake-VQA")

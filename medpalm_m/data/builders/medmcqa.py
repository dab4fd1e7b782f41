"""MedMCQA from its official release; the dev set is the test set, as in the paper.

On disk (Pal et al. 2022, github.com/medmcqa/medmcqa, Google Drive zip): `train.json` and
`dev.json`, each in JSON *lines* form, one question per line: `{"id", "question", "opa", "opb",
"opc", "opd", "cop", "choice_type" ("single" | "multi"), "exp", "subject_name", "topic_name"}`.
`cop`, the correct option, counts from 1 (1 = opa ... 4 = opd) in these files; the Hugging Face
copy counts from 0, so a `cop` of 0 is reported as malformed rather than silently shifted. The
public `test.json` has no answers and is not read.

Splits: train 182,822 and validation (the dev set) 4,183; the task's test split is the
validation split, whose answers are public and which the paper reports on. Prompt: MedQA's
(2-shot, see `medqa.multiple_choice_formatter`).
"""

from __future__ import annotations

import os
from typing import Iterator

import tensorflow_datasets as tfds

from medpalm_m.data import tasks
from medpalm_m.data.builders import base, medqa

_SPLIT_FILES = {"train": "train.json", "validation": "dev.json"}
_OPTION_FIELDS = ("opa", "opb", "opc", "opd")


class Medmcqa(base.ManualBuilder):
  """MedMCQA 4-option questions: question, options, label (0-based), subject, topic, explanation."""

  DESCRIPTION = "MedMCQA: Indian medical entrance exam (AIIMS/NEET PG) multiple-choice questions."
  HOMEPAGE = "https://medmcqa.github.io"
  OBTAIN = ("Download the data zip linked from github.com/medmcqa/medmcqa (Apache-2.0), unzip it and "
            "use the folder holding train.json and dev.json as the manual directory.")
  REQUIRED_FILES = tuple(_SPLIT_FILES.values())
  CITATION = ("Pal et al., MedMCQA: A Large-scale Multi-Subject Multi-Choice Dataset for Medical "
              "domain Question Answering, CHIL 2022.")

  def features(self) -> tfds.features.FeaturesDict:
    return medqa.multiple_choice_features(
        subject_name=tfds.features.Text(), topic_name=tfds.features.Text(),
        choice_type=tfds.features.Text(), explanation=tfds.features.Text())

  def generate_splits(self, manual_dir: str):
    return {split: self._records(os.path.join(manual_dir, file), split) for split, file in _SPLIT_FILES.items()}

  def _records(self, path: str, split: str) -> Iterator[base.KeyedRecord]:
    for line, entry in self.jsonl_records(path):
      with self.record_at(path, line, entry=f"id {entry.get('id')}" if isinstance(entry, dict) else None):
        cop = entry["cop"]
        if isinstance(cop, bool) or not isinstance(cop, int) or not 1 <= cop <= 4:
          raise ValueError(f"cop {cop!r} is not 1-4 (the official files count options from 1; the "
                           "Hugging Face copy counts from 0: use the official train.json/dev.json)")
        options = [str(entry[field]).strip() for field in _OPTION_FIELDS]
        qid = str(entry["id"])
        yield f"{split}-{qid}", {
            "id": f"medmcqa-{qid}", "question": str(entry["question"]).strip(), "options": options,
            "label": cop - 1, "subject_name": str(entry.get("subject_name") or ""),
            "topic_name": str(entry.get("topic_name") or ""),
            "choice_type": str(entry.get("choice_type") or ""), "explanation": str(entry.get("exp") or "")}


MEDMCQA = tasks.register(tasks.Task(
    name="medmcqa", builder=Medmcqa, formatter=medqa.multiple_choice_formatter("medmcqa"),
    metrics=("accuracy",), num_exemplars=2, splits={"train": "train", "test": "validation"},
    paper_task="MedMCQA"))

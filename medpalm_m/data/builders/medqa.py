"""MedQA (USMLE, US English, 4 options) from the official jsonl release, and the multiple-choice prompt.

On disk (Jin et al. 2021, github.com/jind11/MedQA, Google Drive `data_clean.zip`), under
`data_clean/`:

    questions/US/4_options/phrases_no_exclude_{train,dev,test}.jsonl

one question per line: `{"question": str, "answer": str, "options": {"A": str, .., "D": str},
"meta_info": "step1" | "step2&3", "answer_idx": "A".."D", "metamap_phrases": [...]}`. Splits:
train 10,178 / validation (dev) 1,272 / test 1,273, the paper's test set. A line whose options
are not exactly A-D, whose `answer_idx` is not one of them or whose `answer` is not the text of
that option is malformed.

The prompt is Med-PaLM's (Tu et al. 2023, Table A.1 and the MedQA template): the instruction, two
answered exemplars from the train split, then the question. MedMCQA uses the same prompt.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from medpalm_m.data import prompts
from medpalm_m.data import tasks
from medpalm_m.data.builders import base
from medpalm_m.data.tokenizer import escape_image_markers

LETTERS = ("A", "B", "C", "D")
_FOLDER = os.path.join("questions", "US", "4_options")
_SPLIT_FILES = {"train": "phrases_no_exclude_train.jsonl", "validation": "phrases_no_exclude_dev.jsonl",
                "test": "phrases_no_exclude_test.jsonl"}


def multiple_choice_features(**extra: tfds.features.FeatureConnector) -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({
      "id": tfds.features.Text(),
      "question": tfds.features.Text(),
      "options": tfds.features.Sequence(tfds.features.Text()),  # in letter order A, B, C, D
      "label": tfds.features.Scalar(np.int64),  # index of the correct option
      **extra,
  })


class Medqa(base.ManualBuilder):
  """MedQA USMLE 4-option questions: question, options A-D, label, USMLE step."""

  DESCRIPTION = "MedQA (USMLE, 4 options): multiple-choice medical licensing exam questions."
  HOMEPAGE = "https://github.com/jind11/MedQA"
  OBTAIN = ("Download data_clean.zip from the Google Drive link in the MedQA README, unzip it and "
            "use its data_clean/ folder as the manual directory.")
  REQUIRED_FILES = tuple(os.path.join(_FOLDER, f) for f in _SPLIT_FILES.values())
  CITATION = ("Jin et al., What Disease does this Patient Have? A Large-scale Open Domain Question "
              "Answering Dataset from Medical Exams, Applied Sciences 2021.")

  def features(self) -> tfds.features.FeaturesDict:
    return multiple_choice_features(meta_info=tfds.features.Text())

  def generate_splits(self, manual_dir: str):
    return {split: self._records(os.path.join(manual_dir, _FOLDER, file), split)
            for split, file in _SPLIT_FILES.items()}

  def _records(self, path: str, split: str) -> Iterator[base.KeyedRecord]:
    for line, entry in self.jsonl_records(path):
      with self.record_at(path, line):
        options = entry["options"]
        if sorted(options) != list(LETTERS):
          raise ValueError(f"options must be A-D (the 4-option release), found {sorted(options)}")
        answer = entry["answer_idx"]
        if answer not in LETTERS:
          raise ValueError(f"answer_idx {answer!r} is not one of A-D")
        texts = [str(options[letter]).strip() for letter in LETTERS]
        if str(entry["answer"]).strip() != texts[LETTERS.index(answer)]:
          raise ValueError(f"answer {entry['answer']!r} is not option {answer} ({texts[LETTERS.index(answer)]!r})")
        key = f"{split}-{line}"
        yield key, {"id": f"medqa-{key}", "question": str(entry["question"]).strip(), "options": texts,
                    "label": LETTERS.index(answer), "meta_info": str(entry.get("meta_info", ""))}


def multiple_choice_formatter(task_name: str) -> Callable[[tasks.Record, Sequence[tasks.Record]], tasks.Example]:
  """Instruction, answered exemplars, then "Question: ... (A) .. (D) .. Answer:".

  The target is the correct option's text, "Ampicillin", as in the paper (Table A.1); the
  exemplars answer the same way.
  """

  def block(record: tasks.Record) -> tuple[str, str, int, list[str]]:
    options = [tasks.text(o) for o in record["options"]]
    label = int(record["label"])
    # Dataset text is never an image slot, even if it happens to contain "<img>".
    question = escape_image_markers(f"Question: {tasks.text(record['question'])} {prompts.option_list(options)} Answer:")
    return question, escape_image_markers(prompts.answer(options[label])), label, options

  def format_example(record: tasks.Record, exemplars: Sequence[tasks.Record]) -> tasks.Example:
    parts = [prompts.MEDQA_INSTRUCTION]
    for exemplar in exemplars:
      parts.extend(block(exemplar)[:2])
    question, target, label, options = block(record)
    parts.append(question)
    return {"id": tasks.text(record["id"]), "task": task_name, "images": [], "prompt": " ".join(parts),
            "target": target, "label": label,
            # Options differ per question: evaluation maps answers to letters with them.
            "options": options}

  return format_example


MEDQA = tasks.register(tasks.Task(
    name="medqa", builder=Medqa, formatter=multiple_choice_formatter("medqa"), metrics=("accuracy",),
    num_exemplars=2, paper_task="MedQA"))

"""What the three VQA datasets (VQA-RAD, Slake, Path-VQA) share: record features and the paper's prompt.

Prompt (Tu et al. 2023, the VQA template; text-only one-shot exemplar from the train split):

    Instructions: You are a helpful medical assistant. The following are questions about medical knowledge.
    Solve them in a step-by-step fashion, referring to authoritative sources as needed.
    Given \\<img>. Q: {exemplar question} A: {exemplar answer} Given <img>. Q: {question} A:

The exemplar's image is the escaped marker (literal text "<img>", no image slot); only the query's
`<img>` becomes the image. The target, like the exemplar's answer, is the answer text in the
paper's format ("Yes."; `prompts.answer`); metrics BLEU-1 and token F1.
"""

from __future__ import annotations

import collections
import os
from typing import Callable, Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from medpalm_m.data import prompts
from medpalm_m.data import tasks
from medpalm_m.data.builders import base
from medpalm_m.data.tokenizer import IMAGE_MARKER, escape_image_markers

METRICS = ("bleu1", "token_f1")


class VqaBuilder(base.ManualBuilder, skip_registration=True):
  """One image + one question + its answer per record; `answer_type` is OPEN or CLOSED."""

  # with_images takes questions image by image: one decoded image at a time is enough.
  _IMAGE_CACHE_SIZE = 2

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self._image_cache: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()

  def features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),
        "image": self.image_feature(),
        "image_name": tfds.features.Text(),
        "question": tfds.features.Text(),
        "answer": tfds.features.Text(),
        "answer_type": tfds.features.Text(),  # OPEN / CLOSED where the dataset says; else ""
    })

  def with_images(self, path: str, questions: Sequence[tuple[int | None, int, dict]],
                  image_path: Callable[[str], str]) -> Iterator[base.KeyedRecord]:
    """Yield (key, record + its decoded image) for parsed questions, image by image.

    `questions` holds (line, index, record without "image") in file order; the key is the index.
    Questions are taken in image order, so each image is decoded once per split (the order of
    records does not matter: TFDS orders them by a hash of their key). An image that cannot be read
    makes its question malformed, named by the question's file and line.
    """
    for line, index, record in sorted(questions, key=lambda q: (q[2]["image_name"], q[1])):
      with self.record_at(path, line, entry=f"item {index}"):
        yield f"{index}", {**record, "image": self.cached_image(image_path(record["image_name"]))}

  def cached_image(self, path: str) -> np.ndarray:
    path = os.path.normpath(path)
    if path in self._image_cache:
      self._image_cache.move_to_end(path)
      return self._image_cache[path]
    image = self.load_image(path)
    self._image_cache[path] = image
    if len(self._image_cache) > self._IMAGE_CACHE_SIZE:
      self._image_cache.popitem(last=False)
    return image


def formatter(task_name: str) -> Callable[[tasks.Record, Sequence[tasks.Record]], tasks.Example]:

  def format_example(record: tasks.Record, exemplars: Sequence[tasks.Record]) -> tasks.Example:
    parts = [prompts.VQA_INSTRUCTION]
    for exemplar in exemplars:
      parts.append(f"Given {escape_image_markers(IMAGE_MARKER)}. "
                   f"Q: {escape_image_markers(tasks.text(exemplar['question']))} "
                   f"A: {escape_image_markers(prompts.answer(tasks.text(exemplar['answer'])))}")
    parts.append(f"Given {IMAGE_MARKER}. Q: {escape_image_markers(tasks.text(record['question']))} A:")
    return {"id": tasks.text(record["id"]), "task": task_name,
            "images": [np.asarray(record["image"], np.uint8)], "prompt": " ".join(parts),
            "target": prompts.answer(tasks.text(record["answer"]))}

  return format_example


def register(name: str, builder: type[VqaBuilder], paper_task: str, **task_args) -> tasks.Task:
  return tasks.register(tasks.Task(name=name, builder=builder, formatter=formatter(name), metrics=METRICS,
                                   num_exemplars=1, paper_task=paper_task, **task_args))

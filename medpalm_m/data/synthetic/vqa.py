"""VQA-RAD, Slake-VQA and Path-VQA analogs: procedurally drawn images and short questions about them.

A record is one image and one question. Each image is drawn from a small scene (modality, organ,
lesions, stain, ...); the question asks about one attribute of that scene. Within a question type
the answer is drawn uniformly and independently of the question's wording, so only the image can
tell it: a model that ignores the image cannot beat the majority answer of that type. Positions
("left", "upper", ...) are the image's, not the patient's.

Every visual signal is at least ~4 pixels wide after the tiny config's resize to 64x64 (sizes below
are in the centred coordinates of `drawing.Canvas`, where the shorter half-side is 1, i.e. 32
pixels at 64x64).

Prompts follow Med-PaLM M's VQA template, shortened because the tiny default model reads every
token, with a text-only one-shot exemplar from the train split whose image is the literal "<img>".
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow_datasets as tfds

from medpalm_m.data import prompts
from medpalm_m.data import tasks
from medpalm_m.data.synthetic import base
from medpalm_m.data.synthetic.drawing import Canvas, Point, Size, scatter
from medpalm_m.data.tokenizer import IMAGE_MARKER, escape_image_markers

METRICS = ("bleu1", "token_f1")
YES_NO = ("yes", "no")


@dataclasses.dataclass(frozen=True)
class QuestionType:
  name: str
  weight: float
  questions: tuple[str, ...]  # paraphrases; all share one answer distribution
  answers: tuple[str, ...]  # drawn uniformly


class _VQABuilder(base.SyntheticBuilder, skip_registration=True):
  """One image + one question per record; subclasses draw the image for a chosen answer."""

  SPLIT_SIZES = {"train": 1500, "test": 200}
  CHANNELS: int = 1
  QUESTION_TYPES: tuple[QuestionType, ...] = ()

  def features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),
        "image": tfds.features.Tensor(shape=(None, None, self.CHANNELS), dtype=np.uint8,
                                      encoding="zlib"),
        "question": tfds.features.Text(),
        "answer": tfds.features.Text(),
        # Kept so that evaluation and tests can score per question type (as VQA papers report).
        "question_type": tfds.features.Text(),
    })

  def generate(self, rng: np.random.Generator, index: int, split: str) -> dict[str, Any]:
    del index, split
    weights = np.array([t.weight for t in self.QUESTION_TYPES])
    qtype = self.QUESTION_TYPES[rng.choice(len(weights), p=weights / weights.sum())]
    answer = qtype.answers[rng.integers(len(qtype.answers))]
    question = qtype.questions[rng.integers(len(qtype.questions))]
    image = self.draw(rng, qtype.name, answer)
    return {"image": image, "question": question, "answer": answer, "question_type": qtype.name}

  def draw(self, rng: np.random.Generator, question_type: str, answer: str) -> np.ndarray:
    """An image whose scene gives `answer` to `question_type`; everything else random."""
    raise NotImplementedError


# The random draws below take y before x: the order the benchmark's seeded images were made with.

def _canvas_size(rng: np.random.Generator) -> Size:
  # Varied and not square, so the resize-with-padding path is exercised; aspect <= 1.5.
  height = int(rng.integers(96, 145))
  return int(rng.integers(96, 145)), height


def _jitter(rng: np.random.Generator, point: Point, amount: float) -> Point:
  dy = rng.uniform(-amount, amount)
  return point[0] + rng.uniform(-amount, amount), point[1] + dy


def _radii(rng: np.random.Generator, x_range: tuple[float, float],
           y_range: tuple[float, float]) -> tuple[float, float]:
  ry = rng.uniform(*y_range)
  return rng.uniform(*x_range), ry


# VQA-RAD ---------------------------------------------------------------------------------------

_RAD_MODALITIES = ("CT", "MRI", "X-ray")
_RAD_ORGANS = ("brain", "liver", "kidney", "lung")
# Lesion zones far enough apart (0.5 from the centre) that the answer is never borderline.
_RAD_ZONES = {"left": (-0.5, 0.0), "right": (0.5, 0.0), "upper": (0.0, -0.5), "lower": (0.0, 0.5)}


class SyntheticVqaRad(_VQABuilder):
  """Radiology-like grayscale slices: an organ of a given shape, maybe one bright lesion.

  Modalities differ in a style visible at a glance: CT has a black background and a thin bright
  bone rim, MRI a thick bright fat rim around a darker body, X-ray fills the whole frame with
  rib-like bands and no black background.
  """

  DESCRIPTION = "Synthetic VQA-RAD analog: radiology-like images, questions on lesion, modality, organ."
  CHANNELS = 1
  QUESTION_TYPES = (
      QuestionType("abnormality", 1.0, ("Is there an abnormality?", "Is there a lesion in this image?"),
                   YES_NO),
      QuestionType("location", 1.0, ("Where is the lesion?", "Where is the abnormality located?"),
                   tuple(_RAD_ZONES)),
      QuestionType("modality", 1.0, ("What imaging modality is this?", "How was this image taken?"),
                   _RAD_MODALITIES),
      QuestionType("organ", 1.0, ("What organ is shown?", "Which organ is in this image?"), _RAD_ORGANS),
  )

  def draw(self, rng: np.random.Generator, question_type: str, answer: str) -> np.ndarray:
    modality = answer if question_type == "modality" else _RAD_MODALITIES[rng.integers(3)]
    organ = answer if question_type == "organ" else _RAD_ORGANS[rng.integers(4)]
    if question_type == "location":
      zone: str | None = answer
    elif question_type == "abnormality":
      zone = list(_RAD_ZONES)[rng.integers(4)] if answer == "yes" else None
    else:
      zone = list(_RAD_ZONES)[rng.integers(4)] if rng.random() < 0.5 else None

    canvas = Canvas(_canvas_size(rng), channels=1)
    body = _radii(rng, (0.82, 0.92), (0.82, 0.92))
    if modality == "CT":
      canvas.ellipse((0, 0), body, 0.35)
      canvas.ellipse((0, 0), body, 0.95, inner=0.9)
      organ_level = 0.6
    elif modality == "MRI":
      canvas.ellipse((0, 0), body, 0.2)
      canvas.ellipse((0, 0), body, 0.75, inner=0.78)
      organ_level = 0.55
    else:
      _, y = canvas.coordinates()
      canvas.add(0.55 - 0.1 * y)  # brighter towards the top
      canvas.stripes(angle=0.0, period=0.3, width=0.08, color=0.8, wobble=0.02, opacity=0.5,
                     phase=rng.uniform(0, 0.3))
      organ_level = 0.15
    _draw_rad_organ(canvas, rng, organ, organ_level)
    if zone is not None:
      radius = rng.uniform(0.14, 0.18)
      canvas.ellipse(_jitter(rng, _RAD_ZONES[zone], 0.08), (radius, radius), 1.0)
    return canvas.to_uint8()


def _draw_rad_organ(canvas: Canvas, rng: np.random.Generator, organ: str, level: float) -> None:
  size = rng.uniform(0.9, 1.1)
  if organ == "brain":
    canvas.ellipse(_jitter(rng, (0, 0), 0.04), (0.5 * size, 0.62 * size), level)
    canvas.ellipse((0, 0), (0.035, 0.55 * size), level * 0.4)  # the interhemispheric fissure
  elif organ == "liver":
    canvas.ellipse(_jitter(rng, (-0.28, -0.15), 0.05), (0.48 * size, 0.33 * size), level, angle=0.35)
  elif organ == "kidney":
    for side in (-1, 1):
      canvas.ellipse(_jitter(rng, (0.45 * side, 0.15), 0.04), (0.13 * size, 0.24 * size), level,
                     angle=0.3 * side)
  else:  # lung: two tall lobes
    for side in (-1, 1):
      canvas.ellipse(_jitter(rng, (0.33 * side, -0.05), 0.04), (0.21 * size, 0.52 * size), level)


# Slake-VQA -------------------------------------------------------------------------------------

_SLAKE_MODALITIES = ("CT", "MRI", "X-ray")
_SLAKE_ORGANS = ("heart", "spleen", "bladder", "colon")


class SyntheticSlake(_VQABuilder):
  """Slake-like grayscale slices in a different style: other organs, 0-3 haloed lesions.

  CT shows a grey background and the scanner table under the body, MRI a bright body with dark
  organs, X-ray a dark field with a bright vertical spine.
  """

  DESCRIPTION = "Synthetic Slake-VQA analog: radiology-like images, questions on modality, organ, lesions."
  CHANNELS = 1
  QUESTION_TYPES = (
      QuestionType("modality", 1.0, ("What modality is used to take this image?",
                                     "Which imaging modality is this?"), _SLAKE_MODALITIES),
      QuestionType("organ", 1.0, ("Which organ is shown in this image?", "What is the main organ?"),
                   _SLAKE_ORGANS),
      QuestionType("abnormality", 1.0, ("Does the picture contain a lesion?", "Is this image abnormal?"),
                   YES_NO),
      QuestionType("count", 1.0, ("How many lesions are there?", "How many lesions are in the image?"),
                   ("1", "2", "3")),
  )

  def draw(self, rng: np.random.Generator, question_type: str, answer: str) -> np.ndarray:
    modality = answer if question_type == "modality" else _SLAKE_MODALITIES[rng.integers(3)]
    organ = answer if question_type == "organ" else _SLAKE_ORGANS[rng.integers(4)]
    if question_type == "count":
      lesions = int(answer)
    elif question_type == "abnormality":
      lesions = int(rng.integers(1, 4)) if answer == "yes" else 0
    else:
      lesions = int(rng.integers(1, 4)) if rng.random() < 0.5 else 0

    canvas = Canvas(_canvas_size(rng), channels=1)
    body = _radii(rng, (0.8, 0.92), (0.78, 0.88))
    if modality == "CT":
      canvas.add(0.12)
      canvas.ellipse((0, 0.96), (2.0, 0.05), 0.75)  # the scanner table
      canvas.ellipse((0, 0), body, 0.45)
      organ_level = 0.72
    elif modality == "MRI":
      canvas.ellipse((0, 0), body, 0.62)
      organ_level = 0.25
    else:
      canvas.add(0.22)
      canvas.ellipse((0, 0), (0.11, 2.0), 0.85)  # the spine
      organ_level = 0.5
    _draw_slake_organ(canvas, rng, organ, organ_level)
    centers = np.asarray(scatter(rng, lesions, 0.38, (-0.6, 0.6, -0.55, 0.55))).reshape(-1, 2)
    radii = np.repeat(rng.uniform(0.1, 0.12, (lesions, 1)), 2, axis=1)
    canvas.ellipses(centers, radii * 1.5, 0.0)  # the dark halo, Slake's lesion style here
    canvas.ellipses(centers, radii, 1.0)
    return canvas.to_uint8()


def _draw_slake_organ(canvas: Canvas, rng: np.random.Generator, organ: str, level: float) -> None:
  size = rng.uniform(0.9, 1.1)
  if organ == "heart":
    canvas.ellipse(_jitter(rng, (-0.15, 0.05), 0.05), (0.38 * size, 0.3 * size), level, angle=0.5)
  elif organ == "spleen":
    canvas.ellipse(_jitter(rng, (0.5, -0.2), 0.05), (0.15 * size, 0.34 * size), level, angle=-0.4)
  elif organ == "bladder":
    canvas.ellipse(_jitter(rng, (0, 0.45), 0.05), (0.3 * size, 0.22 * size), level)
  else:  # colon: a frame around the abdomen
    canvas.ellipse(_jitter(rng, (0, 0), 0.03), (0.7 * size, 0.66 * size), level, inner=0.72)


# Path-VQA --------------------------------------------------------------------------------------

_STAINS = {"pink": (0.93, 0.62, 0.75), "purple": (0.62, 0.48, 0.80), "brown": (0.80, 0.62, 0.42)}
_PATTERNS = ("fibrosis", "necrosis", "hemorrhage")
_NUCLEUS = (0.22, 0.08, 0.32)


def _pattern_question(pattern: str) -> QuestionType:
  return QuestionType(pattern, 1.0 / 3, (f"Is there {pattern}?", f"Is {pattern} present?"), YES_NO)


class SyntheticPathVqa(_VQABuilder):
  """Pathology-like RGB tiles: a stained, speckled background, tissue patterns, nuclei clusters.

  Half the questions are yes/no ("Is there fibrosis?"), as in Path-VQA. Fibrosis is wavy dark-pink
  bands, necrosis a pale patch, hemorrhage a red patch; a nuclei cluster is a tight group of dark
  purple nuclei, clusters far apart so that their count is unambiguous.
  """

  DESCRIPTION = "Synthetic Path-VQA analog: pathology-like tiles, questions on patterns, stain, nuclei."
  CHANNELS = 3
  QUESTION_TYPES = (
      QuestionType("stain", 1.0, ("What stain colour dominates this tissue?",
                                  "What is the main colour of the stain?"), tuple(_STAINS)),
      QuestionType("count", 1.0, ("How many nuclei clusters are there?",
                                  "How many clusters of nuclei are seen?"), ("1", "2", "3", "4")),
  ) + tuple(_pattern_question(p) for p in _PATTERNS)

  def draw(self, rng: np.random.Generator, question_type: str, answer: str) -> np.ndarray:
    stain = answer if question_type == "stain" else list(_STAINS)[rng.integers(3)]
    clusters = int(answer) if question_type == "count" else int(rng.integers(1, 5))
    present = {p: (answer == "yes") if question_type == p else bool(rng.random() < 0.5)
               for p in _PATTERNS}

    width, height = _canvas_size(rng)
    canvas = Canvas((width, height), channels=3, background=_STAINS[stain])
    if present["fibrosis"]:
      canvas.stripes(angle=rng.uniform(0, np.pi), period=0.42, width=0.11, color=(0.78, 0.22, 0.45),
                     wobble=0.05, phase=rng.uniform(0, 0.42), opacity=0.9)
    if present["necrosis"]:
      canvas.ellipse(_jitter(rng, (0, 0), 0.35), _radii(rng, (0.4, 0.5), (0.32, 0.4)),
                     (0.98, 0.96, 0.97), angle=rng.uniform(0, np.pi))
    if present["hemorrhage"]:
      canvas.ellipse(_jitter(rng, (0, 0), 0.4), _radii(rng, (0.28, 0.36), (0.24, 0.3)),
                     (0.82, 0.08, 0.12), angle=rng.uniform(0, np.pi))
    ex, ey = canvas.extent
    for center in scatter(rng, clusters, 0.62, (-ex + 0.3, ex - 0.3, -ey + 0.3, ey - 0.3)):
      distance, direction = rng.uniform(0, 0.12, 7), rng.uniform(0, 2 * np.pi, 7)
      nuclei = np.asarray(center) + np.stack([np.cos(direction), np.sin(direction)], 1) * distance[:, None]
      r = rng.uniform(0.055, 0.075, 7)
      canvas.ellipses(nuclei, np.stack([r * rng.uniform(0.7, 1.0, 7), r], 1), _NUCLEUS,
                      angles=rng.uniform(0, np.pi, 7))
    # Scattered single nuclei, too small to count as a cluster: a sprinkle of darker pixels. No
    # smooth large-scale texture: TFDS zlib-encodes every image, and slowly varying values
    # compress slower than drawing the whole tile takes.
    count = height * width // 30
    ys = rng.integers(0, height, count)
    canvas.darken(rng.integers(0, width, count), ys, 0.7)
    return canvas.to_uint8()


# Tasks -----------------------------------------------------------------------------------------

def formatter(task_name: str) -> Callable[[tasks.Record, Sequence[tasks.Record]], tasks.Example]:
  """The paper's VQA prompt: instruction, text-only exemplars ("Given <img>." is literal text), query."""

  def format_example(record: tasks.Record, exemplars: Sequence[tasks.Record]) -> tasks.Example:
    parts = [prompts.SYNTHETIC_VQA_INSTRUCTION]
    for exemplar in exemplars:
      parts.append(f"Given {escape_image_markers(IMAGE_MARKER)}. Q: {tasks.text(exemplar['question'])} "
                   f"A: {prompts.answer(tasks.text(exemplar['answer']))}")
    parts.append(f"Given {IMAGE_MARKER}. Q: {tasks.text(record['question'])} A:")
    return {
        "id": tasks.text(record["id"]),
        "task": task_name,
        "images": [np.asarray(record["image"], np.uint8)],
        "prompt": " ".join(parts),
        "target": prompts.answer(tasks.text(record["answer"])),
    }

  return format_example


def _register(name: str, builder: type[_VQABuilder], paper_task: str) -> tasks.Task:
  return tasks.register(tasks.Task(name=name, builder=builder, formatter=formatter(name),
                                   metrics=METRICS, num_exemplars=1, paper_task=paper_task))


VQA_RAD = _register("synthetic_vqa_rad", SyntheticVqaRad, "VQA-RAD")
SLAKE = _register("synthetic_slake", SyntheticSlake, "Slake-VQA")
PATH_VQA = _register("synthetic_path_vqa", SyntheticPathVqa, "Path-VQA")

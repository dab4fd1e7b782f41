"""Synthetic PAD-UFES-20: smartphone-style photos of skin lesions in six diagnostic classes.

Each class has the textbook look a dermatologist reads from the photo, exaggerated so that it
survives a resize to 64x64:

  Nevus                    small, round, evenly mid-brown, sharp smooth border
  Basal Cell Carcinoma     pearly pink nodule with a whiter rolled rim and red telangiectasia
  Squamous Cell Carcinoma  deep red plaque under a yellow-white keratin crust
  Actinic Keratosis        faint pink-red patch, ill-defined, flecked with white scale
  Seborrheic Keratosis     "stuck-on" tan oval with light horn cysts and dark fissures
  Melanoma                 large, asymmetric, ragged, black-brown with blue-grey areas

The patient history (age, gender, smoking, Fitzpatrick type, diameters) is drawn independently of
the class, so the diagnosis can only come from the image. The Fitzpatrick type does set the skin
colour of the photo, as it would, and hairs and uneven lighting vary freely.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from medpalm_m.data import prompts
from medpalm_m.data import tasks
from medpalm_m.data import tokenizer
from medpalm_m.data.synthetic import base
from medpalm_m.data.synthetic import drawing as draw

# Mildly imbalanced like PAD-UFES-20 (where BCC and ACK dominate), but every class well represented.
_CLASS_PROBABILITIES = (0.15, 0.22, 0.14, 0.2, 0.15, 0.14)
_FITZPATRICK_PROBABILITIES = (0.2, 0.4, 0.25, 0.1, 0.04, 0.01)
_SKIN = ((240, 208, 190), (228, 188, 160), (205, 160, 125), (172, 126, 92), (132, 92, 64), (96, 64, 48))


def _jitter(rng: np.random.Generator, color: Sequence[int], amount: int = 12) -> tuple[int, int, int]:
  return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in color)


def _lesion(rng: np.random.Generator, image: Image.Image, label: int) -> None:
  """Paint the lesion of class `label` near the centre of `image`."""
  size = image.size
  m = min(size)
  center = (size[0] * rng.uniform(0.42, 0.58), size[1] * rng.uniform(0.42, 0.58))
  angle = rng.uniform(0, np.pi)

  def blob(radius: tuple[float, float], irregularity: float) -> draw.Mask:
    radii = (m * rng.uniform(*radius), m * rng.uniform(*radius))
    return draw.polygon(size, draw.blob_outline(rng, center, radii, irregularity, angle))

  name = prompts.SKIN_LESION_CLASSES[label]
  if name == "Nevus":
    draw.paint(image, blob((0.12, 0.16), 0.04), _jitter(rng, (120, 78, 52)))
  elif name == "Melanoma":
    lesion = blob((0.24, 0.32), 0.55)
    draw.paint(image, lesion, _jitter(rng, (78, 46, 34)))
    draw.paint(image, draw.intersect(lesion, draw.noise(rng, size, cell=m / 8)), _jitter(rng, (22, 14, 14), 6))
    blue = draw.intersect(lesion, draw.scaled(draw.noise(rng, size, cell=m / 6), 0.8))
    draw.paint(image, blue, _jitter(rng, (92, 100, 128)))
  elif name == "Basal Cell Carcinoma":
    lesion = blob((0.16, 0.21), 0.1)
    draw.paint(image, lesion, _jitter(rng, (236, 180, 178)))
    core = draw.ellipse(size, center, (0.1 * m, 0.1 * m))
    draw.paint(image, draw.scaled(draw.subtract(lesion, core), 0.7), (252, 236, 232))  # rolled rim
    vessels = [[(center[0] + m * rng.uniform(-0.15, 0.15), center[1] + m * rng.uniform(-0.15, 0.15))
                for _ in range(3)] for _ in range(int(rng.integers(3, 6)))]
    draw.paint(image, draw.intersect(draw.lines(size, vessels, width=1), lesion), (196, 48, 64))
  elif name == "Squamous Cell Carcinoma":
    lesion = blob((0.2, 0.26), 0.3)
    draw.paint(image, lesion, _jitter(rng, (182, 62, 56)))
    crust = draw.intersect(blob((0.1, 0.16), 0.4), draw.noise(rng, size, cell=m / 10, low=0.4))
    draw.paint(image, crust, _jitter(rng, (236, 220, 156)))
  elif name == "Actinic Keratosis":
    lesion = draw.soften(blob((0.2, 0.28), 0.4), m / 25)
    draw.paint(image, draw.scaled(lesion, 0.8), _jitter(rng, (214, 116, 108)))
    scale = draw.intersect(lesion, draw.noise(rng, size, cell=m / 14), draw.noise(rng, size, cell=m / 14))
    draw.paint(image, scale, (248, 240, 232))
  else:  # Seborrheic Keratosis
    lesion = blob((0.17, 0.24), 0.12)
    draw.paint(image, lesion, _jitter(rng, (156, 110, 66)))
    cysts = [(center[0] + m * rng.uniform(-0.13, 0.13), center[1] + m * rng.uniform(-0.13, 0.13))
             for _ in range(int(rng.integers(5, 10)))]
    draw.paint(image, draw.intersect(draw.dots(size, cysts, [m * 0.025] * len(cysts)), lesion), (232, 218, 178))
    fissures = [[(center[0] + m * rng.uniform(-0.15, 0.15), center[1] + m * rng.uniform(-0.15, 0.15))
                 for _ in range(2)] for _ in range(int(rng.integers(2, 4)))]
    draw.paint(image, draw.intersect(draw.lines(size, fissures, width=1), lesion), (84, 56, 36))


def draw_photo(rng: np.random.Generator, label: int, fitzpatrick: int) -> np.ndarray:
  """An (H, W, 3) uint8 close-up photo, 104-160 px a side."""
  size = (int(rng.integers(104, 161)), int(rng.integers(104, 161)))
  # Drawn at half size and upsampled: a quarter of the pixel work, and the upsampling softens every
  # edge like a phone camera's optics.
  work = (size[0] // 2, size[1] // 2)
  skin = _jitter(rng, _SKIN[fitzpatrick - 1], 10)
  image = Image.new("RGB", work, skin)
  shade = tuple(int(c * 0.82) for c in skin)
  draw.paint(image, draw.scaled(draw.noise(rng, work, cell=6), 0.35), shade)  # skin texture
  _lesion(rng, image, label)
  hairs = []
  for _ in range(int(rng.integers(0, 4))):
    x, y, heading = rng.uniform(0, work[0]), rng.uniform(0, work[1]), rng.uniform(0, 2 * np.pi)
    turns = heading + np.cumsum(rng.normal(0, 0.3, 4))
    steps = 0.12 * min(work)
    hairs.append(list(zip((x + steps * np.cumsum(np.cos(turns))).tolist(),
                          (y + steps * np.cumsum(np.sin(turns))).tolist())))
  if hairs:
    draw.paint(image, draw.scaled(draw.lines(work, hairs, width=1), 0.6), (46, 34, 28))
  # Uneven phone lighting: one corner darker.
  corner = (work[0] * float(rng.integers(0, 2)), work[1] * float(rng.integers(0, 2)))
  draw.paint(image, draw.scaled(draw.radial(work, corner, 0.9 * max(work)), rng.uniform(0.1, 0.35)), (0, 0, 0))
  return draw.to_array(image.resize(size, Image.BILINEAR))


class SyntheticPadUfes20(base.SyntheticBuilder):
  """Skin-lesion photos with a six-class diagnosis and a patient history that does not predict it."""
  name = "synthetic_pad_ufes_20"
  SPLIT_SIZES = {"train": 1500, "test": 250}
  DESCRIPTION = __doc__

  def features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),
        "image": tfds.features.Tensor(shape=(None, None, 3), dtype=np.uint8, encoding="zlib"),
        "label": tfds.features.ClassLabel(names=prompts.SKIN_LESION_CLASSES),
        "age": tfds.features.Scalar(np.int64),
        "gender": tfds.features.Text(),
        "smoke": tfds.features.Scalar(np.bool_),
        "fitzpatrick": tfds.features.Scalar(np.int64),
        "diameters_mm": tfds.features.Tensor(shape=(2,), dtype=np.float32),
    })

  def generate(self, rng: np.random.Generator, index: int, split: str) -> dict[str, Any]:
    label = int(rng.choice(len(prompts.SKIN_LESION_CLASSES), p=_CLASS_PROBABILITIES))
    fitzpatrick = int(rng.choice(6, p=_FITZPATRICK_PROBABILITIES)) + 1
    diameters = np.sort(rng.integers(3, 26, 2))[::-1].astype(np.float32)
    return {
        "image": draw_photo(rng, label, fitzpatrick),
        "label": label,
        "age": int(rng.integers(18, 91)),
        "gender": str(rng.choice(["female", "male"])),
        "smoke": bool(rng.random() < 0.2),
        "fitzpatrick": fitzpatrick,
        "diameters_mm": diameters,
    }


# Task -----------------------------------------------------------------------------------------

QUESTION = "Q: What is the most likely diagnosis?"


def _history(record: tasks.Record) -> str:
  d1, d2 = (float(d) for d in np.asarray(record["diameters_mm"]))
  return (f"Patient History: Age: {int(record['age'])}, Gender: {tasks.text(record['gender'])}, "
          f"Smoke: {str(bool(record['smoke'])).lower()}, "
          f"Fitzpatrick scale: {float(record['fitzpatrick']):.1f}, Diameters (mm): [{d1:.1f}, {d2:.1f}].")


def format_example(record: tasks.Record, exemplars: Sequence[tasks.Record]) -> tasks.Example:
  parts = [prompts.SYNTHETIC_PAD_UFES_20_INSTRUCTION]
  for exemplar in exemplars:
    # The exemplar leaves out the option list the query repeats, to keep the prompt short for the
    # tiny default model; it still shows the answer format (a class name).
    parts.append(tokenizer.escape_image_markers(
        f"Given {tokenizer.IMAGE_MARKER}. {_history(exemplar)} {QUESTION} A: "
        f"{prompts.answer(prompts.SKIN_LESION_CLASSES[int(exemplar['label'])])}"))
  parts.append(f"Given {tokenizer.IMAGE_MARKER}. {_history(record)} {QUESTION} "
               f"{prompts.option_list(prompts.SKIN_LESION_CLASSES)} A:")
  label = int(record["label"])
  return {
      "id": tasks.text(record["id"]),
      "task": "synthetic_pad_ufes_20",
      "images": [np.asarray(record["image"])],
      "prompt": " ".join(parts),
      "target": prompts.answer(prompts.SKIN_LESION_CLASSES[label]),
      "label": label,
  }


TASK = tasks.register(tasks.Task(
    name="synthetic_pad_ufes_20",
    builder=SyntheticPadUfes20,
    formatter=format_example,
    metrics=("macro_auc", "macro_f1"),
    options=prompts.SKIN_LESION_CLASSES,
    num_exemplars=1,
    paper_task="PAD-UFES-20",
))

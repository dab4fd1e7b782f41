"""RandAugment-style image augmentation of training examples, per task, seeded per example.

Med-PaLM M augments three datasets' images (Tu et al. 2023, Section A.1): PAD-UFES-20 with
RandAugment's autoContrast, equalize, invert, rotate, posterize, solarize, color and contrast;
VinDr-Mammo and CBIS-DDSM with contrast, equalize, rotate, shearX/Y and translateX/Y. Which
tasks use which operations is `config.data.augmentation.ops` ({task: [op, ...]}); the paper
configs list the paper's. The paper gives neither the number of operations per image nor their
magnitude: `num_ops` and `magnitude` (0-10, RandAugment's scale) are ours, RandAugment's
ImageNet setting (2 at 9) by default.

Every draw comes from `numpy.random.default_rng([seed, index])`, where `index` is the example's
position in the training stream: the same example at the same position is augmented the same way
in any run, on any process and after a resume, so grain's saved position stays the whole state.
Evaluation never sees this module.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from medpalm_m.data import tasks

# Tu et al. 2023, Section A.1, in RandAugment's names.
PAD_UFES_20_OPS = ("auto_contrast", "equalize", "invert", "rotate", "posterize", "solarize", "color",
                   "contrast")
MAMMOGRAPHY_OPS = ("contrast", "equalize", "rotate", "shear_x", "shear_y", "translate_x", "translate_y")

_MAX_ROTATE_DEGREES = 30.0  # RandAugment's ranges at magnitude 10
_MAX_SHEAR = 0.3
_MAX_TRANSLATE = 0.45  # of the image side
_MAX_ENHANCE = 0.9  # factor 1 +- this


def _signed(level: float, rng: np.random.Generator) -> float:
  return level if rng.random() < 0.5 else -level


def _affine(image: Image.Image, matrix: tuple[float, ...]) -> Image.Image:
  return image.transform(image.size, Image.AFFINE, matrix, resample=Image.BILINEAR, fillcolor=0)


def _shear_x(image, level, rng):
  return _affine(image, (1, _signed(level * _MAX_SHEAR, rng), 0, 0, 1, 0))


def _shear_y(image, level, rng):
  return _affine(image, (1, 0, 0, _signed(level * _MAX_SHEAR, rng), 1, 0))


def _translate_x(image, level, rng):
  return _affine(image, (1, 0, _signed(level * _MAX_TRANSLATE * image.size[0], rng), 0, 1, 0))


def _translate_y(image, level, rng):
  return _affine(image, (1, 0, 0, 0, 1, _signed(level * _MAX_TRANSLATE * image.size[1], rng)))


def _enhance(kind) -> Callable[[Image.Image, float, np.random.Generator], Image.Image]:
  return lambda image, level, rng: kind(image).enhance(1.0 + _signed(level * _MAX_ENHANCE, rng))


# op name -> (image, level in [0, 1], rng) -> image
OPS: dict[str, Callable[[Image.Image, float, np.random.Generator], Image.Image]] = {
    "auto_contrast": lambda image, level, rng: ImageOps.autocontrast(image),
    "equalize": lambda image, level, rng: ImageOps.equalize(image),
    "invert": lambda image, level, rng: ImageOps.invert(image),
    "rotate": lambda image, level, rng: image.rotate(_signed(level * _MAX_ROTATE_DEGREES, rng),
                                                     resample=Image.BILINEAR, fillcolor=0),
    "posterize": lambda image, level, rng: ImageOps.posterize(image, 8 - int(round(level * 4))),
    "solarize": lambda image, level, rng: ImageOps.solarize(image, 256 - int(round(level * 256))),
    "color": _enhance(ImageEnhance.Color),
    "contrast": _enhance(ImageEnhance.Contrast),
    "shear_x": _shear_x,
    "shear_y": _shear_y,
    "translate_x": _translate_x,
    "translate_y": _translate_y,
}


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """`num_ops` operations drawn (with replacement, as RandAugment) from the example's task's list,
  each at `magnitude` / 10 of its range with a random sign where it has one."""
  ops: Mapping[str, tuple[str, ...]]
  num_ops: int
  magnitude: float
  seed: int

  @classmethod
  def from_config(cls, augmentation: Mapping[str, Any], seed: int) -> "Augmentation | None":
    """config.data.augmentation -> an Augmentation, or None when no task is augmented."""
    ops = {task: tuple(names) for task, names in dict(augmentation["ops"]).items() if names}
    if not ops:
      return None
    known_tasks = tasks.all_tasks()
    unknown_tasks = sorted(set(ops) - set(known_tasks))
    if unknown_tasks:
      raise ValueError(f"config.data.augmentation.ops names unknown task(s) {unknown_tasks}; "
                       f"registered: {', '.join(sorted(known_tasks))}")
    for task, names in ops.items():
      unknown = sorted(set(names) - set(OPS))
      if unknown:
        raise ValueError(f"config.data.augmentation.ops[{task!r}] has unknown operation(s) {unknown}; "
                         f"known: {', '.join(sorted(OPS))}")
    num_ops, magnitude = int(augmentation["num_ops"]), float(augmentation["magnitude"])
    if num_ops < 1 or not 0 <= magnitude <= 10:
      raise ValueError(f"config.data.augmentation: num_ops must be >= 1 and magnitude in [0, 10], "
                       f"got {num_ops} and {magnitude}")
    return cls(ops=ops, num_ops=num_ops, magnitude=magnitude, seed=seed)

  def __call__(self, index: int, example: dict[str, Any]) -> dict[str, Any]:
    """grain's map_with_index: the example at stream position `index`, its images augmented."""
    names = self.ops.get(example["task"])
    if not names or not example.get("images"):
      return example
    rng = np.random.default_rng([self.seed, index])
    images = [self.augment_image(np.asarray(image), names, rng) for image in example["images"]]
    return {**example, "images": images}

  def augment_image(self, image: np.ndarray, names: Sequence[str], rng: np.random.Generator) -> np.ndarray:
    squeezed = image.ndim == 3 and image.shape[-1] == 1
    pil = Image.fromarray(image[..., 0] if squeezed else image)
    for k in rng.integers(len(names), size=self.num_ops):
      pil = OPS[names[k]](pil, self.magnitude / 10, rng)
    out = np.asarray(pil, dtype=np.uint8)
    return out[..., None] if squeezed else out

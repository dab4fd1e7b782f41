"""Synthetic mammography: VinDr-Mammo breast-level BI-RADS and CBIS-DDSM mass / calcification patches.

VinDr-Mammo analog: a whole mammogram (CC or MLO view, left or right breast, varying density) whose
one finding grows in suspicion with the BI-RADS class:

  1  nothing                     2  a round, smooth-bordered (benign) mass
  3  a cluster of calcifications 4  an irregular, lobulated mass
  5  a spiculated mass

CBIS-DDSM analogs: a region-of-interest patch centred on one abnormality, with the pathology as
the class. Masses: BENIGN is a circumscribed oval, BENIGN_WITHOUT_CALLBACK a fat-containing
(lucent-centred, egg-shell) mass, MALIGNANT a dense irregular mass with spicules. Calcifications:
BENIGN is a few large coarse "popcorn" calcifications, BENIGN_WITHOUT_CALLBACK a vascular
"tram-track" pair of lines, MALIGNANT many fine pleomorphic specks along a branching segment.

Density, view, laterality and position vary freely and carry no signal.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image, ImageOps

from medpalm_m.data import prompts
from medpalm_m.data import tasks
from medpalm_m.data.synthetic import base
from medpalm_m.data.synthetic import drawing as draw

# Grey levels: fat is dark, fibroglandular tissue mid-grey, masses dense, calcium brightest.
_BACKGROUND, _FAT, _GLAND, _MASS, _CALCIUM = 4, 70, 128, 196, 245


def _tissue(rng: np.random.Generator, image: Image.Image, region: draw.Mask, density: float) -> None:
  """Fibroglandular texture over `region`; `density` in [0, 1] sets how much of it is gland."""
  size = image.size
  gland = draw.intersect(region, draw.noise(rng, size, cell=min(size) / 7))
  draw.paint(image, draw.scaled(gland, 0.3 + 0.5 * density), _GLAND)


def _mass(rng: np.random.Generator, size: draw.Size, center: draw.Point, radius: float,
          irregularity: float) -> draw.Mask:
  radii = (radius * rng.uniform(0.85, 1.15), radius * rng.uniform(0.85, 1.15))
  return draw.polygon(size, draw.blob_outline(rng, center, radii, irregularity, rng.uniform(0, np.pi)))


def _scatter(rng: np.random.Generator, center: draw.Point, spread: float, count: int) -> list[draw.Point]:
  offsets = rng.normal(0, spread, (count, 2))
  return [(center[0] + dx, center[1] + dy) for dx, dy in offsets.tolist()]


def _spiculated(rng: np.random.Generator, size: draw.Size, center: draw.Point, radius: float,
                count: int, width: float) -> draw.Mask:
  core = _mass(rng, size, center, radius, irregularity=0.3)
  spicules = draw.lines(size, draw.spokes(rng, center, 0.5 * radius, (1.8 * radius, 2.8 * radius), count),
                        width=width)
  return draw.union(core, spicules)


# VinDr-Mammo ----------------------------------------------------------------------------------

# VinDr-Mammo is 60:21:4:3:1 before the paper upsamples BI-RADS 2-5; a mild version of that skew.
_BIRADS_PROBABILITIES = (0.3, 0.2, 0.17, 0.17, 0.16)


def draw_mammogram(rng: np.random.Generator, birads: int, view: str, laterality: str) -> np.ndarray:
  """A (H, W, 1) uint8 mammogram, 176-224 px tall and 120-176 px wide, chest wall at the side."""
  size = (int(rng.integers(120, 177)), int(rng.integers(176, 225)))
  # Drawn at half size and upsampled: a quarter of the pixel work, and the upsampling softens edges.
  work = (size[0] // 2, size[1] // 2)
  w, h = work
  image = Image.new("L", work, _BACKGROUND)
  # A left breast with its chest wall on the image's left; a right breast is mirrored at the end.
  reach, half_height = w * rng.uniform(0.78, 0.92), h * rng.uniform(0.4, 0.46)
  cy = h * (rng.uniform(0.48, 0.54) if view == "CC" else rng.uniform(0.52, 0.6))
  breast = draw.ellipse(work, (0, cy), (reach, half_height))
  draw.paint(image, breast, _FAT)
  _tissue(rng, image, breast, density=rng.uniform(0, 1))
  if view == "MLO":
    muscle = [(0, 0), (w * rng.uniform(0.3, 0.42), 0), (0, h * rng.uniform(0.4, 0.5))]
    draw.paint(image, draw.polygon(work, muscle), _GLAND + 20)
  # The finding sits well inside the breast, away from the chest wall and the pectoral muscle.
  angle = rng.uniform(-0.8, 0.8)
  distance = rng.uniform(0.35, 0.6)
  center = (reach * distance * np.cos(angle), cy + half_height * distance * np.sin(angle))
  r = h * rng.uniform(0.065, 0.08)
  if birads == 2:
    draw.paint(image, _mass(rng, work, center, r, irregularity=0.0), _MASS)
  elif birads == 3:
    dots = _scatter(rng, center, 0.7 * r, int(rng.integers(9, 15)))
    draw.paint(image, draw.dots(work, dots, rng.uniform(1.1, 1.7, len(dots)).tolist()), _CALCIUM)
  elif birads == 4:
    draw.paint(image, _mass(rng, work, center, 1.1 * r, irregularity=0.6), _MASS)
  elif birads == 5:
    draw.paint(image, _spiculated(rng, work, center, r, int(rng.integers(10, 16)), width=2), _MASS + 10)
  image = image.resize(size, Image.BILINEAR)
  return draw.to_array(ImageOps.mirror(image) if laterality == "R" else image)


class SyntheticVindrMammo(base.SyntheticBuilder):
  """Mammograms with a breast-level BI-RADS category (1-5)."""
  name = "synthetic_vindr_mammo"
  SPLIT_SIZES = {"train": 1500, "test": 250}
  DESCRIPTION = __doc__

  def features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),
        "image": tfds.features.Tensor(shape=(None, None, 1), dtype=np.uint8, encoding="zlib"),
        "label": tfds.features.ClassLabel(names=[f"BI-RADS {o}" for o in prompts.BIRADS_OPTIONS]),
        "view": tfds.features.Text(),  # CC | MLO
        "laterality": tfds.features.Text(),  # L | R
    })

  def generate(self, rng: np.random.Generator, index: int, split: str) -> dict[str, Any]:
    label = int(rng.choice(len(prompts.BIRADS_OPTIONS), p=_BIRADS_PROBABILITIES))
    view, laterality = str(rng.choice(list(prompts.MAMMOGRAM_VIEWS))), str(rng.choice(list(prompts.MAMMOGRAM_SIDES)))
    return {"image": draw_mammogram(rng, label + 1, view, laterality), "label": label, "view": view,
            "laterality": laterality}


# CBIS-DDSM ------------------------------------------------------------------------------------


def _draw_mass(rng: np.random.Generator, image: Image.Image, center: draw.Point, m: float,
               pathology: str) -> None:
  size = image.size
  if pathology == "BENIGN":
    draw.paint(image, _mass(rng, size, center, m * rng.uniform(0.2, 0.26), irregularity=0.0), _MASS)
  elif pathology == "BENIGN_WITHOUT_CALLBACK":
    r = m * rng.uniform(0.2, 0.26)
    draw.paint(image, _mass(rng, size, center, r, irregularity=0.0), _MASS + 15)
    draw.paint(image, draw.ellipse(size, center, (0.68 * r, 0.68 * r)), _FAT - 20)  # fat centre
  else:
    draw.paint(image, _spiculated(rng, size, center, m * rng.uniform(0.15, 0.2),
                                  int(rng.integers(12, 20)), width=max(1.0, m / 50)), _MASS + 15)


def _draw_calcification(rng: np.random.Generator, image: Image.Image, center: draw.Point, m: float,
                        pathology: str) -> None:
  size = image.size
  if pathology == "BENIGN":
    coarse = _scatter(rng, center, 0.16 * m, int(rng.integers(3, 6)))
    draw.paint(image, draw.dots(size, coarse, (m * rng.uniform(0.05, 0.08, len(coarse))).tolist()), _CALCIUM)
  elif pathology == "BENIGN_WITHOUT_CALLBACK":
    # A calcified vessel: two parallel walls running across the patch.
    angle = rng.uniform(0, np.pi)
    along, across = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
    t = np.linspace(-0.55, 0.55, 6)[:, None] * m
    bend = (0.08 * m * np.sin(np.linspace(0, np.pi, 6) * rng.uniform(0.5, 1.5)))[:, None]
    spine = np.asarray(center) + t * along + bend * across
    walls = [(spine + s * 0.05 * m * across).tolist() for s in (-1, 1)]
    draw.paint(image, draw.lines(size, walls, width=max(1.0, m / 60)), _CALCIUM)
  else:
    # Fine pleomorphic specks strung along a branching duct.
    specks: list[draw.Point] = []
    for _ in range(int(rng.integers(2, 4))):
      heading = rng.uniform(0, 2 * np.pi)
      steps = np.cumsum(rng.uniform(0.03, 0.06, 8)) * m
      headings = heading + np.cumsum(rng.normal(0, 0.25, 8))
      specks += list(zip((center[0] + steps * np.cos(headings)).tolist(),
                         (center[1] + steps * np.sin(headings)).tolist()))
    radii = (m * rng.uniform(0.012, 0.025, len(specks))).clip(min=0.8).tolist()
    draw.paint(image, draw.dots(size, specks, radii), _CALCIUM)


def draw_patch(rng: np.random.Generator, abnormality: str, pathology: str) -> np.ndarray:
  """A (H, W, 1) uint8 region-of-interest patch, 96-160 px a side, centred on the abnormality."""
  size = (int(rng.integers(96, 161)), int(rng.integers(96, 161)))
  # Patches are drawn at full size: the finest calcifications are only a few pixels wide.
  image = Image.new("L", size, _FAT + int(rng.integers(-10, 11)))
  _tissue(rng, image, Image.new("L", size, 255), density=rng.uniform(0, 0.8))
  center = (size[0] * rng.uniform(0.42, 0.58), size[1] * rng.uniform(0.42, 0.58))
  painter = _draw_mass if abnormality == "mass" else _draw_calcification
  painter(rng, image, center, min(size), pathology)
  return draw.to_array(draw.soften(image, 0.7))


class _CbisDdsmBuilder(base.SyntheticBuilder, skip_registration=True):
  """ROI patches of one abnormality type with their pathology (3 classes)."""
  ABNORMALITY = ""
  PATHOLOGY_PROBABILITIES: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)
  SPLIT_SIZES = {"train": 1500, "test": 200}
  DESCRIPTION = __doc__

  def features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),
        "image": tfds.features.Tensor(shape=(None, None, 1), dtype=np.uint8, encoding="zlib"),
        "label": tfds.features.ClassLabel(names=prompts.PATHOLOGIES),
        "view": tfds.features.Text(),  # CC | MLO
    })

  def generate(self, rng: np.random.Generator, index: int, split: str) -> dict[str, Any]:
    label = int(rng.choice(len(prompts.PATHOLOGIES), p=self.PATHOLOGY_PROBABILITIES))
    return {"image": draw_patch(rng, self.ABNORMALITY, prompts.PATHOLOGIES[label]), "label": label,
            "view": str(rng.choice(list(prompts.MAMMOGRAM_VIEWS)))}


class SyntheticCbisDdsmMass(_CbisDdsmBuilder):
  name = "synthetic_cbis_ddsm_mass"
  ABNORMALITY = "mass"
  # CBIS-DDSM masses are 6:1:6; softened so the middle class is not starved.
  PATHOLOGY_PROBABILITIES = (0.4, 0.2, 0.4)


class SyntheticCbisDdsmCalc(_CbisDdsmBuilder):
  name = "synthetic_cbis_ddsm_calc"
  ABNORMALITY = "calcification"


VINDR_TASK = tasks.register(tasks.Task(
    name="synthetic_vindr_mammo",
    builder=SyntheticVindrMammo,
    formatter=prompts.vindr_formatter("synthetic_vindr_mammo", prompts.SYNTHETIC_VINDR_MAMMO_INSTRUCTION),
    metrics=("macro_auc", "macro_f1"),
    options=prompts.BIRADS_OPTIONS,
    num_exemplars=1,
    paper_task="VinDr-Mammo",
))

CBIS_MASS_TASK = tasks.register(tasks.Task(
    name="synthetic_cbis_ddsm_mass",
    builder=SyntheticCbisDdsmMass,
    # A partial of a module-level function, not a closure, so data workers can pickle it.
    formatter=functools.partial(prompts.format_cbis, task_name="synthetic_cbis_ddsm_mass", abnormality="mass"),
    metrics=("macro_auc", "macro_f1"),
    options=prompts.PATHOLOGIES,
    paper_task="CBIS-DDSM mass",
))

CBIS_CALC_TASK = tasks.register(tasks.Task(
    name="synthetic_cbis_ddsm_calc",
    builder=SyntheticCbisDdsmCalc,
    formatter=functools.partial(prompts.format_cbis, task_name="synthetic_cbis_ddsm_calc",
                                abnormality="calcification"),
    metrics=("macro_auc", "macro_f1"),
    options=prompts.PATHOLOGIES,
    paper_task="CBIS-DDSM calcification",
))

"""Synthetic MIMIC-CXR: chest X-rays with five findings, for report generation and classification.

Each radiograph (PA, AP or LATERAL view, drawn with different anatomy) shows any subset of the
five conditions MIMIC-CXR classification is scored on, each present independently and each with
its own visual signature:

  cardiomegaly      the heart shadow is about twice as wide (cardiothoracic ratio > 0.5)
  pleural effusion  a dense fluid layer fills a lung base, its meniscus rising to the chest wall
  consolidation     a mottled, lobulated opacity in an upper or mid lung zone
  edema             a bilateral perihilar haze over both lung fields
  atelectasis       a dense wedge above the base pointing to the hilum, with a raised hemidiaphragm

The report (the findings section) is written from exactly what was drawn, so every sentence is
learnable from the image; the indication line is drawn independently and carries no signal.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from medpalm_m.data import prompts
from medpalm_m.data import tasks
from medpalm_m.data import tokenizer
from medpalm_m.data.synthetic import base
from medpalm_m.data.synthetic import drawing as draw

CONDITIONS = ("atelectasis", "cardiomegaly", "consolidation", "edema", "pleural effusion")
VIEWS = ("PA", "AP", "LATERAL")
_VIEW_PROBABILITIES = (0.45, 0.35, 0.20)
_PREVALENCE = 0.4  # each condition, independently
INDICATIONS = ("cough", "shortness of breath", "fever", "chest pain", "dyspnea", "hypoxia",
               "preoperative evaluation", "evaluate for pneumonia", "fall", "weakness")
_SEVERITY_LEVEL = {"small": 0.2, "moderate": 0.33, "large": 0.47}  # fluid height / lung height


@dataclasses.dataclass(frozen=True)
class Findings:
  """What one radiograph shows; sides are the patient's, so "right" is drawn on the image's left."""
  atelectasis: str | None = None  # "right" | "left" | "both"
  cardiomegaly: bool = False
  consolidation: tuple[str, str] | None = None  # (side, "upper" | "mid")
  edema: str | None = None  # "mild" | "moderate"
  effusion: tuple[str, str] | None = None  # ("small" | "moderate" | "large", side)
  # Not one of CONDITIONS: only the zero-shot TB analog (synthetic/zero_shot.py) draws it, so no
  # training task ever shows or names it.
  tuberculosis: str | None = None  # side of an upper-lobe cavity: "right" | "left"

  def present(self) -> tuple[int, ...]:
    """Presence of each of CONDITIONS, in order."""
    return (int(self.atelectasis is not None), int(self.cardiomegaly),
            int(self.consolidation is not None), int(self.edema is not None),
            int(self.effusion is not None))


def sample_findings(rng: np.random.Generator) -> Findings:
  present = rng.random(len(CONDITIONS)) < _PREVALENCE

  def side() -> str:
    return str(rng.choice(["right", "left", "both"], p=[0.4, 0.4, 0.2]))

  return Findings(
      atelectasis=side() if present[0] else None,
      cardiomegaly=bool(present[1]),
      consolidation=(str(rng.choice(["right", "left"])), str(rng.choice(["upper", "mid"])))
      if present[2] else None,
      edema=str(rng.choice(["mild", "moderate"])) if present[3] else None,
      effusion=(str(rng.choice(list(_SEVERITY_LEVEL))), side()) if present[4] else None)


def _join(items: Sequence[str]) -> str:
  return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def write_report(findings: Findings, view: str) -> str:
  """The findings section, in MIMIC-CXR's terse style. A lateral view cannot tell sides apart."""
  frontal = view != "LATERAL"
  sentences = ["The heart is enlarged." if findings.cardiomegaly else "Heart size is normal."]
  if findings.effusion:
    size, side = findings.effusion
    where = ("bilateral" if side == "both" else side) + " " if frontal else ""
    sentences.append(f"{size.capitalize()} {where}pleural effusion{'s' if side == 'both' else ''}.")
  if findings.consolidation:
    side, zone = findings.consolidation
    sentences.append(f"Patchy consolidation in the {side + ' ' if frontal else ''}{zone} lung.")
  if findings.edema:
    sentences.append(f"{findings.edema.capitalize()} pulmonary edema.")
  if findings.atelectasis:
    side = findings.atelectasis
    where = ("Bibasilar" if side == "both" else f"{side.capitalize()} basilar") if frontal else "Basilar"
    sentences.append(f"{where} atelectasis.")
  negatives = []
  if not (findings.consolidation or findings.edema or findings.atelectasis):
    sentences.append("The lungs are clear.")
  elif not findings.consolidation:
    negatives.append("focal consolidation")
  if not findings.effusion:
    negatives.append("pleural effusion")
  negatives.append("pneumothorax")
  sentences.append(f"No {_join(negatives)}.")
  return " ".join(sentences)


# Drawing --------------------------------------------------------------------------------------
# Grey levels (0-255): air in the lungs is dark, soft tissue mid-grey, bone and fluid bright.
_AIR, _SOFT_TISSUE, _BONE, _HEART, _FLUID = 26, 92, 145, 152, 178


@dataclasses.dataclass
class _Lung:
  """One lung field as drawn: its mask, bounding box, the hilum and which way the chest wall is."""
  mask: draw.Mask
  box: tuple[float, float, float, float]  # x0, y0, x1, y1
  hilum: tuple[float, float]
  outward: int  # +1 if the lateral chest wall is towards larger x

  @property
  def width(self) -> float:
    return self.box[2] - self.box[0]

  @property
  def height(self) -> float:
    return self.box[3] - self.box[1]

  def x_at(self, fraction_outward: float) -> float:
    """x from the medial edge (0) to the lateral wall (1)."""
    x0, _, x1, _ = self.box
    return x0 + fraction_outward * (x1 - x0) if self.outward > 0 else x1 - fraction_outward * (x1 - x0)


def _ribs(rng: np.random.Generator, lung: _Lung, count: int) -> list[list[tuple[float, float]]]:
  _, y0, _, y1 = lung.box
  # Posterior ribs: arcs from the spine sloping down towards the lateral chest wall.
  s = np.linspace(0.0, 1.0, 6)
  xs = [lung.x_at(f) for f in (-0.15 + 1.25 * s).tolist()]
  levels = y0 + (np.arange(count) + 0.3 + rng.uniform(-0.1, 0.1, count)) * (y1 - y0) / count
  ys = levels[:, None] + lung.height * (0.22 * s ** 1.6 - 0.08)
  return [list(zip(xs, row)) for row in ys.tolist()]


def _effusion(size: draw.Size, lung: _Lung, severity: str) -> draw.Mask:
  _, _, _, y1 = lung.box
  level = y1 - _SEVERITY_LEVEL[severity] * lung.height
  meniscus = 0.12 * lung.height
  fluid = [(lung.x_at(-0.1), level + 0.03 * lung.height), (lung.x_at(0.55), level),
           (lung.x_at(1.1), level - meniscus), (lung.x_at(1.1), y1 + 10), (lung.x_at(-0.1), y1 + 10)]
  return draw.intersect(draw.polygon(size, fluid), lung.mask)


def _consolidation(rng: np.random.Generator, size: draw.Size, lung: _Lung, zone: str) -> draw.Mask:
  _, y0, _, _ = lung.box
  center = (lung.x_at(rng.uniform(0.45, 0.65)),
            y0 + (rng.uniform(0.25, 0.35) if zone == "upper" else rng.uniform(0.48, 0.58)) * lung.height)
  outline = draw.blob_outline(rng, center, (0.32 * lung.width, 0.18 * lung.height), irregularity=0.45)
  mottling = draw.noise(rng, size, cell=3, low=0.55)
  return draw.intersect(draw.polygon(size, outline), mottling, lung.mask)


def _atelectasis(size: draw.Size, lung: _Lung) -> tuple[draw.Mask, draw.Mask]:
  """(dense wedge pointing to the hilum, raised hemidiaphragm) masks."""
  _, _, _, y1 = lung.box
  hx, hy = lung.hilum
  wedge = [(hx, hy + 0.05 * lung.height), (lung.x_at(0.12), y1 - 0.1 * lung.height),
           (lung.x_at(0.75), y1 - 0.14 * lung.height)]
  dome = [(lung.x_at(-0.2), y1 + 10), (lung.x_at(-0.2), y1 - 0.14 * lung.height),
          (lung.x_at(0.3), y1 - 0.2 * lung.height), (lung.x_at(0.7), y1 - 0.17 * lung.height),
          (lung.x_at(1.2), y1 - 0.06 * lung.height), (lung.x_at(1.2), y1 + 10)]
  return (draw.intersect(draw.polygon(size, wedge), lung.mask),
          draw.intersect(draw.polygon(size, dome), lung.mask))


def _tuberculosis(rng: np.random.Generator, size: draw.Size, lung: _Lung) -> tuple[draw.Mask, ...]:
  """(patchy infiltrate, the cavity's thick wall, the air inside it) in the lung's upper zone:
  the upper-lobe cavitary lesion of post-primary tuberculosis."""
  _, y0, _, _ = lung.box
  center = (lung.x_at(rng.uniform(0.4, 0.7)), y0 + rng.uniform(0.18, 0.3) * lung.height)
  outer = rng.uniform(0.18, 0.24) * lung.width
  inner = outer * rng.uniform(0.45, 0.6)
  outline = draw.blob_outline(rng, center, (0.45 * lung.width, 0.2 * lung.height), irregularity=0.4)
  infiltrate = draw.intersect(draw.polygon(size, outline), draw.noise(rng, size, cell=3, low=0.5), lung.mask)
  wall = draw.subtract(draw.ellipse(size, center, (outer, outer)), draw.ellipse(size, center, (inner, inner)))
  return (draw.scaled(infiltrate, 0.7), draw.intersect(wall, lung.mask),
          draw.intersect(draw.ellipse(size, center, (inner, inner)), lung.mask))


def _paint_conditions(rng: np.random.Generator, image: Image.Image, lungs: dict[str, _Lung],
                      findings: Findings) -> None:
  size = image.size

  def on(side: str) -> list[_Lung]:
    # A lateral view has one lung field ("both") standing in for either side.
    return list(lungs.values()) if side == "both" else [lungs.get(side, lungs.get("both"))]

  if findings.edema:
    strength = 0.45 if findings.edema == "mild" else 0.7
    mottling = draw.noise(rng, size, cell=4, low=0.7)
    for lung in lungs.values():
      perihilar = draw.radial(size, lung.hilum, 0.55 * max(lung.width, 0.7 * lung.height))
      draw.paint(image, draw.scaled(draw.intersect(lung.mask, mottling), 0.4 * strength), _FLUID)
      draw.paint(image, draw.scaled(draw.intersect(lung.mask, perihilar, mottling), strength), _FLUID)
  if findings.consolidation:
    side, zone = findings.consolidation
    draw.paint(image, _consolidation(rng, size, on(side)[0], zone), _FLUID)
  if findings.atelectasis:
    for lung in on(findings.atelectasis):
      wedge, dome = _atelectasis(size, lung)
      draw.paint(image, dome, _SOFT_TISSUE + 30)
      draw.paint(image, wedge, _FLUID - 10)
  if findings.effusion:
    severity, side = findings.effusion
    for lung in on(side):
      draw.paint(image, _effusion(size, lung, severity), _FLUID)
  if findings.tuberculosis:  # last, so the five conditions draw exactly as without it
    for mask, level in zip(_tuberculosis(rng, size, on(findings.tuberculosis)[0]), (_FLUID, _FLUID + 20, _AIR)):
      draw.paint(image, mask, level)


def _draw_frontal(rng: np.random.Generator, size: draw.Size, findings: Findings, view: str) -> Image.Image:
  w, h = size
  cx, cy = w * rng.uniform(0.47, 0.53), h * rng.uniform(0.5, 0.55)
  tw, th = w * rng.uniform(0.37, 0.43), h * rng.uniform(0.37, 0.42)
  image = Image.new("L", size, 10)
  draw.paint(image, draw.ellipse(size, (cx, cy), (tw * 1.18, th * 1.3)), _SOFT_TISSUE)
  lungs: dict[str, _Lung] = {}
  # The patient's right lung is on the image's left, and its diaphragm sits a little higher.
  for side, sign, lift in (("right", -1, 0.04), ("left", 1, 0.0)):
    lcx, lcy = cx + sign * tw * 0.5, cy - th * (0.05 + lift)
    rx, ry = tw * 0.4, th * 0.78
    mask = draw.polygon(size, draw.blob_outline(rng, (lcx, lcy), (rx, ry), irregularity=0.05))
    lungs[side] = _Lung(mask=mask, box=(lcx - rx, lcy - ry, lcx + rx, lcy + ry),
                        hilum=(lcx - sign * rx * 0.55, lcy + ry * 0.05), outward=sign)
  air = draw.union(lungs["right"].mask, lungs["left"].mask)
  draw.paint(image, air, _AIR)
  ribs = draw.lines(size, [rib for lung in lungs.values() for rib in _ribs(rng, lung, 7)], width=h / 60)
  draw.paint(image, draw.scaled(draw.intersect(ribs, air), 0.2), 255)
  spine = [(cx - 0.07 * tw, cy - 1.1 * th), (cx + 0.07 * tw, cy - 1.1 * th),
           (cx + 0.07 * tw, cy + th), (cx - 0.07 * tw, cy + th)]
  draw.paint(image, draw.polygon(size, spine), _BONE)
  clavicle_y = cy - th * (0.98 if view == "AP" else 0.82)
  clavicles = [[(cx + s * 0.1 * tw, clavicle_y + 0.08 * th), (cx + s * 0.9 * tw, clavicle_y - 0.05 * th)]
               for s in (-1, 1)]
  draw.paint(image, draw.lines(size, clavicles, width=h / 40), _BONE + 10)
  if view == "AP":
    # Supine portable films: the scapulae project over the upper outer lung fields.
    for s in (-1, 1):
      scapula = [(cx + s * tw * 0.98, cy - 0.85 * th), (cx + s * tw * 0.62, cy - 0.5 * th),
                 (cx + s * tw * 0.95, cy - 0.05 * th)]
      draw.paint(image, draw.scaled(draw.polygon(size, scapula), 0.15), 255)
  heart_rx = tw * (rng.uniform(0.5, 0.58) if findings.cardiomegaly else rng.uniform(0.26, 0.32))
  heart = draw.ellipse(size, (cx + 0.12 * tw, cy + 0.36 * th), (heart_rx, th * 0.3))
  draw.paint(image, heart, _HEART)
  visible = {side: dataclasses.replace(lung, mask=draw.subtract(lung.mask, heart))
             for side, lung in lungs.items()}
  _paint_conditions(rng, image, visible, findings)
  return image


def _draw_lateral(rng: np.random.Generator, size: draw.Size, findings: Findings) -> Image.Image:
  w, h = size
  cx, cy = w * rng.uniform(0.47, 0.53), h * rng.uniform(0.5, 0.55)
  tw, th = w * rng.uniform(0.37, 0.42), h * rng.uniform(0.38, 0.42)
  image = Image.new("L", size, 10)
  draw.paint(image, draw.ellipse(size, (cx, cy), (tw * 1.2, th * 1.25)), _SOFT_TISSUE)
  rx, ry, lcy = tw * 0.82, th * 0.85, cy - 0.05 * th
  mask = draw.polygon(size, draw.blob_outline(rng, (cx, lcy), (rx, ry), irregularity=0.05))
  # Anterior is the image's left: the heart and sternum sit there, the spine at the back (right).
  lung = _Lung(mask=mask, box=(cx - rx, lcy - ry, cx + rx, lcy + ry), hilum=(cx + 0.05 * tw, lcy),
               outward=1)
  draw.paint(image, mask, _AIR)
  vertebrae = [(cx + 0.95 * tw, y) for y in np.linspace(cy - 1.05 * th, cy + th, 9).tolist()]
  draw.paint(image, draw.dots(size, vertebrae, [0.1 * tw] * len(vertebrae)), _BONE)
  sternum = [[(cx - 0.92 * tw, cy - 0.85 * th), (cx - 0.98 * tw, cy + 0.3 * th)]]
  draw.paint(image, draw.lines(size, sternum, width=w / 45), _BONE)
  heart_r = (tw * 0.52, th * 0.4) if findings.cardiomegaly else (tw * 0.32, th * 0.3)
  heart = draw.ellipse(size, (cx - 0.72 * tw + heart_r[0], cy + 0.75 * th - heart_r[1]), heart_r)
  draw.paint(image, heart, _HEART)
  _paint_conditions(rng, image, {"both": dataclasses.replace(lung, mask=draw.subtract(mask, heart))},
                    findings)
  return image


def draw_radiograph(rng: np.random.Generator, findings: Findings, view: str) -> np.ndarray:
  """A (H, W, 1) uint8 radiograph; H and W vary (160-208 px), as do exposure and position."""
  size = (int(rng.integers(160, 209)), int(rng.integers(168, 209)))
  # Drawn at half size and upsampled: a quarter of the pixel work, and the bilinear upsampling
  # softens every drawn edge at once. Every finding is far larger than a pixel of either size.
  # There is no film grain: it would carry no signal and triple the zlib cost of storing it.
  work = (size[0] // 2, size[1] // 2)
  image = _draw_lateral(rng, work, findings) if view == "LATERAL" else _draw_frontal(rng, work, findings, view)
  return draw.to_array(draw.gamma(image, rng.uniform(0.85, 1.2)).resize(size, Image.BILINEAR))


class SyntheticMimicCxr(base.SyntheticBuilder):
  """Radiographs with their findings, labels for all five conditions, and one condition to ask about."""
  name = "synthetic_mimic_cxr"
  SPLIT_SIZES = {"train": 1600, "test": 250}
  DESCRIPTION = __doc__

  def features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),
        "image": tfds.features.Tensor(shape=(None, None, 1), dtype=np.uint8, encoding="zlib"),
        "view": tfds.features.Text(),
        "indication": tfds.features.Text(),
        "findings": tfds.features.Text(),
        "labels": tfds.features.Tensor(shape=(len(CONDITIONS),), dtype=np.int64),  # CONDITIONS order
        # The one condition the classification task asks about, cycling so each is asked equally.
        "question_condition": tfds.features.Text(),
    })

  def generate(self, rng: np.random.Generator, index: int, split: str) -> dict[str, Any]:
    findings = sample_findings(rng)
    view = str(rng.choice(VIEWS, p=_VIEW_PROBABILITIES))
    return {
        "image": draw_radiograph(rng, findings, view),
        "view": view,
        "indication": str(rng.choice(INDICATIONS)),
        "findings": write_report(findings, view),
        "labels": np.asarray(findings.present(), np.int64),
        "question_condition": CONDITIONS[index % len(CONDITIONS)],
    }


# Tasks ----------------------------------------------------------------------------------------


def _report_query(record: tasks.Record) -> str:
  indication = tasks.text(record["indication"])
  return (f"Given the {tasks.text(record['view'])} view X-ray image {tokenizer.IMAGE_MARKER}. "
          f"Reason for the study: {indication}. "
          "Q: Describe the findings in the image following the instructions. A:")


def format_report(record: tasks.Record, exemplars: Sequence[tasks.Record]) -> tasks.Example:
  parts = [prompts.SYNTHETIC_MIMIC_CXR_REPORT_INSTRUCTION]
  for exemplar in exemplars:
    parts.append(tokenizer.escape_image_markers(_report_query(exemplar)) + " "
                 + prompts.answer(tasks.text(exemplar["findings"])))
  parts.append(_report_query(record))
  return {
      "id": tasks.text(record["id"]),
      "task": "synthetic_mimic_cxr_report",
      "images": [np.asarray(record["image"])],
      "prompt": " ".join(parts),
      "target": prompts.answer(tasks.text(record["findings"])),
  }


def _classification_query(record: tasks.Record) -> str:
  return (f"Given the {tasks.text(record['view'])} view X-ray image {tokenizer.IMAGE_MARKER}. "
          f"Q: Is {tasks.text(record['question_condition'])} indicated by the image? "
          f"{prompts.option_list(prompts.CHEST_XRAY_ANSWERS)} A:")


def _asked_label(record: tasks.Record) -> int:
  condition = tasks.text(record["question_condition"])
  return int(np.asarray(record["labels"])[CONDITIONS.index(condition)])


def format_classification(record: tasks.Record, exemplars: Sequence[tasks.Record]) -> tasks.Example:
  parts = [prompts.SYNTHETIC_MIMIC_CXR_CLASSIFICATION_INSTRUCTION]
  for exemplar in exemplars:
    parts.append(tokenizer.escape_image_markers(_classification_query(exemplar)) + " "
                 + prompts.answer(prompts.CHEST_XRAY_ANSWERS[_asked_label(exemplar)]))
  parts.append(_classification_query(record))
  label = _asked_label(record)
  return {
      "id": tasks.text(record["id"]),
      "task": "synthetic_mimic_cxr_classification",
      "images": [np.asarray(record["image"])],
      "prompt": " ".join(parts),
      "target": prompts.answer(prompts.CHEST_XRAY_ANSWERS[label]),
      "label": label,
      # Metrics are averaged over the five conditions, so each example says which one it is.
      "condition": tasks.text(record["question_condition"]),
  }


REPORT_TASK = tasks.register(tasks.Task(
    name="synthetic_mimic_cxr_report",
    builder=SyntheticMimicCxr,
    formatter=format_report,
    metrics=("bleu1", "bleu4", "rouge_l", "cider_d", "chexbert_micro_f1_14", "chexbert_macro_f1_14",
             "chexbert_micro_f1_5", "chexbert_macro_f1_5", "f1_radgraph"),
    num_exemplars=1,
    paper_task="MIMIC-CXR report",
))

CLASSIFICATION_TASK = tasks.register(tasks.Task(
    name="synthetic_mimic_cxr_classification",
    builder=SyntheticMimicCxr,
    formatter=format_classification,
    # Per condition, averaged over the conditions: the paper's 5-condition macro-AUC and macro-F1
    # (its macro-F1 is the F1 of "Yes", see metrics.classification.positive_f1).
    metrics=("macro_auc", "positive_f1"),
    options=prompts.CHEST_XRAY_ANSWERS,
    num_exemplars=1,
    paper_task="MIMIC-CXR classification",
))

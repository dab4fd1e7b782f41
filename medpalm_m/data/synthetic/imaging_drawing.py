"""Procedural drawing primitives shared by the synthetic imaging families (X-ray, skin, mammography).

Everything is a PIL image: a picture is mode "L" (grayscale) or "RGB", a mask is mode "L" with 255
meaning fully covered. Painting a colour through a mask is PIL's alpha-blended `paste`, and masks
combine with `ImageChops`, so drawing one image costs well under a millisecond of C code. That
matters: a family draws a few thousand images per build, train twice (the base builder regenerates
train to keep test records out of it), and a build must take seconds.

Sizes are PIL's (width, height) and points are (x, y) in pixels.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

Size = tuple[int, int]  # (width, height)
Point = tuple[float, float]  # (x, y)
Color = int | tuple[int, int, int]
Mask = Image.Image  # mode "L"


def _blank(size: Size) -> tuple[Mask, ImageDraw.ImageDraw]:
  mask = Image.new("L", size, 0)
  return mask, ImageDraw.Draw(mask)


def polygon(size: Size, points: Sequence[Point]) -> Mask:
  mask, pen = _blank(size)
  pen.polygon([(float(x), float(y)) for x, y in points], fill=255)
  return mask


def ellipse(size: Size, center: Point, radii: tuple[float, float]) -> Mask:
  """Axis-aligned ellipse with radii (rx, ry)."""
  (cx, cy), (rx, ry) = center, radii
  mask, pen = _blank(size)
  pen.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
  return mask


def dots(size: Size, centers: Sequence[Point], radii: Sequence[float]) -> Mask:
  mask, pen = _blank(size)
  for (cx, cy), r in zip(centers, radii):
    pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
  return mask


def lines(size: Size, polylines: Sequence[Sequence[Point]], width: float) -> Mask:
  mask, pen = _blank(size)
  for line in polylines:
    pen.line([(float(x), float(y)) for x, y in line], fill=255, width=max(1, int(round(width))),
             joint="curve")
  return mask


def noise(rng: np.random.Generator, size: Size, cell: float, low: float = 0.0,
          high: float = 1.0) -> Mask:
  """Band-limited noise with features about `cell` pixels wide, as mask values in [low, high]."""
  w, h = size
  grid = rng.uniform(low, high, (max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)))
  return Image.fromarray((grid * 255).astype(np.uint8)).resize(size, Image.BILINEAR)


@functools.lru_cache(maxsize=1)
def _spot() -> Image.Image:
  # PIL's radial gradient is the distance from the centre in pixels (128 at the inscribed circle).
  return Image.radial_gradient("L").point([max(0, 255 - 2 * v) for v in range(256)])


def radial(size: Size, center: Point, radius: float) -> Mask:
  """255 at `center`, falling linearly to 0 at `radius`."""
  diameter = max(2, int(round(2 * radius)))
  mask = Image.new("L", size, 0)
  mask.paste(_spot().resize((diameter, diameter), Image.BILINEAR),
             (int(round(center[0] - diameter / 2)), int(round(center[1] - diameter / 2))))
  return mask


def intersect(*masks: Mask) -> Mask:
  out = masks[0]
  for mask in masks[1:]:
    out = ImageChops.multiply(out, mask)
  return out


def union(*masks: Mask) -> Mask:
  out = masks[0]
  for mask in masks[1:]:
    out = ImageChops.lighter(out, mask)
  return out


def subtract(mask: Mask, cut: Mask) -> Mask:
  return ImageChops.subtract(mask, cut)


def scaled(mask: Mask, alpha: float) -> Mask:
  """The mask with every value multiplied by `alpha` (a translucent version of the shape)."""
  # A multiply with a constant image is C code; `Image.point` rebuilds its table in Python.
  return ImageChops.multiply(mask, Image.new("L", mask.size, int(round(255 * min(alpha, 1.0)))))


def soften(image: Image.Image, radius: float) -> Image.Image:
  # A box blur costs half a Gaussian and is indistinguishable at the 1-2 px radii used here.
  return image.filter(ImageFilter.BoxBlur(radius)) if radius > 0 else image


def paint(image: Image.Image, mask: Mask, color: Color) -> None:
  """Blend a flat colour (grey level or RGB) into `image` in place, with the mask as alpha."""
  image.paste(color, mask=mask)


def blob_outline(rng: np.random.Generator, center: Point, radii: tuple[float, float],
                 irregularity: float = 0.0, angle: float = 0.0, num_points: int = 40) -> list[Point]:
  """A closed outline around `center`: an ellipse whose radius is modulated by random low harmonics.

  `irregularity` 0 gives a clean ellipse (a circumscribed, benign-looking shape); 0.3 and more gives
  the lobulated, asymmetric outline of an irregular mass or lesion.
  """
  theta = np.linspace(0.0, 2 * np.pi, num_points, endpoint=False)
  modulation = np.ones_like(theta)
  if irregularity > 0:
    harmonics = np.arange(2, 6)[:, None]
    amplitudes = irregularity * rng.uniform(0.3, 1.0, (4, 1)) / harmonics ** 0.7
    phases = rng.uniform(0, 2 * np.pi, (4, 1))
    modulation = np.maximum(1.0 + (amplitudes * np.cos(harmonics * theta + phases)).sum(0), 0.35)
  a, b = radii[0] * modulation * np.cos(theta), radii[1] * modulation * np.sin(theta)
  cos, sin = np.cos(angle), np.sin(angle)
  xs, ys = center[0] + cos * a - sin * b, center[1] + sin * a + cos * b
  return list(zip(xs.tolist(), ys.tolist()))


def spokes(rng: np.random.Generator, center: Point, inner: float, outer: tuple[float, float],
           count: int) -> list[list[Point]]:
  """Radiating segments from radius `inner` out to a random length in `outer`: spiculation."""
  angles = np.sort(rng.uniform(0, 2 * np.pi, count))
  lengths = rng.uniform(*outer, count)
  return [[(center[0] + inner * np.cos(a), center[1] + inner * np.sin(a)),
           (center[0] + length * np.cos(a), center[1] + length * np.sin(a))]
          for a, length in zip(angles.tolist(), lengths.tolist())]


def gamma(image: Image.Image, exponent: float) -> Image.Image:
  """Exposure variation: v -> 255 * (v / 255) ** exponent."""
  table = np.rint(255 * (np.arange(256) / 255) ** exponent).astype(np.uint8)
  return Image.fromarray(table[np.asarray(image)])


def to_array(image: Image.Image) -> np.ndarray:
  """H x W x C uint8 (grayscale keeps a channel axis of 1)."""
  out = np.asarray(image, np.uint8)
  return out[..., None] if out.ndim == 2 else out

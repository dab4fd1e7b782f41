"""Drawing the synthetic images: PIL masks for the imaging families, a float canvas for VQA.

One convention throughout, PIL's: sizes are (width, height) and points are (x, y), with y growing
downwards.

The imaging families (X-ray, skin, mammography) draw PIL images: a picture is mode "L" (grayscale)
or "RGB", a mask is mode "L" with 255 meaning fully covered, and points are in pixels. Painting a
colour through a mask is PIL's alpha-blended `paste`, and masks combine with `ImageChops`, so
drawing one image costs well under a millisecond of C code.

The VQA families draw on a `Canvas` of floats in [0, 1] (grayscale or RGB) in centred, isotropic
coordinates: the image centre is (0, 0) and the shorter half-side is 1, whatever the image's aspect
ratio. A shape therefore keeps its form and its place relative to the centre (what "left", "upper"
and "lower" questions are about) on any canvas size, and survives the model's aspect-preserving
resize unchanged. Shapes are rasterised only inside their bounding box: an image holds dozens of
small nuclei and lesions, so every shape has to cost microseconds.

Speed matters because a family draws a few thousand images per build, train twice (the base builder
regenerates train to keep test records out of it), and a build must take seconds.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

Size = tuple[int, int]  # (width, height)
Point = tuple[float, float]  # (x, y)
Color = int | tuple[int, int, int]  # a grey level or RGB, 0-255
Mask = Image.Image  # mode "L"


# PIL masks and pictures in pixels (X-ray, skin, mammography) -----------------------------------

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


# A float canvas in centred coordinates (VQA) ---------------------------------------------------

CanvasColor = float | Sequence[float]  # a level in [0, 1], or one per channel


class Canvas:
  """Floats in [0, 1], painted in centred coordinates; `to_uint8` gives the (h, w, channels) image."""

  def __init__(self, size: Size, channels: int, background: CanvasColor = 0.0):
    self.width, self.height = size
    self.channels = channels
    self.scale = min(self.height, self.width) / 2.0  # pixels per coordinate unit
    # Channels first: numpy broadcasts slowly over a trailing axis of 3, so RGB compositing in
    # (h, w, 3) would cost ten times more than in (3, h, w).
    self.image = np.empty((channels, self.height, self.width), np.float32)
    self.image[...] = np.asarray(background, np.float32).reshape(-1, 1, 1)
    self._x = (np.arange(self.width, dtype=np.float32) + 0.5 - self.width / 2.0) / self.scale
    self._y = (np.arange(self.height, dtype=np.float32) + 0.5 - self.height / 2.0) / self.scale

  @property
  def extent(self) -> tuple[float, float]:
    """The (x, y) half-extents in coordinate units: the canvas spans [-ex, ex] x [-ey, ey]."""
    return self.width / 2.0 / self.scale, self.height / 2.0 / self.scale

  def coordinates(self, box: tuple[slice, slice] = (slice(None), slice(None))
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Centre coordinates (x, y) of the pixels in `box` (rows, columns of the pixel array), as
    broadcastable (1, w) and (h, 1) arrays."""
    rows, cols = box
    return self._x[None, cols], self._y[rows, None]

  def _box(self, center: Point, reach: float) -> tuple[slice, slice] | None:
    """The rows and columns of the pixel array within `reach` of `center`; None if off the canvas."""
    cx, cy = center
    y0 = int(np.floor((cy - reach) * self.scale + self.height / 2.0)) - 1
    y1 = int(np.ceil((cy + reach) * self.scale + self.height / 2.0)) + 1
    x0 = int(np.floor((cx - reach) * self.scale + self.width / 2.0)) - 1
    x1 = int(np.ceil((cx + reach) * self.scale + self.width / 2.0)) + 1
    y0, x0 = max(y0, 0), max(x0, 0)
    y1, x1 = min(y1, self.height), min(x1, self.width)
    if y0 >= y1 or x0 >= x1:
      return None
    return slice(y0, y1), slice(x0, x1)

  def ellipse(self, center: Point, radii: tuple[float, float], color: CanvasColor,
              *, angle: float = 0.0, opacity: float = 1.0, inner: float = 0.0) -> None:
    """Fill an ellipse (radii (rx, ry), rotated by `angle` radians) with an anti-aliased edge.

    `inner` > 0 leaves the inside of a smaller concentric ellipse (that fraction of the radii)
    unpainted: a ring, e.g. a rim of bone or fat around a body.
    """
    self.ellipses(np.asarray([center]), np.asarray([radii]), color, angles=np.asarray([angle]),
                  opacity=opacity, inner=inner)

  def ellipses(self, centers: np.ndarray, radii: np.ndarray, color: CanvasColor, *,
               angles: np.ndarray | None = None, opacity: float = 1.0, inner: float = 0.0) -> None:
    """Fill n ellipses (centers and radii (n, 2) as (x, y)) in one colour, composited once.

    Painting a group (the nuclei of a cluster) as one union costs one composite instead of n,
    which is most of the drawing time of a pathology tile.
    """
    centers, radii = np.asarray(centers, np.float32), np.asarray(radii, np.float32)
    if len(centers) == 0:
      return
    reach = float(radii.max())
    lo, hi = centers.min(axis=0) - reach, centers.max(axis=0) + reach
    box = self._box(((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2), float(max(hi - lo)) / 2)
    if box is None:
      return
    x, y = self.coordinates(box)
    dy = y[None] - centers[:, 1, None, None]
    dx = x[None] - centers[:, 0, None, None]
    if angles is not None and np.any(angles):
      cos = np.cos(angles).astype(np.float32)[:, None, None]
      sin = np.sin(angles).astype(np.float32)[:, None, None]
      dy, dx = dy * cos - dx * sin, dy * sin + dx * cos
    r = np.hypot(dy / radii[:, 1, None, None], dx / radii[:, 0, None, None])
    # About one pixel of soft edge, so small shapes keep their area after downsampling.
    edge = (1.0 / (self.scale * radii.min(axis=1)))[:, None, None]
    alpha = np.clip((1.0 - r) / edge + 0.5, 0.0, 1.0)
    if inner > 0:
      alpha *= np.clip((r - inner) / edge + 0.5, 0.0, 1.0)
    self._composite(box, alpha.max(axis=0) * opacity, color)

  def stripes(self, angle: float, period: float, width: float, color: CanvasColor, *,
              phase: float = 0.0, wobble: float = 0.0, opacity: float = 1.0) -> None:
    """Parallel bands across the whole canvas; `wobble` bends them into waves (e.g. fibres)."""
    x, y = self.coordinates()
    along = y * np.float32(np.sin(angle)) + x * np.float32(np.cos(angle))
    across = x * np.float32(np.sin(angle)) - y * np.float32(np.cos(angle))
    if wobble:
      across = across + np.float32(wobble) * np.sin(along * np.float32(7.0))
    # A band is where the cosine of the phase is above the cosine of its half-width: one
    # transcendental pass per pixel, with a soft edge about one pixel wide.
    wave = np.cos((across + np.float32(phase)) * np.float32(2 * np.pi / period))
    sharpness = np.float32(period * self.scale / (2 * np.pi))
    alpha = np.clip((wave - np.float32(np.cos(np.pi * width / period))) * sharpness + 0.5, 0.0, 1.0)
    self._composite((slice(None), slice(None)), alpha * np.float32(opacity), color)

  def _composite(self, box: tuple[slice, slice], alpha: np.ndarray, color: CanvasColor) -> None:
    patch = self.image[(slice(None), *box)]
    patch += alpha * (np.asarray(color, np.float32).reshape(-1, 1, 1) - patch)

  def add(self, delta: np.ndarray | float) -> None:
    """Add a constant or an (h, w)-broadcastable signal to every channel, e.g. a gradient."""
    self.image += delta

  def darken(self, xs: np.ndarray, ys: np.ndarray, gain: float) -> None:
    """Scale single pixels (all channels) by `gain`: sprinkles too small to draw as shapes."""
    self.image[:, ys, xs] *= gain

  def to_uint8(self) -> np.ndarray:
    """The (h, w, channels) uint8 image."""
    pixels = (np.clip(self.image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(pixels.transpose(1, 2, 0))


def scatter(rng: np.random.Generator, count: int, min_distance: float,
            box: tuple[float, float, float, float], tries: int = 100) -> list[Point]:
  """`count` points (x, y) in box (x0, x1, y0, y1), pairwise at least `min_distance` apart.

  Raises when the box is too crowded, rather than silently returning overlapping shapes that would
  make a counting question ambiguous.
  """
  x0, x1, y0, y1 = box
  for _ in range(tries):  # restart from scratch: an unlucky early point can block the rest
    points: list[Point] = []
    for _ in range(50):
      if len(points) == count:
        break
      # y is drawn before x: the order the benchmark's seeded images were made with.
      y = float(rng.uniform(y0, y1))
      p = (float(rng.uniform(x0, x1)), y)
      if all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 >= min_distance ** 2 for q in points):
        points.append(p)
    if len(points) == count:
      return points
  raise ValueError(f"cannot place {count} points {min_distance} apart in {box}")

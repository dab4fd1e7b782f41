"""A float canvas in centred, isotropic coordinates, for the synthetic VQA images.

Positions are given as (y, x) with the image centre at (0, 0) and the shorter half-side equal to
1, whatever the image's aspect ratio. A shape therefore keeps its form and its place relative to
the centre (what "left", "upper" and "lower" questions are about) on any canvas size, and survives
the model's aspect-preserving resize unchanged. Values are floats in [0, 1] (grayscale or RGB),
converted to an (h, w, channels) uint8 image once at the end.

Shapes are rasterised only inside their bounding box: an image holds dozens of small nuclei and
lesions, and a family draws a few thousand images per build (train twice: the base builder
regenerates it to keep test records out of it), so every shape has to cost microseconds.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

Color = float | Sequence[float]


class Canvas:

  def __init__(self, height: int, width: int, channels: int, background: Color = 0.0):
    self.height, self.width, self.channels = height, width, channels
    self.scale = min(height, width) / 2.0  # pixels per coordinate unit
    # Channels first: numpy broadcasts slowly over a trailing axis of 3, so RGB compositing in
    # (h, w, 3) would cost ten times more than in (3, h, w).
    self.image = np.empty((channels, height, width), np.float32)
    self.image[...] = np.asarray(background, np.float32).reshape(-1, 1, 1)
    self._y = (np.arange(height, dtype=np.float32) + 0.5 - height / 2.0) / self.scale
    self._x = (np.arange(width, dtype=np.float32) + 0.5 - width / 2.0) / self.scale

  @property
  def extent(self) -> tuple[float, float]:
    """The (y, x) half-extents in coordinate units: the canvas spans [-ey, ey] x [-ex, ex]."""
    return self.height / 2.0 / self.scale, self.width / 2.0 / self.scale

  def coordinates(self, rows: slice = slice(None), cols: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """Centre coordinates of the pixels in (rows, cols), as broadcastable (h, 1) and (1, w) arrays."""
    return self._y[rows, None], self._x[None, cols]

  def _box(self, center: tuple[float, float], reach: float) -> tuple[slice, slice] | None:
    cy, cx = center
    y0 = int(np.floor((cy - reach) * self.scale + self.height / 2.0)) - 1
    y1 = int(np.ceil((cy + reach) * self.scale + self.height / 2.0)) + 1
    x0 = int(np.floor((cx - reach) * self.scale + self.width / 2.0)) - 1
    x1 = int(np.ceil((cx + reach) * self.scale + self.width / 2.0)) + 1
    y0, x0 = max(y0, 0), max(x0, 0)
    y1, x1 = min(y1, self.height), min(x1, self.width)
    if y0 >= y1 or x0 >= x1:
      return None
    return slice(y0, y1), slice(x0, x1)

  def ellipse(self, center: tuple[float, float], radii: tuple[float, float], color: Color,
              *, angle: float = 0.0, opacity: float = 1.0, inner: float = 0.0) -> None:
    """Fill an ellipse (radii (ry, rx), rotated by `angle` radians) with an anti-aliased edge.

    `inner` > 0 leaves the inside of a smaller concentric ellipse (that fraction of the radii)
    unpainted: a ring, e.g. a rim of bone or fat around a body.
    """
    self.ellipses(np.asarray([center]), np.asarray([radii]), color, angles=np.asarray([angle]),
                  opacity=opacity, inner=inner)

  def ellipses(self, centers: np.ndarray, radii: np.ndarray, color: Color, *,
               angles: np.ndarray | None = None, opacity: float = 1.0, inner: float = 0.0) -> None:
    """Fill n ellipses (centers and radii (n, 2) as (y, x)) in one colour, composited once.

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
    y, x = self.coordinates(*box)
    dy = y[None] - centers[:, 0, None, None]
    dx = x[None] - centers[:, 1, None, None]
    if angles is not None and np.any(angles):
      cos = np.cos(angles).astype(np.float32)[:, None, None]
      sin = np.sin(angles).astype(np.float32)[:, None, None]
      dy, dx = dy * cos - dx * sin, dy * sin + dx * cos
    r = np.hypot(dy / radii[:, 0, None, None], dx / radii[:, 1, None, None])
    # About one pixel of soft edge, so small shapes keep their area after downsampling.
    edge = (1.0 / (self.scale * radii.min(axis=1)))[:, None, None]
    alpha = np.clip((1.0 - r) / edge + 0.5, 0.0, 1.0)
    if inner > 0:
      alpha *= np.clip((r - inner) / edge + 0.5, 0.0, 1.0)
    self._composite(box, alpha.max(axis=0) * opacity, color)

  def stripes(self, angle: float, period: float, width: float, color: Color, *,
              phase: float = 0.0, wobble: float = 0.0, opacity: float = 1.0) -> None:
    """Parallel bands across the whole canvas; `wobble` bends them into waves (e.g. fibres)."""
    y, x = self.coordinates()
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

  def _composite(self, box: tuple[slice, slice], alpha: np.ndarray, color: Color) -> None:
    patch = self.image[(slice(None), *box)]
    patch += alpha * (np.asarray(color, np.float32).reshape(-1, 1, 1) - patch)

  def add(self, delta: np.ndarray | float) -> None:
    """Add a constant or an (h, w)-broadcastable signal to every channel, e.g. a gradient."""
    self.image += delta

  def darken(self, rows: np.ndarray, cols: np.ndarray, gain: float) -> None:
    """Scale single pixels (all channels) by `gain`: sprinkles too small to draw as shapes."""
    self.image[:, rows, cols] *= gain

  def to_uint8(self) -> np.ndarray:
    """The (h, w, channels) uint8 image."""
    pixels = (np.clip(self.image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(pixels.transpose(1, 2, 0))


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
  """Band-limited noise in [0, 1] with features about `cell` pixels wide (bilinear, numpy only)."""
  grid = rng.random((max(2, int(height / cell) + 2), max(2, int(width / cell) + 2)), dtype=np.float32)
  # Gather-and-blend rather than matrix products: BLAS threads cost more than they save here.
  lo, frac = _resample(height, grid.shape[0])
  rows = grid[lo] * (1.0 - frac[:, None]) + grid[lo + 1] * frac[:, None]
  lo, frac = _resample(width, grid.shape[1])
  return rows[:, lo] * (1.0 - frac) + rows[:, lo + 1] * frac


def _resample(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
  """For n pixels over m grid values: each pixel's left grid index and its weight on the right one."""
  pos = (np.arange(n, dtype=np.float32) + 0.5) * (m - 1) / n
  lo = np.minimum(pos.astype(int), m - 2)
  return lo, pos - lo


def scatter(rng: np.random.Generator, count: int, min_distance: float,
            box: tuple[float, float, float, float], tries: int = 100) -> list[tuple[float, float]]:
  """`count` points in box (y0, y1, x0, x1), pairwise at least `min_distance` apart.

  Raises when the box is too crowded, rather than silently returning overlapping shapes that would
  make a counting question ambiguous.
  """
  y0, y1, x0, x1 = box
  for _ in range(tries):  # restart from scratch: an unlucky early point can block the rest
    points: list[tuple[float, float]] = []
    for _ in range(50):
      if len(points) == count:
        break
      p = (float(rng.uniform(y0, y1)), float(rng.uniform(x0, x1)))
      if all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 >= min_distance ** 2 for q in points):
        points.append(p)
    if len(points) == count:
      return points
  raise ValueError(f"cannot place {count} points {min_distance} apart in {box}")

"""Reading images from files: PNG and JPEG with PIL, DICOM with pydicom.

DICOM pixel data goes through the modality and VOI LUTs (windowing), MONOCHROME1 is inverted so
that bone is bright as in MONOCHROME2, and 12-16-bit values are scaled to 8 bits over the
windowed range. A file that cannot be decoded raises `ImageError` naming it.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageError(ValueError):
  pass


def is_dicom(data: bytes) -> bool:
  return len(data) >= 132 and data[128:132] == b"DICM"


def dicom_to_uint8(dataset) -> np.ndarray:
  from pydicom.pixels import apply_modality_lut, apply_voi_lut
  pixels = dataset.pixel_array
  if getattr(dataset, "NumberOfFrames", 1) not in (None, 1) and pixels.ndim >= 3 and dataset.get("SamplesPerPixel", 1) == 1:
    pixels = pixels[0]  # multi-frame: the first frame
  if dataset.get("PhotometricInterpretation", "") in ("RGB", "YBR_FULL", "YBR_FULL_422"):
    if dataset.get("PhotometricInterpretation") != "RGB":
      from pydicom.pixels import convert_color_space
      pixels = convert_color_space(pixels, dataset.PhotometricInterpretation, "RGB")
    return np.clip(pixels, 0, 255).astype(np.uint8)
  values = apply_voi_lut(apply_modality_lut(pixels, dataset), dataset).astype(np.float64)
  low, high = float(values.min()), float(values.max())
  scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
  if dataset.get("PhotometricInterpretation", "") == "MONOCHROME1":
    scaled = 1.0 - scaled
  return np.round(scaled * 255).astype(np.uint8)


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
  """HxW or HxWx3 uint8 from PNG/JPEG/DICOM bytes."""
  try:
    if is_dicom(data):
      import pydicom
      return dicom_to_uint8(pydicom.dcmread(io.BytesIO(data)))
    with Image.open(io.BytesIO(data)) as image:
      image.load()
      if image.mode not in ("L", "RGB"):
        image = image.convert("RGB" if image.mode in ("RGBA", "P", "CMYK", "YCbCr") else "L")
      return np.asarray(image)
  except (UnidentifiedImageError, OSError, ValueError, AttributeError, TypeError) as e:
    raise ImageError(f"cannot decode image {name}: {type(e).__name__}: {e}. Check that the "
                     "file is a complete PNG, JPEG or DICOM file") from e


def read_image(path: str | os.PathLike) -> np.ndarray:
  if not os.path.exists(path):
    raise ImageError(f"image file {path} does not exist")
  with open(path, "rb") as f:
    return decode_image(f.read(), str(path))

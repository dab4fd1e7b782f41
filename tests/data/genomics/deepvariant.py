"""DeepVariant v1.3.0 encodings written out literally, independent of the module's arithmetic."""

from __future__ import annotations

BASE_COLOR = {"A": 250, "G": 180, "T": 100, "C": 30}
FORWARD, REVERSE = 70, 240
SUPPORTS, NOT_SUPPORTS = 254, 152
DIFFERS, MATCHES = 254, 50


def scale(value: int, cap: int) -> int:
  return int(254 * min(value, cap) / cap)

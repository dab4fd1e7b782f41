"""DeepVariant v1.3.0's pileup settings (`pileup_image.default_options()`), its candidate
thresholds, and the pileup's shape and channels."""

from __future__ import annotations

import dataclasses


PILEUP_HEIGHT = 100
PILEUP_WIDTH = 221
PILEUP_NUM_CHANNELS = 6
CHANNEL_NAMES = (
    "read_base",
    "base_quality",
    "mapping_quality",
    "strand",
    "read_supports_variant",
    "base_differs_from_ref",
)


@dataclasses.dataclass(frozen=True)
class PileupOptions:
  """`pileup_image.default_options()` of DeepVariant v1.3.0, plus its candidate thresholds."""

  height: int = PILEUP_HEIGHT
  width: int = PILEUP_WIDTH
  num_channels: int = PILEUP_NUM_CHANNELS
  reference_band_height: int = 5
  base_color_offset_a_and_g: int = 40
  base_color_offset_t_and_c: int = 30
  base_color_stride: int = 70
  allele_supporting_read_alpha: float = 1.0
  allele_unsupporting_read_alpha: float = 0.6
  other_allele_supporting_read_alpha: float = 0.6
  reference_matching_read_alpha: float = 0.2
  reference_mismatching_read_alpha: float = 1.0
  indel_anchoring_base_char: str = "*"
  reference_base_quality: int = 60
  positive_strand_color: int = 70
  negative_strand_color: int = 240
  base_quality_cap: int = 40
  mapping_quality_cap: int = 60
  min_base_quality: int = 10
  min_mapping_quality: int = 10
  # DeepVariant fetches reads overlapping [start - 5, end + 5) of the
  # candidate, not the whole 221-bp window.
  read_overlap_buffer_bp: int = 5
  random_seed: int = 2101079370
  vsc_min_count_snps: int = 2
  vsc_min_fraction_snps: float = 0.12
  vsc_min_count_indels: int = 2
  vsc_min_fraction_indels: float = 0.06

  def __post_init__(self) -> None:
    # The candidate must sit in a single centre column.
    if self.width % 2 != 1 or self.width < 3:
      raise ValueError(f"width must be odd and >= 3, got {self.width}")
    if self.num_channels != PILEUP_NUM_CHANNELS:
      raise ValueError(
          f"only the {PILEUP_NUM_CHANNELS} DeepVariant v1.3.0 channels are "
          f"implemented, got num_channels={self.num_channels}"
      )
    if not 0 < self.reference_band_height < self.height:
      raise ValueError(
          f"reference_band_height must be in (0, height), got "
          f"{self.reference_band_height} with height {self.height}"
      )

  @property
  def half_width(self) -> int:
    return (self.width - 1) // 2

  @property
  def max_reads(self) -> int:
    return self.height - self.reference_band_height


DEFAULT_OPTIONS = PileupOptions()

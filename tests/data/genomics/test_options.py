"""DeepVariant v1.3.0's pileup options (medpalm_m.data.genomics.options)."""

from __future__ import annotations

import pytest

from medpalm_m.data.genomics import PileupOptions


def test_options_defaults_are_deepvariant_v1_3() -> None:
  options = PileupOptions()
  assert (options.height, options.width, options.num_channels, options.max_reads) == (100, 221, 6, 95)
  assert (options.min_base_quality, options.min_mapping_quality, options.random_seed) == (10, 10, 2101079370)
  with pytest.raises(ValueError, match="odd"):
    PileupOptions(width=220)

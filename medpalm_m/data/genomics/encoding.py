"""The DeepVariant pileup image of a candidate (`make_pileup`) and Med-PaLM M's RGB view of it.

The encoding follows DeepVariant v1.3.0's `pileup_image.py` and `pileup_channel_lib.cc`.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pysam

from medpalm_m.data.genomics.candidates import Candidate
from medpalm_m.data.genomics.options import (DEFAULT_OPTIONS, PILEUP_HEIGHT, PILEUP_NUM_CHANNELS,
                                             PILEUP_WIDTH, PileupOptions)
from medpalm_m.data.genomics.reads import (ALIGNED_OPS, CIGAR_D, CIGAR_I, CIGAR_N, CIGAR_S,
                                           PathOrAlignmentFile, PathOrFastaFile, is_usable_read,
                                           open_alignments, open_reference, read_arrays)


RGB_IMAGE_SIZE = 224

# DeepVariant's kMaxPixelValueAsFloat: 255 is never produced.
MAX_PIXEL_VALUE = 254


def _scale_color(value: int, cap: int) -> int:
  # Integer floor division equals DeepVariant's float32 ScaleColor for every
  # 0..255 input under caps 40 and 60 (the fractional parts are far from 0).
  return MAX_PIXEL_VALUE * min(max(value, 0), cap) // cap


def _alpha_color(alpha: float) -> int:
  return int(MAX_PIXEL_VALUE * alpha)


@dataclasses.dataclass(frozen=True)
class _Palette:
  """Per-options lookup tables so rows can be painted with numpy slices."""

  base_color: np.ndarray  # uint8[256], indexed by ASCII code
  base_quality: np.ndarray  # uint8[256], indexed by Phred score
  supports: int
  unsupports: int
  matches_ref: int
  differs_from_ref: int

  @classmethod
  def from_options(cls, options: PileupOptions) -> "_Palette":
    base_color = np.zeros(256, np.uint8)
    stride = options.base_color_stride
    for base, color in (
        ("A", options.base_color_offset_a_and_g + 3 * stride),
        ("G", options.base_color_offset_a_and_g + 2 * stride),
        ("T", options.base_color_offset_t_and_c + 1 * stride),
        ("C", options.base_color_offset_t_and_c + 0 * stride),
    ):
      base_color[ord(base)] = color
    quality = np.array(
        [_scale_color(q, options.base_quality_cap) for q in range(256)], np.uint8
    )
    return cls(
        base_color=base_color,
        base_quality=quality,
        supports=_alpha_color(options.allele_supporting_read_alpha),
        # Candidates here carry one alt, so DeepVariant's third case (read
        # supports another alt, other_allele_supporting_read_alpha) cannot arise.
        unsupports=_alpha_color(options.allele_unsupporting_read_alpha),
        matches_ref=_alpha_color(options.reference_matching_read_alpha),
        differs_from_ref=_alpha_color(options.reference_mismatching_read_alpha),
    )


@functools.lru_cache(maxsize=8)
def _palette(options: PileupOptions) -> _Palette:
  return _Palette.from_options(options)


def _allele_at(read: pysam.AlignedSegment, sequence: np.ndarray, pos: int) -> tuple[str, str | int] | None:
  """The single allele a read carries at `pos`, as the AlleleCounter sees it.

  An insertion or deletion anchored on `pos` takes the place of the base there.
  """
  ref_i, read_i = read.reference_start, 0
  allele: tuple[str, str | int] | None = None
  for op, length in read.cigartuples:
    if ref_i > pos + 1:
      break
    if op in ALIGNED_OPS:
      if ref_i <= pos < ref_i + length:
        allele = ("B", chr(sequence[read_i + pos - ref_i]))
      ref_i += length
      read_i += length
    elif op == CIGAR_I:
      if ref_i - 1 == pos and allele is not None:
        return ("I", sequence[read_i : read_i + length].tobytes().decode())
      read_i += length
    elif op == CIGAR_D:
      if ref_i - 1 == pos and allele is not None:
        return ("D", length)
      ref_i += length
    elif op == CIGAR_N:
      ref_i += length
    elif op == CIGAR_S:
      read_i += length
  return allele


def _candidate_allele(candidate: Candidate) -> tuple[str, str | int]:
  ref, alt = candidate.ref.upper(), candidate.alt.upper()
  if len(ref) == 1 and len(alt) == 1:
    return ("B", alt)
  if len(ref) == 1 and len(alt) > 1 and alt[0] == ref:
    return ("I", alt[1:])
  if len(alt) == 1 and len(ref) > 1 and ref[0] == alt:
    return ("D", len(ref) - 1)
  raise ValueError(
      f"only SNPs and anchored simple indels are supported, got ref={candidate.ref!r} "
      f"alt={candidate.alt!r}"
  )


def _encode_read(
    read: pysam.AlignedSegment,
    window_ref: np.ndarray,
    window_start: int,
    candidate_pos: int,
    candidate_allele: tuple[str, str | int],
    options: PileupOptions,
    palette: _Palette,
) -> np.ndarray | None:
  """One (width, 6) image row, or None when DeepVariant would drop the read.

  Walks the CIGAR like `Channels::CalculateBaseLevelData`: aligned bases get
  one pixel each; an insertion or deletion paints the anchor (the reference
  base before it) with the indel character, overwriting that base's pixel;
  soft clips and N skips draw nothing (DeepVariant gives them no base).
  """
  width = options.width
  sequence, qualities = read_arrays(read)
  row = np.zeros((width, PILEUP_NUM_CHANNELS), np.uint8)
  drawn = np.zeros(width, bool)
  window_end = window_start + width

  def paint_anchor(ref_pos: int, quality_index: int) -> bool:
    column = ref_pos - window_start
    if not 0 <= column < width:
      return True
    quality = int(qualities[quality_index])
    if ref_pos == candidate_pos and quality < options.min_base_quality:
      return False
    row[column, 0] = palette.base_color[ord(options.indel_anchoring_base_char)]
    row[column, 1] = palette.base_quality[min(quality, 255)]
    # The anchoring character never equals a reference base.
    row[column, 5] = palette.differs_from_ref
    drawn[column] = True
    return True

  ref_i, read_i = read.reference_start, 0
  for op, length in read.cigartuples:
    if op in ALIGNED_OPS:
      lo, hi = max(ref_i, window_start), min(ref_i + length, window_end)
      if lo < hi:
        q_lo = read_i + lo - ref_i
        q = slice(q_lo, q_lo + hi - lo)
        at_candidate = read_i + candidate_pos - ref_i
        if lo <= candidate_pos < hi and qualities[at_candidate] < options.min_base_quality:
          return None
        columns = slice(lo - window_start, hi - window_start)
        bases = sequence[q]
        row[columns, 0] = palette.base_color[bases]
        row[columns, 1] = palette.base_quality[np.minimum(qualities[q], 255)]
        row[columns, 5] = np.where(
            bases == window_ref[columns], palette.matches_ref, palette.differs_from_ref
        )
        drawn[columns] = True
      ref_i += length
      read_i += length
    elif op == CIGAR_I:
      if ref_i > 0 and not paint_anchor(ref_i - 1, read_i):
        return None
      read_i += length
    elif op == CIGAR_D:
      if read_i > 0 and not paint_anchor(ref_i - 1, read_i - 1):
        return None
      ref_i += length
    elif op == CIGAR_N:
      ref_i += length
    elif op == CIGAR_S:
      read_i += length
    # H and P consume neither sequence nor reference.

  # Read-level channels go on exactly the columns the walk painted.
  supports = _allele_at(read, sequence, candidate_pos) == candidate_allele
  row[drawn, 2] = _scale_color(read.mapping_quality, options.mapping_quality_cap)
  row[drawn, 3] = options.negative_strand_color if read.is_reverse else options.positive_strand_color
  row[drawn, 4] = palette.supports if supports else palette.unsupports
  return row


def _reference_row(window_ref: np.ndarray, options: PileupOptions, palette: _Palette) -> np.ndarray:
  row = np.empty((len(window_ref), PILEUP_NUM_CHANNELS), np.uint8)
  row[:, 0] = palette.base_color[window_ref]
  row[:, 1] = _scale_color(options.reference_base_quality, options.base_quality_cap)
  row[:, 2] = _scale_color(options.reference_base_quality, options.mapping_quality_cap)
  row[:, 3] = options.positive_strand_color
  row[:, 4] = palette.unsupports
  row[:, 5] = palette.matches_ref
  return row


def _read_sort_key(read: pysam.AlignedSegment) -> tuple[int, str, int]:
  return (read.reference_start, read.query_name or "", 1 if read.is_read2 else 0)


def make_pileup(
    bam: PathOrAlignmentFile,
    fasta: PathOrFastaFile,
    candidate: Candidate,
    options: PileupOptions = DEFAULT_OPTIONS,
) -> np.ndarray:
  """The (height, width, 6) uint8 DeepVariant pileup image centred on `candidate`.

  Raises ValueError when the window runs off the contig (DeepVariant makes no
  example for such candidates) or the reference disagrees with `candidate.ref`.
  """
  palette = _palette(options)
  candidate_allele = _candidate_allele(candidate)
  window_start = candidate.pos - options.half_width
  window_end = window_start + options.width

  with open_alignments(bam) as alignments, open_reference(fasta) as reference:
    contig_length = reference.get_reference_length(candidate.contig)
    if window_start < 0 or window_end > contig_length:
      raise ValueError(
          f"pileup window {candidate.contig}:{window_start}-{window_end} extends past the "
          f"contig (length {contig_length}); DeepVariant makes no image for such candidates"
      )
    ref_text = reference.fetch(candidate.contig, window_start, window_end).upper()
    if ref_text[options.half_width] != candidate.ref[0].upper():
      raise ValueError(
          f"reference base {ref_text[options.half_width]!r} at {candidate.contig}:"
          f"{candidate.pos} does not match candidate ref {candidate.ref!r}"
      )
    window_ref = np.frombuffer(ref_text.encode("ascii"), np.uint8)

    query_start = max(0, candidate.pos - options.read_overlap_buffer_bp)
    query_end = candidate.pos + len(candidate.ref) + options.read_overlap_buffer_bp
    reads = [
        read
        for read in alignments.fetch(candidate.contig, query_start, query_end)
        if is_usable_read(read, options)
    ]

  # DeepVariant v1.3.0 shuffles with a fresh RandomState per image and only
  # when there are more reads than rows, then keeps the first encodable ones.
  if len(reads) > options.max_reads:
    np.random.RandomState(options.random_seed).shuffle(reads)
  kept: list[tuple[tuple[int, str, int], np.ndarray]] = []
  for read in reads:
    if len(kept) == options.max_reads:
      break
    row = _encode_read(
        read, window_ref, window_start, candidate.pos, candidate_allele, options, palette
    )
    if row is not None:
      kept.append((_read_sort_key(read), row))
  kept.sort(key=lambda item: item[0])

  image = np.zeros((options.height, options.width, PILEUP_NUM_CHANNELS), np.uint8)
  image[: options.reference_band_height] = _reference_row(window_ref, options, palette)
  for index, (_, row) in enumerate(kept):
    image[options.reference_band_height + index] = row
  return image


def pileup_to_rgb(pileup: np.ndarray) -> np.ndarray:
  """Med-PaLM M's view of a pileup: channels 0-2 stacked above channels 3-5, zero-padded to 224x224x3."""
  pileup = np.asarray(pileup)
  expected = (PILEUP_HEIGHT, PILEUP_WIDTH, PILEUP_NUM_CHANNELS)
  if pileup.shape != expected:
    raise ValueError(f"expected a pileup of shape {expected}, got shape {pileup.shape}")
  if pileup.dtype != np.uint8:
    raise ValueError(f"expected a uint8 pileup, got dtype {pileup.dtype}")
  stacked = np.concatenate([pileup[:, :, :3], pileup[:, :, 3:]], axis=0)
  rgb = np.zeros((RGB_IMAGE_SIZE, RGB_IMAGE_SIZE, 3), np.uint8)
  rgb[: stacked.shape[0], : stacked.shape[1]] = stacked
  return rgb

"""Genomic variants as images: DeepVariant v1.3.0 pileups and their Med-PaLM M RGB form.

Med-PaLM M's genomics task shows the model a DeepVariant pileup of a candidate
variant and asks how many copies of the alternate allele it carries (0/1/2).
This module turns a coordinate-sorted BAM and a reference FASTA into those
pileups (the encoding follows DeepVariant's `pileup_image.py` and
`pileup_channel_lib.cc`), converts them to the (224, 224, 3) RGB images the
paper feeds the vision encoder, labels them from a truth VCF, and simulates a
small genome so the whole path can be exercised without the PrecisionFDA data.
"""

from __future__ import annotations

import array
import bisect
import contextlib
import dataclasses
import functools
import os
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
import pysam

PILEUP_HEIGHT = 100
PILEUP_WIDTH = 221
PILEUP_NUM_CHANNELS = 6
NUM_CLASSES = 3
RGB_IMAGE_SIZE = 224
CHANNEL_NAMES = (
    "read_base",
    "base_quality",
    "mapping_quality",
    "strand",
    "read_supports_variant",
    "base_differs_from_ref",
)

# DeepVariant's kMaxPixelValueAsFloat: 255 is never produced.
MAX_PIXEL_VALUE = 254

_CIGAR_M, _CIGAR_I, _CIGAR_D, _CIGAR_N, _CIGAR_S = 0, 1, 2, 3, 4
_CIGAR_EQ, _CIGAR_X = 7, 8
_ALIGNED_OPS = (_CIGAR_M, _CIGAR_EQ, _CIGAR_X)

PathOrAlignmentFile = str | os.PathLike | pysam.AlignmentFile
PathOrFastaFile = str | os.PathLike | pysam.FastaFile


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


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A putative variant in VCF convention: 0-based `pos`, indels anchored on the preceding base."""

    contig: str
    pos: int
    ref: str
    alt: str

    @property
    def variant_type(self) -> str:
        return "snp" if len(self.ref) == len(self.alt) == 1 else "indel"


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


@contextlib.contextmanager
def _open_alignments(bam: PathOrAlignmentFile) -> Iterator[pysam.AlignmentFile]:
    # Callers that loop over many sites pass an open file; one-off calls pass a path.
    if isinstance(bam, pysam.AlignmentFile):
        yield bam
        return
    with pysam.AlignmentFile(os.fspath(bam), "rb") as handle:
        yield handle


@contextlib.contextmanager
def _open_reference(fasta: PathOrFastaFile) -> Iterator[pysam.FastaFile]:
    if isinstance(fasta, pysam.FastaFile):
        yield fasta
        return
    with pysam.FastaFile(os.fspath(fasta)) as handle:
        yield handle


def _is_usable_read(read: pysam.AlignedSegment, options: PileupOptions) -> bool:
    """DeepVariant's default ReadRequirements (no duplicates, QC-fails, secondary or supplementary)."""
    return not (
        read.is_unmapped
        or read.is_secondary
        or read.is_supplementary
        or read.is_duplicate
        or read.is_qcfail
        or read.query_sequence is None
        or read.mapping_quality < options.min_mapping_quality
    )


def _read_arrays(read: pysam.AlignedSegment) -> tuple[np.ndarray, np.ndarray]:
    sequence = np.frombuffer(read.query_sequence.upper().encode("ascii"), np.uint8)
    qualities = read.query_qualities
    if qualities is None:
        # A BAM without qualities ('*') gives every base quality 0, so such reads
        # never pass the base-quality test at the candidate.
        return sequence, np.zeros(len(sequence), np.int64)
    return sequence, np.asarray(qualities, np.int64)


# ---------------------------------------------------------------------------
# Candidates
# ---------------------------------------------------------------------------


_ACGT = np.frombuffer(b"ACGT", np.uint8)
_BASE_CODE = np.full(256, 4, np.int64)  # A, C, G, T -> 0..3; anything else -> 4
_BASE_CODE[_ACGT] = np.arange(4)

# An indel allele keyed by its anchor: ("I", inserted bases) or ("D", deleted length).
IndelKey = tuple[int, str, str | int]


def _count_alleles(
    alignments: pysam.AlignmentFile, contig: str, start: int, end: int, options: PileupOptions
) -> tuple[np.ndarray, Counter[IndelKey]]:
    """Base counts (5 x span: A, C, G, T, other) and indel counts, like DeepVariant's AlleleCounter.

    Each read contributes one allele per position: an insertion or deletion
    replaces the base allele of its anchor, so an indel's VAF denominator is
    the anchor's depth. Bases (and inserted bases) below `min_base_quality`
    are not counted.
    """
    span = end - start
    counted_positions: list[np.ndarray] = []
    counted_codes: list[np.ndarray] = []
    indel_counts: Counter[IndelKey] = Counter()
    displaced_anchors: list[tuple[int, int]] = []
    for read in alignments.fetch(contig, start, end):
        if not _is_usable_read(read, options):
            continue
        sequence, qualities = _read_arrays(read)
        ref_i, read_i = read.reference_start, 0
        previous_op = None
        for op, length in read.cigartuples:
            if op in _ALIGNED_OPS:
                lo, hi = max(ref_i, start), min(ref_i + length, end)
                if lo < hi:
                    q = slice(read_i + lo - ref_i, read_i + hi - ref_i)
                    keep = qualities[q] >= options.min_base_quality
                    counted_positions.append(np.arange(lo - start, hi - start)[keep])
                    counted_codes.append(_BASE_CODE[sequence[q]][keep])
                ref_i += length
                read_i += length
            elif op in (_CIGAR_I, _CIGAR_D):
                anchor = ref_i - 1
                # Only an indel that follows a counted aligned base can replace it.
                counted = (
                    previous_op in _ALIGNED_OPS
                    and start <= anchor < end
                    and qualities[read_i - 1] >= options.min_base_quality
                )
                anchor_code = int(_BASE_CODE[sequence[read_i - 1]]) if counted else 4
                if op == _CIGAR_I:
                    inserted = slice(read_i, read_i + length)
                    key: IndelKey = (anchor, "I", sequence[inserted].tobytes().decode())
                    counted = counted and bool(np.all(qualities[inserted] >= options.min_base_quality))
                    read_i += length
                else:
                    key = (anchor, "D", length)
                    ref_i += length
                if counted:
                    indel_counts[key] += 1
                    displaced_anchors.append((anchor - start, anchor_code))
            elif op == _CIGAR_N:
                ref_i += length
            elif op == _CIGAR_S:
                read_i += length
            previous_op = op

    base_counts = np.zeros((5, span), np.int64)
    if counted_positions:
        np.add.at(base_counts, (np.concatenate(counted_codes), np.concatenate(counted_positions)), 1)
    for offset, code in displaced_anchors:
        base_counts[code, offset] -= 1
    return base_counts, indel_counts


def find_candidates(
    bam: PathOrAlignmentFile,
    fasta: PathOrFastaFile,
    contig: str,
    start: int,
    end: int,
    options: PileupOptions = DEFAULT_OPTIONS,
) -> list[Candidate]:
    """Candidate SNPs and indels anchored in [start, end), by DeepVariant's very-sensitive-caller thresholds.

    A SNP needs >= `vsc_min_count_snps` reads and VAF >= `vsc_min_fraction_snps`;
    an indel >= `vsc_min_count_indels` and VAF >= `vsc_min_fraction_indels`.
    Each alt at a site is its own candidate (no het-alt pairs); reads are not
    realigned. Sorted by (pos, ref, alt).
    """
    if start >= end:
        raise ValueError(f"empty region {contig}:{start}-{end}")
    with _open_alignments(bam) as alignments, _open_reference(fasta) as reference:
        base_counts, indel_counts = _count_alleles(alignments, contig, start, end, options)
        depth = base_counts.sum(axis=0)
        for (anchor, _, _), count in indel_counts.items():
            depth[anchor - start] += count

        ref_window = reference.fetch(contig, start, end).upper()
        ref_codes = _BASE_CODE[np.frombuffer(ref_window.encode("ascii"), np.uint8)]
        snp_mask = (
            (base_counts[:4] >= options.vsc_min_count_snps)
            & (base_counts[:4] / np.maximum(depth, 1) >= options.vsc_min_fraction_snps)
            & (np.arange(4)[:, None] != ref_codes[None, :])
            & (ref_codes[None, :] < 4)
        )
        candidates = [
            Candidate(contig, start + int(offset), ref_window[offset], "ACGT"[code])
            for code, offset in zip(*np.nonzero(snp_mask))
        ]
        for (anchor, kind, payload), count in indel_counts.items():
            fraction = count / depth[anchor - start]
            if count < options.vsc_min_count_indels or fraction < options.vsc_min_fraction_indels:
                continue
            if kind == "I":
                anchor_base = ref_window[anchor - start]
                candidates.append(Candidate(contig, anchor, anchor_base, anchor_base + str(payload)))
            else:
                ref = reference.fetch(contig, anchor, anchor + 1 + int(payload)).upper()
                candidates.append(Candidate(contig, anchor, ref, ref[0]))
    return sorted(candidates, key=lambda c: (c.pos, c.ref, c.alt))


# ---------------------------------------------------------------------------
# Pileup image
# ---------------------------------------------------------------------------


def _allele_at(read: pysam.AlignedSegment, sequence: np.ndarray, pos: int) -> tuple[str, str | int] | None:
    """The single allele a read carries at `pos`, as the AlleleCounter sees it.

    An insertion or deletion anchored on `pos` takes the place of the base there.
    """
    ref_i, read_i = read.reference_start, 0
    allele: tuple[str, str | int] | None = None
    for op, length in read.cigartuples:
        if ref_i > pos + 1:
            break
        if op in _ALIGNED_OPS:
            if ref_i <= pos < ref_i + length:
                allele = ("B", chr(sequence[read_i + pos - ref_i]))
            ref_i += length
            read_i += length
        elif op == _CIGAR_I:
            if ref_i - 1 == pos and allele is not None:
                return ("I", sequence[read_i : read_i + length].tobytes().decode())
            read_i += length
        elif op == _CIGAR_D:
            if ref_i - 1 == pos and allele is not None:
                return ("D", length)
            ref_i += length
        elif op == _CIGAR_N:
            ref_i += length
        elif op == _CIGAR_S:
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
    sequence, qualities = _read_arrays(read)
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
        if op in _ALIGNED_OPS:
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
        elif op == _CIGAR_I:
            if ref_i > 0 and not paint_anchor(ref_i - 1, read_i):
                return None
            read_i += length
        elif op == _CIGAR_D:
            if read_i > 0 and not paint_anchor(ref_i - 1, read_i - 1):
                return None
            ref_i += length
        elif op == _CIGAR_N:
            ref_i += length
        elif op == _CIGAR_S:
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

    with _open_alignments(bam) as alignments, _open_reference(fasta) as reference:
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
            if _is_usable_read(read, options)
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


# ---------------------------------------------------------------------------
# Labels and confident regions
# ---------------------------------------------------------------------------


def _normalized(pos: int, ref: str, alt: str) -> tuple[int, str, str]:
    """Minimal VCF representation, so 'ATT>AT' in a truth set matches the candidate 'AT>A'."""
    ref, alt = ref.upper(), alt.upper()
    while len(ref) > 1 and len(alt) > 1 and ref[-1] == alt[-1]:
        ref, alt = ref[:-1], alt[:-1]
    while len(ref) > 1 and len(alt) > 1 and ref[0] == alt[0]:
        ref, alt, pos = ref[1:], alt[1:], pos + 1
    return pos, ref, alt


def genotype_from_vcf(
    vcf: str | os.PathLike | pysam.VariantFile,
    candidate: Candidate,
    sample: str | None = None,
) -> int:
    """Copies (0, 1 or 2) of the candidate's alt allele in the truth genotype; 0 if the site is absent.

    Truth alleles are compared after trimming shared bases, so a multi-allelic
    truth record still labels each single-alt candidate. `sample` defaults to
    the first sample in the file.
    """
    wanted = _normalized(candidate.pos, candidate.ref, candidate.alt)
    opened = not isinstance(vcf, pysam.VariantFile)
    variants = pysam.VariantFile(os.fspath(vcf)) if opened else vcf
    try:
        if variants.index is not None:
            if candidate.contig not in variants.header.contigs:
                return 0
            records = variants.fetch(candidate.contig, candidate.pos, candidate.pos + 1)
        else:
            # An unindexed file is scanned; rewind in case a caller's handle was already read.
            variants.reset()
            records = (
                r
                for r in variants
                if r.contig == candidate.contig and r.start <= candidate.pos < r.stop
            )
        copies = 0
        for record in records:
            samples = list(record.samples)
            if not samples:
                raise ValueError("truth VCF has no samples to take a genotype from")
            genotype = record.samples[sample if sample is not None else samples[0]]["GT"] or ()
            alts = record.alts or ()
            matching = sum(
                1
                for allele in genotype
                if allele is not None
                and allele > 0
                and _normalized(record.start, record.ref, alts[allele - 1]) == wanted
            )
            copies = max(copies, matching)
        return copies
    finally:
        if opened:
            variants.close()


@functools.lru_cache(maxsize=4)
def _confident_intervals(path: str, mtime_ns: int, size: int) -> dict[str, tuple[list[int], list[int]]]:
    """Merged, sorted BED intervals per contig; keyed by mtime and size so edits invalidate the cache."""
    by_contig: dict[str, list[tuple[int, int]]] = {}
    with open(path) as handle:
        for line in handle:
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            contig, begin, end = line.split()[:3]
            by_contig.setdefault(contig, []).append((int(begin), int(end)))
    merged: dict[str, tuple[list[int], list[int]]] = {}
    for contig, intervals in by_contig.items():
        starts: list[int] = []
        ends: list[int] = []
        for begin, end in sorted(intervals):
            if starts and begin <= ends[-1]:
                ends[-1] = max(ends[-1], end)
            else:
                starts.append(begin)
                ends.append(end)
        merged[contig] = (starts, ends)
    return merged


def in_confident_regions(bed_path: str | os.PathLike, candidate: Candidate) -> bool:
    """Whether the candidate's start lies in the BED (DeepVariant's `RangeSet.variant_overlaps`)."""
    path = os.fspath(bed_path)
    stat = os.stat(path)
    intervals = _confident_intervals(path, stat.st_mtime_ns, stat.st_size).get(candidate.contig)
    if intervals is None:
        return False
    starts, ends = intervals
    index = bisect.bisect_right(starts, candidate.pos) - 1
    return index >= 0 and candidate.pos < ends[index]


# ---------------------------------------------------------------------------
# Simulated genome for the synthetic genomics task
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SimulatedGenome:
    """Files written by `simulate_genome` and the truth for each candidate site (genotype 0/1/2)."""

    directory: Path
    fasta_path: Path
    bam_path: Path
    contig: str
    sites: tuple[tuple[Candidate, int], ...]


_SIM_CONTIG = "chr1"
_SIM_MIN_SITE_GAP = 300


def _simulated_read_layout(
    site: Candidate, hap_start: int, read_length: int, local_start: int
) -> tuple[int, list[tuple[int, int]]]:
    """Reference start and CIGAR of a read taken from the alt haplotype around `site`.

    `hap_start` indexes the local alt haplotype that begins at reference
    `local_start`. Inserted bases at a read end become soft clips, as an
    aligner would report them.
    """
    anchor_end = site.pos - local_start + 1  # haplotype index just past the anchor
    hap_end = hap_start + read_length
    delta = len(site.alt) - len(site.ref)
    if delta == 0 or hap_end <= anchor_end:
        return local_start + hap_start, [(_CIGAR_M, read_length)]
    if delta < 0:
        if hap_start >= anchor_end:
            return local_start + hap_start - delta, [(_CIGAR_M, read_length)]
        before = anchor_end - hap_start
        return local_start + hap_start, [
            (_CIGAR_M, before),
            (_CIGAR_D, -delta),
            (_CIGAR_M, read_length - before),
        ]
    insert_end = anchor_end + delta
    before = max(0, anchor_end - hap_start)
    inserted = max(0, min(hap_end, insert_end) - max(hap_start, anchor_end))
    after = read_length - before - inserted
    cigar: list[tuple[int, int]] = []
    if before:
        cigar.append((_CIGAR_M, before))
    if inserted:
        cigar.append((_CIGAR_I if before and after else _CIGAR_S, inserted))
    if after:
        cigar.append((_CIGAR_M, after))
    ref_start = local_start + hap_start if before else local_start + max(hap_start, insert_end) - delta
    return ref_start, cigar


def simulate_genome(
    directory: str | os.PathLike,
    num_sites: int,
    seed: int,
    coverage: int = 30,
    read_length: int = 100,
    contig_length: int | None = None,
) -> SimulatedGenome:
    """Write a random reference, a sorted+indexed BAM and return its candidate sites with genotypes.

    Genotypes are balanced over 0/1/2. A genotype-0 site still has a minority of
    reads carrying the alt (20-35%, with low base quality at the site, like a
    systematic sequencing error), so it is a candidate as in DeepVariant's
    hom-ref examples. About 2/3 of sites are SNPs, the rest 1-3 bp insertions
    or deletions. Sites are far enough apart that a read overlaps at most one.
    """
    if num_sites < 1:
        raise ValueError(f"num_sites must be >= 1, got {num_sites}")
    rng = np.random.default_rng(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    max_indel = 3
    spacing = max(_SIM_MIN_SITE_GAP + 100, 2 * read_length + 4 * max_indel)
    jitter = spacing - max(_SIM_MIN_SITE_GAP, read_length + 2 * max_indel + 2)
    flank = max(DEFAULT_OPTIONS.half_width, read_length) + 2 * max_indel + 10
    required = 2 * flank + num_sites * spacing
    if contig_length is None:
        contig_length = required
    elif contig_length < required:
        raise ValueError(
            f"contig_length {contig_length} too short for {num_sites} sites; need >= {required}"
        )

    reference = _ACGT[rng.integers(0, 4, contig_length)].tobytes().decode()
    fasta_path = directory / "reference.fa"
    with open(fasta_path, "w") as handle:
        handle.write(f">{_SIM_CONTIG}\n")
        for offset in range(0, contig_length, 60):
            handle.write(reference[offset : offset + 60] + "\n")
    pysam.faidx(str(fasta_path))

    positions = flank + np.arange(num_sites) * spacing + rng.integers(0, jitter + 1, num_sites)
    genotypes = rng.permutation(np.arange(num_sites) % NUM_CLASSES)
    kinds = rng.choice(np.array(["snp", "ins", "del"]), size=num_sites, p=[2 / 3, 1 / 6, 1 / 6])
    indel_lengths = rng.integers(1, max_indel + 1, num_sites)
    artifact_fractions = rng.uniform(0.20, 0.35, num_sites)
    sites: list[Candidate] = []
    for pos, kind, length in zip(positions.tolist(), kinds, indel_lengths.tolist()):
        ref_base = reference[pos]
        if kind == "snp":
            alt = "ACGT"[("ACGT".index(ref_base) + int(rng.integers(1, 4))) % 4]
            sites.append(Candidate(_SIM_CONTIG, pos, ref_base, alt))
        elif kind == "ins":
            inserted = "".join("ACGT"[i] for i in rng.integers(0, 4, length))
            sites.append(Candidate(_SIM_CONTIG, pos, ref_base, ref_base + inserted))
        else:
            sites.append(Candidate(_SIM_CONTIG, pos, reference[pos : pos + 1 + length], ref_base))

    num_reads = int(coverage * contig_length / read_length)
    starts = np.sort(rng.integers(0, contig_length - read_length - max_indel, num_reads))
    # Per-read draws are made in bulk so the simulator stays vectorised.
    carry_draws = rng.random(num_reads)
    is_reverse = rng.random(num_reads) < 0.5
    is_duplicate = rng.random(num_reads) < 0.02
    mapping_quality = np.where(rng.random(num_reads) < 0.9, 60, rng.integers(0, 60, num_reads))
    cycle = np.arange(read_length) / read_length
    # Quality falls along the sequencing direction, which is reversed on the minus strand.
    decay = np.where(is_reverse[:, None], cycle[::-1], cycle) * 8
    noisy = rng.normal(37, 3, (num_reads, read_length)) - decay
    qualities = np.clip(np.rint(noisy), 2, 41).astype(np.int64)
    # A few low-quality bases anywhere, as in real runs.
    low = rng.random((num_reads, read_length)) < 0.03
    qualities = np.where(low, rng.integers(2, 20, (num_reads, read_length)), qualities)

    # The last site starting before a read's end is the only one it can touch.
    site_index = np.searchsorted(positions, starts + read_length, side="left") - 1
    sequences: list[bytes] = []
    layouts: list[tuple[int, list[tuple[int, int]]]] = []
    artifact_bases: list[tuple[int, int]] = []
    for read_index, start in enumerate(starts.tolist()):
        k = int(site_index[read_index])
        site = sites[k] if k >= 0 else None
        touches = site is not None and start <= site.pos + len(site.ref)
        genotype = int(genotypes[k]) if touches else 0
        if not touches:
            carry_probability = 0.0
        elif genotype == 0:
            carry_probability = float(artifact_fractions[k])
        else:
            # Reads come from either haplotype with equal chance, so a het site
            # is carried by half the reads and a hom-alt site by all of them.
            carry_probability = genotype / 2
        if carry_draws[read_index] >= carry_probability:
            sequences.append(reference[start : start + read_length].encode())
            layouts.append((start, [(_CIGAR_M, read_length)]))
            continue
        local_start = site.pos - read_length - 2 * max_indel
        local_end = site.pos + len(site.ref) + read_length + 2 * max_indel
        haplotype = (
            reference[local_start : site.pos] + site.alt + reference[site.pos + len(site.ref) : local_end]
        )
        shift = 0 if start <= site.pos else len(site.alt) - len(site.ref)
        hap_start = start - local_start + shift
        sequences.append(haplotype[hap_start : hap_start + read_length].encode())
        layouts.append(_simulated_read_layout(site, hap_start, read_length, local_start))
        if genotype == 0 and site.variant_type == "snp":
            artifact_bases.append((read_index, site.pos - layouts[-1][0]))

    for read_index, offset in artifact_bases:
        qualities[read_index, offset] = rng.integers(15, 26)
    # Substitution errors at the rate each base's Phred quality promises.
    codes = np.frombuffer(b"".join(sequences), np.uint8).reshape(num_reads, read_length)
    error = rng.random((num_reads, read_length)) < 10.0 ** (-qualities / 10.0)
    substituted = (_BASE_CODE[codes] + rng.integers(1, 4, codes.shape)) % 4
    codes = np.where(error, _ACGT[substituted], codes).astype(np.uint8)

    bam_path = directory / "reads.bam"
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": _SIM_CONTIG, "LN": contig_length}]}
    order = sorted(range(num_reads), key=lambda i: (layouts[i][0], i))
    with pysam.AlignmentFile(str(bam_path), "wb", header=header) as out:
        for read_index in order:
            ref_start, cigar = layouts[read_index]
            segment = pysam.AlignedSegment(out.header)
            segment.query_name = f"read{read_index:07d}"
            segment.flag = (16 if is_reverse[read_index] else 0) | (1024 if is_duplicate[read_index] else 0)
            segment.reference_id = 0
            segment.reference_start = ref_start
            segment.mapping_quality = int(mapping_quality[read_index])
            segment.cigartuples = cigar
            segment.query_sequence = codes[read_index].tobytes().decode()
            segment.query_qualities = array.array("B", qualities[read_index].astype(np.uint8).tobytes())
            out.write(segment)
    pysam.index(str(bam_path))

    labelled = tuple((site, int(genotype)) for site, genotype in zip(sites, genotypes))
    return SimulatedGenome(directory, fasta_path, bam_path, _SIM_CONTIG, labelled)


def pileup_images_for_sites(
    genome: SimulatedGenome, options: PileupOptions = DEFAULT_OPTIONS
) -> Iterator[tuple[Candidate, int, np.ndarray]]:
    """(candidate, genotype, 224x224x3 RGB) per simulated site, via the same path as a real BAM."""
    with pysam.AlignmentFile(str(genome.bam_path), "rb") as alignments, pysam.FastaFile(
        str(genome.fasta_path)
    ) as reference:
        for candidate, genotype in genome.sites:
            yield candidate, genotype, pileup_to_rgb(make_pileup(alignments, reference, candidate, options))

"""DeepVariant pileup encoding on real pysam files (medpalm_m.data.genomics.encoding)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pysam
import pytest

from medpalm_m.data.genomics import Candidate, make_pileup, pileup_to_rgb
from tests.data.genomics.bam_files import (ALT, CONTIG, POS, REF, WINDOW_START, D, I, M, S, with_base,
                                           write_bam, write_fasta)
from tests.data.genomics.deepvariant import (BASE_COLOR, DIFFERS, FORWARD, MATCHES, NOT_SUPPORTS, REVERSE,
                                             SUPPORTS, scale)


@pytest.fixture(scope="module")
def hand_built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
  tmp = tmp_path_factory.mktemp("hand_built")
  quals_a = [35] * 60
  quals_a[POS - 120] = 30
  quals_b = [25] * 10 + [20, 22] + [25] * 30
  quals_c = [33] * 30
  quals_c[9] = 12
  quals_e = [30] * 20
  quals_e[POS - 140] = 5
  reads = [
      # a: forward SNP carrier.
      dict(name="a", start=120, cigar=[(M, 60)], seq=with_base(REF[120:180], POS - 120, ALT), quals=quals_a),
      # b: reverse strand, 2-bp insertion after reference 139.
      dict(name="b", start=130, cigar=[(M, 10), (I, 2), (M, 30)], seq=REF[130:140] + "GA" + REF[140:170],
           quals=quals_b, mapq=30, reverse=True),
      # c: 3-bp deletion of reference 155-157, anchored on 154.
      dict(name="c", start=145, cigar=[(M, 10), (D, 3), (M, 20)], seq=REF[145:155] + REF[158:178],
           quals=quals_c, mapq=45),
      # f: leading soft clip.
      dict(name="f", start=148, cigar=[(S, 5), (M, 20)], seq="TTTTT" + REF[148:168]),
      # Excluded: MAPQ below 10.
      dict(name="d", start=125, cigar=[(M, 40)], seq=with_base(REF[125:165], POS - 125, ALT), mapq=5),
      # Excluded: base quality 5 at the candidate.
      dict(name="e", start=140, cigar=[(M, 20)], seq=REF[140:160], quals=quals_e),
      # Excluded: duplicate.
      dict(name="h", start=135, cigar=[(M, 30)], seq=REF[135:165], flag=1024),
      # Excluded: inside the window but not within 5 bp of the candidate.
      dict(name="g", start=50, cigar=[(M, 40)], seq=REF[50:90]),
  ]
  return write_fasta(tmp / "ref.fa"), write_bam(tmp / "reads.bam", reads)


def test_pileup_pixels_match_deepvariant_encoding(hand_built: tuple[Path, Path]) -> None:
  fasta, bam = hand_built
  image = make_pileup(bam, fasta, Candidate(CONTIG, POS, REF[POS], ALT))
  assert image.shape == (100, 221, 6) and image.dtype == np.uint8

  col = lambda ref_pos: ref_pos - WINDOW_START  # noqa: E731
  for row in range(5):
    for ref_pos in (WINDOW_START, POS, WINDOW_START + 220):
      assert image[row, col(ref_pos)].tolist() == [BASE_COLOR[REF[ref_pos]], 254, 254, FORWARD, 152, 50]

  # Rows sorted by alignment start: a (120), b (130), c (145), f (148); d, e, g, h excluded.
  a, b, c, f = 5, 6, 7, 8
  assert image[a, col(POS)].tolist() == [BASE_COLOR[ALT], scale(30, 40), 254, FORWARD, SUPPORTS, DIFFERS]
  assert image[a, col(140)].tolist() == [BASE_COLOR[REF[140]], scale(35, 40), 254, FORWARD, SUPPORTS, MATCHES]
  assert image[a, col(179)].any() and not image[a, col(119)].any() and not image[a, col(180)].any()

  mq_b = scale(30, 60)
  assert image[b, col(139)].tolist() == [0, scale(20, 40), mq_b, REVERSE, NOT_SUPPORTS, DIFFERS]
  assert image[b, col(138)].tolist() == [BASE_COLOR[REF[138]], scale(25, 40), mq_b, REVERSE, NOT_SUPPORTS, MATCHES]
  assert image[b, col(POS)].tolist() == [BASE_COLOR[REF[POS]], scale(25, 40), mq_b, REVERSE, NOT_SUPPORTS, MATCHES]
  assert not image[b, col(129)].any() and image[b, col(169)].any() and not image[b, col(170)].any()

  mq_c = scale(45, 60)
  assert image[c, col(154)].tolist() == [0, scale(12, 40), mq_c, FORWARD, NOT_SUPPORTS, DIFFERS]
  assert not image[c, col(155) : col(158)].any()
  assert image[c, col(158)].tolist() == [BASE_COLOR[REF[158]], scale(33, 40), mq_c, FORWARD, NOT_SUPPORTS, MATCHES]

  # Soft-clipped bases get no pixel (DeepVariant gives CLIP_SOFT no read base).
  assert not image[f, col(147)].any()
  assert image[f, col(148)].tolist() == [BASE_COLOR[REF[148]], scale(30, 40), 254, FORWARD, NOT_SUPPORTS, MATCHES]

  assert not image[9:].any()
  # Every drawn pixel carries all read-level channels; undrawn pixels are all zero.
  reads = image[5:9]
  drawn = reads[..., 3] != 0
  assert (reads[..., 2][drawn] > 0).all() and (reads[..., 4][drawn] > 0).all()
  assert not reads[~drawn].any()


def test_indel_candidates_mark_the_reads_that_carry_them(hand_built: tuple[Path, Path]) -> None:
  fasta, bam = hand_built
  deletion = make_pileup(bam, fasta, Candidate(CONTIG, 154, REF[154:158], REF[154]))
  insertion = make_pileup(bam, fasta, Candidate(CONTIG, 139, REF[139], REF[139] + "GA"))
  wrong_insertion = make_pileup(bam, fasta, Candidate(CONTIG, 139, REF[139], REF[139] + "GT"))
  # Deletion image rows: a, b, e (its low-quality base is at 150, not 154), c, f. Insertion: a, b, e.
  support = lambda image, row: set(image[row, :, 4][image[row, :, 3] != 0].tolist())  # noqa: E731
  assert [support(deletion, r) for r in range(5, 10)] == [{NOT_SUPPORTS}] * 3 + [{SUPPORTS}, {NOT_SUPPORTS}]
  assert not deletion[10:].any()
  assert [support(insertion, r) for r in range(5, 8)] == [{NOT_SUPPORTS}, {SUPPORTS}, {NOT_SUPPORTS}]
  assert support(wrong_insertion, 6) == {NOT_SUPPORTS}
  assert not insertion[8:].any()


def test_deep_pileups_keep_95_reads_chosen_like_deepvariant(tmp_path: Path) -> None:
  reads = [
      dict(name=f"r{i:03d}", start=100 + i % 50, cigar=[(M, 60 + i // 50)], seq=REF[100 + i % 50 : 160 + i % 50 + i // 50])
      for i in range(120)
  ]
  fasta, bam = write_fasta(tmp_path / "ref.fa"), write_bam(tmp_path / "deep.bam", reads)
  candidate = Candidate(CONTIG, POS, REF[POS], ALT)
  image = make_pileup(bam, fasta, candidate)
  np.testing.assert_array_equal(image, make_pileup(bam, fasta, candidate))

  with pysam.AlignmentFile(str(bam)) as handle:
    in_bam_order = [(r.reference_start, r.reference_end, r.query_name) for r in handle.fetch(CONTIG, 145, 156)]
  np.random.RandomState(2101079370).shuffle(in_bam_order)
  expected = sorted(in_bam_order[:95], key=lambda r: (r[0], r[2]))
  drawn = image[5:, :, 3] != 0
  first = drawn.argmax(axis=1) + WINDOW_START
  last = 220 - drawn[:, ::-1].argmax(axis=1) + WINDOW_START + 1
  assert drawn[:, 110].all()
  assert list(zip(first.tolist(), last.tolist())) == [(s, e) for s, e, _ in expected]


def test_make_pileup_rejects_windows_off_the_contig(hand_built: tuple[Path, Path]) -> None:
  fasta, bam = hand_built
  with pytest.raises(ValueError, match="extends past the contig"):
    make_pileup(bam, fasta, Candidate(CONTIG, 50, REF[50], "N"))
  with pytest.raises(ValueError, match="does not match"):
    make_pileup(bam, fasta, Candidate(CONTIG, POS, ALT, REF[POS]))


def test_pileup_to_rgb_stacks_channel_triples_and_pads() -> None:
  pileup = np.random.default_rng(0).integers(1, 255, (100, 221, 6), dtype=np.uint8)
  rgb = pileup_to_rgb(pileup)
  assert rgb.shape == (224, 224, 3) and rgb.dtype == np.uint8
  np.testing.assert_array_equal(rgb[:100, :221], pileup[:, :, 0:3])
  np.testing.assert_array_equal(rgb[100:200, :221], pileup[:, :, 3:6])
  assert not rgb[200:].any() and not rgb[:, 221:].any()
  with pytest.raises(ValueError, match=r"\(100, 221, 3\)"):
    pileup_to_rgb(pileup[:, :, :3])

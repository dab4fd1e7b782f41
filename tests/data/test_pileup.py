"""DeepVariant pileup encoding, candidate finding, labels and the genome simulator, on real pysam files."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pysam
import pytest

from medpalm_m.data.pileup import (
    Candidate,
    PileupOptions,
    find_candidates,
    genotype_from_vcf,
    in_confident_regions,
    make_pileup,
    pileup_images_for_sites,
    pileup_to_rgb,
    simulate_genome,
)

# DeepVariant v1.3.0 encodings written out literally, independent of the module's arithmetic.
BASE_COLOR = {"A": 250, "G": 180, "T": 100, "C": 30}
FORWARD, REVERSE = 70, 240
SUPPORTS, NOT_SUPPORTS = 254, 152
DIFFERS, MATCHES = 254, 50
M, I, D, S = 0, 1, 2, 4

CONTIG = "chr1"
REF = "".join(random.Random(7).choice("ACGT") for _ in range(300))
POS = 150
WINDOW_START = POS - 110


def scale(value: int, cap: int) -> int:
    return int(254 * min(value, cap) / cap)


def write_fasta(path: Path, sequence: str = REF) -> Path:
    path.write_text(f">{CONTIG}\n" + "\n".join(sequence[i : i + 60] for i in range(0, len(sequence), 60)) + "\n")
    pysam.faidx(str(path))
    return path


def write_bam(path: Path, reads: list[dict], contig_length: int = len(REF)) -> Path:
    """Writes reads unsorted, then sorts and indexes them with pysam as a real pipeline would."""
    header = {"HD": {"VN": "1.6"}, "SQ": [{"SN": CONTIG, "LN": contig_length}]}
    unsorted = path.with_suffix(".unsorted.bam")
    with pysam.AlignmentFile(str(unsorted), "wb", header=header) as out:
        for spec in reversed(reads):
            segment = pysam.AlignedSegment(out.header)
            segment.query_name = spec["name"]
            segment.flag = (16 if spec.get("reverse") else 0) | spec.get("flag", 0)
            segment.reference_id = 0
            segment.reference_start = spec["start"]
            segment.mapping_quality = spec.get("mapq", 60)
            segment.cigartuples = spec["cigar"]
            segment.query_sequence = spec["seq"]
            quals = spec.get("quals", 30)
            segment.query_qualities = pysam.qualitystring_to_array(
                "".join(chr(33 + q) for q in (quals if isinstance(quals, list) else [quals] * len(spec["seq"])))
            )
            out.write(segment)
    pysam.sort("-o", str(path), str(unsorted))
    pysam.index(str(path))
    return path


def with_base(sequence: str, index: int, base: str) -> str:
    return sequence[:index] + base + sequence[index + 1 :]


ALT = next(b for b in "ACGT" if b != REF[POS])


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


def test_find_candidates_thresholds(tmp_path: Path) -> None:
    def read(i: int, edits: dict[int, str] | None = None, ins: tuple[int, str] | None = None,
             dele: tuple[int, int] | None = None, **kw) -> dict:
        seq = list(REF[80:300])
        for pos, base in (edits or {}).items():
            seq[pos - 80] = base
        if ins:
            anchor, bases = ins
            cut = anchor + 1 - 80
            return dict(name=f"r{i:02d}", start=80, cigar=[(M, cut), (I, len(bases)), (M, 220 - cut)],
                        seq="".join(seq[:cut]) + bases + "".join(seq[cut:]), **kw)
        if dele:
            anchor, length = dele
            cut = anchor + 1 - 80
            return dict(name=f"r{i:02d}", start=80, cigar=[(M, cut), (D, length), (M, 220 - cut - length)],
                        seq="".join(seq[:cut] + seq[cut + length :]), **kw)
        return dict(name=f"r{i:02d}", start=80, cigar=[(M, 220)], seq="".join(seq), **kw)

    other = lambda pos: next(b for b in "ACGT" if b != REF[pos])  # noqa: E731
    low_quality_at_260 = [30] * 220
    low_quality_at_260[260 - 80] = 5
    reads = (
        # SNP at 150 in 4/20 reads (VAF 0.2): candidate. SNP at 170 in 2/20 (0.1 < 0.12): not.
        [read(i, {150: other(150), 170: other(170)}) for i in range(2)]
        + [read(i, {150: other(150)}) for i in range(2, 4)]
        # Insertion after 200 in 2/20 (0.1 >= 0.06): candidate. SNP at 180 in one read: not.
        + [read(4, {180: other(180)}, ins=(200, "GT")), read(5, ins=(200, "GT"))]
        # 2-bp deletion after 250 in 3/20: candidate.
        + [read(i, dele=(250, 2)) for i in range(6, 9)]
        # SNP at 260 in 3 reads but at base quality 5: not counted.
        + [read(i, {260: other(260)}, quals=low_quality_at_260) for i in range(9, 12)]
        + [read(i) for i in range(12, 20)]
        # SNP at 280 only in MAPQ-5 reads: not counted.
        + [read(i, {280: other(280)}, mapq=5) for i in range(20, 24)]
    )
    fasta, bam = write_fasta(tmp_path / "ref.fa"), write_bam(tmp_path / "cands.bam", reads)
    assert find_candidates(bam, fasta, CONTIG, 100, 300) == [
        Candidate(CONTIG, 150, REF[150], other(150)),
        Candidate(CONTIG, 200, REF[200], REF[200] + "GT"),
        Candidate(CONTIG, 250, REF[250:253], REF[250]),
    ]
    assert find_candidates(bam, fasta, CONTIG, 100, 145) == []
    assert Candidate(CONTIG, 150, "A", "C").variant_type == "snp"
    assert Candidate(CONTIG, 250, "ATT", "A").variant_type == "indel"


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory):
    first = simulate_genome(tmp_path_factory.mktemp("sim_a"), num_sites=60, seed=11)
    again = simulate_genome(tmp_path_factory.mktemp("sim_b"), num_sites=60, seed=11)
    return first, again


def test_simulator_is_deterministic_balanced_and_indexed(simulated, tmp_path: Path) -> None:
    first, again = simulated
    assert first.sites == again.sites
    assert first.fasta_path.read_bytes() == again.fasta_path.read_bytes()
    for (_, _, image_a), (_, _, image_b) in zip(pileup_images_for_sites(first), pileup_images_for_sites(again)):
        np.testing.assert_array_equal(image_a, image_b)
    assert simulate_genome(tmp_path, num_sites=60, seed=12).sites != first.sites

    assert Counter(genotype for _, genotype in first.sites) == {0: 20, 1: 20, 2: 20}
    kinds = Counter(
        "snp" if c.variant_type == "snp" else ("ins" if len(c.alt) > len(c.ref) else "del") for c, _ in first.sites
    )
    assert 0.5 <= kinds["snp"] / 60 <= 0.8 and kinds["ins"] > 0 and kinds["del"] > 0
    positions = [c.pos for c, _ in first.sites]
    assert min(np.diff(positions)) >= 300

    with pysam.AlignmentFile(str(first.bam_path)) as handle:
        assert handle.header.to_dict()["HD"]["SO"] == "coordinate"
        assert handle.check_index()
        starts = [r.reference_start for r in handle.fetch(first.contig)]
        assert starts == sorted(starts)
        site = first.sites[0][0]
        assert sum(1 for _ in handle.fetch(first.contig, site.pos, site.pos + 1)) >= 10

    found = set(find_candidates(first.bam_path, first.fasta_path, first.contig, 0, positions[-1] + 200))
    assert sum(c in found for c, _ in first.sites) >= 57


def test_supporting_reads_grow_with_genotype(simulated) -> None:
    first, _ = simulated
    fraction_by_genotype: dict[int, list[float]] = {0: [], 1: [], 2: []}
    for _, genotype, rgb in pileup_images_for_sites(first):
        assert rgb.shape == (224, 224, 3) and rgb.dtype == np.uint8
        # Channel 5 (supports variant) sits at RGB channel 1 of the lower half; strand (channel 4,
        # never 0 where a read is drawn) at RGB channel 0.
        centre = rgb[105:200, 110]
        drawn = centre[:, 0] != 0
        fraction_by_genotype[genotype].append(float(np.mean(centre[drawn, 1] == SUPPORTS)))
    means = [np.mean(fraction_by_genotype[g]) for g in (0, 1, 2)]
    assert means[0] < means[1] < means[2], means


def test_genotype_from_vcf(tmp_path: Path) -> None:
    header = pysam.VariantHeader()
    header.contigs.add(CONTIG, length=1000)
    header.add_meta("FORMAT", items=[("ID", "GT"), ("Number", 1), ("Type", "String"), ("Description", "Genotype")])
    header.add_sample("HG002")
    records = [
        (150, ("A", "C"), (0, 1), False),
        (200, ("G", "GGT"), (1, 1), True),
        (250, ("ATT", "AT", "A"), (1, 2), False),
        (300, ("G", "T"), (0, 0), False),
    ]
    plain, compressed = tmp_path / "truth.vcf", tmp_path / "truth.vcf.gz"
    for path, mode in ((plain, "w"), (compressed, "wz")):
        with pysam.VariantFile(str(path), mode, header=header) as out:
            for start, alleles, genotype, phased in records:
                record = out.new_record(contig=CONTIG, start=start, alleles=alleles)
                record.samples["HG002"]["GT"] = genotype
                record.samples["HG002"].phased = phased
                out.write(record)
    pysam.tabix_index(str(compressed), preset="vcf", force=True)

    cases = [
        (Candidate(CONTIG, 150, "A", "C"), 1),
        (Candidate(CONTIG, 150, "A", "G"), 0),
        (Candidate(CONTIG, 200, "G", "GGT"), 2),
        (Candidate(CONTIG, 250, "AT", "A"), 1),
        (Candidate(CONTIG, 250, "ATT", "A"), 1),
        (Candidate(CONTIG, 300, "G", "T"), 0),
        (Candidate(CONTIG, 400, "C", "A"), 0),
        (Candidate("chr2", 150, "A", "C"), 0),
    ]
    with pysam.VariantFile(str(plain)) as handle:
        for candidate, expected in cases:
            assert genotype_from_vcf(plain, candidate) == expected, candidate
            assert genotype_from_vcf(compressed, candidate) == expected, candidate
            assert genotype_from_vcf(handle, candidate) == expected, candidate


def test_in_confident_regions(tmp_path: Path) -> None:
    bed = tmp_path / "confident.bed"
    bed.write_text("track name=conf\nchr1\t100\t200\nchr1\t150\t300\nchr1\t500\t600\n")
    inside = lambda contig, pos: in_confident_regions(bed, Candidate(contig, pos, "A", "C"))  # noqa: E731
    assert [inside("chr1", p) for p in (99, 100, 250, 299, 300, 499, 599, 600)] == [
        False, True, True, True, False, False, True, False,
    ]
    assert not inside("chr2", 150)


def test_options_defaults_are_deepvariant_v1_3() -> None:
    options = PileupOptions()
    assert (options.height, options.width, options.num_channels, options.max_reads) == (100, 221, 6, 95)
    assert (options.min_base_quality, options.min_mapping_quality, options.random_seed) == (10, 10, 2101079370)
    with pytest.raises(ValueError, match="odd"):
        PileupOptions(width=220)

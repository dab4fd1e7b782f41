"""`rate analyze` on a hand-made ratings database, against numbers worked out by hand below."""

import json
import os
import subprocess
import sys

import pytest

from medpalm_m.rating import analysis, store as store_lib
from medpalm_m.rating.assignment import Assignment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCES = ("reference", "m1", "m2")


@pytest.fixture
def ratings_db(tmp_path) -> str:
  """Two raters, four cases, three sources.

  Side by side (1 = best), one ranker per case:
    c1 (r1): m1 1, reference 2, m2 3        c2 (r1): m1 1, m2 2, reference 3
    c3 (r2): reference 1, m2 2, m1 3        c4 (r2): m2 1, m1 2, reference 3
  r1 also ranked c3 (m2 1, m1 2, reference 3) but never marked it done: it must not count (it
  would make c3 a shared case and m1's preference 4 of 5).
  Independent evaluation, both raters on c1 and c2 (findings listed; every other report has none):
    c1 r1: m1 clinical error (significant), m1 omission (not), m2 other error (not)
    c1 r2: m1 clinical error (significant)
    c2 r1: m2 omission (significant), m2 clinical error (not)
    c2 r2: m2 omission (significant)
  plus r1's unfinished c3 with an m1 significant clinical error that must not count.
  """
  db = str(tmp_path / "ratings.sqlite")
  with store_lib.Store(db, create=True) as store:
    for name in ("r1", "r2"):
      store.add_rater(name, password=f"{name} password")
    plan = [("r1", "c1", True, True), ("r1", "c2", True, True), ("r1", "c3", True, True),
            ("r2", "c1", False, True), ("r2", "c2", False, True), ("r2", "c3", True, False),
            ("r2", "c4", True, False)]
    store.assign("hand-made", "hand-made", {c: SOURCES for c in ("c1", "c2", "c3", "c4")},
                 [Assignment(r, c, rank, annotate, SOURCES) for r, c, rank, annotate in plan])
    ids = {name: store.authenticate(name, f"{name} password").rater_id for name in ("r1", "r2")}
    for rater, case, ranks in [("r1", "c1", (2, 1, 3)), ("r1", "c2", (3, 1, 2)), ("r1", "c3", (3, 2, 1)),
                               ("r2", "c3", (1, 3, 2)), ("r2", "c4", (3, 2, 1))]:
      store.save_ranking(ids[rater], case, dict(zip(SOURCES, ranks)))
    for rater, case, source, kind, significant in [
        ("r1", "c1", "m1", "clinical_error", True), ("r1", "c1", "m1", "omission", False),
        ("r1", "c1", "m2", "other_error", False), ("r2", "c1", "m1", "clinical_error", True),
        ("r1", "c2", "m2", "omission", True), ("r1", "c2", "m2", "clinical_error", False),
        ("r2", "c2", "m2", "omission", True), ("r1", "c3", "m1", "clinical_error", True)]:
      store.add_finding(ids[rater], case, source, kind, significant, "")
    for rater, case, *_ in plan:
      if (rater, case) != ("r1", "c3"):
        store.complete(ids[rater], case)
  return db


def _estimate(value, low, high, n):
  return {"value": pytest.approx(value), "ci95": [pytest.approx(low), pytest.approx(high)], "n": n}


def test_analyze_gives_the_hand_computed_rates_and_intervals(ratings_db, tmp_path):
  result = subprocess.run([sys.executable, "-m", "medpalm_m.rate", "analyze", f"--db={ratings_db}",
                           f"--out={tmp_path}/out"], cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  with open(tmp_path / "out" / "analysis.json") as f:
    report = json.load(f)
  with open(tmp_path / "out" / "analysis.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"

  # Intervals: the bootstrap resamples the 4 cases. A rate whose per-case values are three 1s
  # and one 0 is (4 - K)/4 with K ~ Binomial(4, 1/4) draws of the 0-case: P(K = 4) = 0.4% and
  # P(K >= 3) = 5.1%, so the 2.5th percentile is 1/4; P(K = 0) = 32% makes the 97.5th 1. Mirrored,
  # one 1 and three 0s give (0, 3/4). Two 1s and two 0s: P(all 0s) = P(all 1s) = 6.25%, so (0, 1).
  sbs = report["side_by_side"]
  assert (sbs["rankings"], sbs["cases"]) == (4, 4)
  # Best ranked: the reference in c3, m1 in c1 and c2, m2 in c4.
  assert sbs["best_ranked_percent"] == {"reference": _estimate(25, 0, 75, 4), "m1": _estimate(50, 0, 100, 4),
                                        "m2": _estimate(25, 0, 75, 4)}
  # Above the reference: m1 in c1, c2, c4 (3 of 4); m2 in c2 and c4 (2 of 4).
  assert sbs["preferred_over_reference_percent"] == {"m1": _estimate(75, 25, 100, 4),
                                                     "m2": _estimate(50, 0, 100, 4)}

  # Per report, 4 reports per source (2 raters x c1, c2). A case's two reports travel together,
  # so with per-case totals t1 (c1) and t2 (c2) the resampled mean is (t1, (t1 + t2) / 2, t2) / 2
  # with probabilities 1/4, 1/2, 1/4, and the interval is (min, max) of t1/2 and t2/2.
  ind = report["independent"]
  assert ind["reports"] == {"reference": 4, "m1": 4, "m2": 4}
  per = ind["per_report"]
  assert per["significant_omissions"]["m1"] == _estimate(0, 0, 0, 4)
  assert per["total_omissions"]["m1"] == _estimate(0.25, 0, 0.5, 4)  # t1 = 1, t2 = 0
  assert per["significant_clinical_errors"]["m1"] == _estimate(0.5, 0, 1, 4)  # t1 = 2, t2 = 0
  assert per["total_clinical_errors"]["m1"] == _estimate(0.5, 0, 1, 4)
  assert per["total_errors"]["m1"] == _estimate(0.5, 0, 1, 4)
  assert per["significant_omissions"]["m2"] == _estimate(0.5, 0, 1, 4)  # t1 = 0, t2 = 2
  assert per["total_omissions"]["m2"] == _estimate(0.5, 0, 1, 4)
  assert per["significant_clinical_errors"]["m2"] == _estimate(0, 0, 0, 4)
  assert per["total_clinical_errors"]["m2"] == _estimate(0.25, 0, 0.5, 4)  # t1 = 0, t2 = 1
  assert per["total_errors"]["m2"] == _estimate(0.5, 0.5, 0.5, 4)  # other in c1 + clinical in c2: 1 each
  assert all(per[row]["reference"] == _estimate(0, 0, 0, 4) for row in per)

  # Agreement: no case has two finished rankings. Annotations share 6 reports (c1, c2 x 3
  # sources). "Any clinical error": (yes, yes) for c1-m1, (yes, no) for c2-m2, (no, no) for 4.
  # Coincidences o_yy = 2, o_yn = o_ny = 1, o_nn = 8; n_y = 3, n_n = 9, n = 12;
  # alpha = 1 - (n - 1)(o_yn + o_ny) / (2 n_y n_n) = 1 - 11 * 2 / 54 = 16/27. "Any omission":
  # (yes, no) c1-m1, (yes, yes) c2-m2: the same, 16/27. "Any error" (clinical or other):
  # (yes, yes) c1-m1, (yes, no) c1-m2 and c2-m2, 3 x (no, no): o_yy = 2, o_yn = o_ny = 2,
  # o_nn = 6, n_y = 4, n_n = 8: 1 - 11 * 4 / 64 = 5/16.
  agree = report["agreement"]
  assert agree["ranking"] == {"cases": 0, "rater_pairs": 0, "same_best_percent": None, "kendall_tau": None}
  assert agree["annotation"] == {"reports": 6, "cases": 2, "any_omission_alpha": pytest.approx(16 / 27),
                                 "any_clinical_error_alpha": pytest.approx(16 / 27),
                                 "any_error_alpha": pytest.approx(5 / 16)}

  printed = result.stdout
  assert "m1         50.00 (0.00-100.00)  75.00 (25.00-100.00)" in printed
  assert "total errors" in printed and "0.50 (0.50-0.50)" in printed


def test_ranking_agreement_on_shared_cases():
  # Case x: the raters swap b and c: pairs (a,b), (a,c) agree, (b,c) does not: tau = (2 - 1)/3;
  # same best (a). Case y: fully reversed: tau = -1, different best. Means: tau -1/3, 50%.
  rankings = [("r1", "x", {"a": 1, "b": 2, "c": 3}), ("r2", "x", {"a": 1, "b": 3, "c": 2}),
              ("r1", "y", {"a": 1, "b": 2, "c": 3}), ("r2", "y", {"a": 3, "b": 2, "c": 1}),
              ("r1", "z", {"a": 1, "b": 2, "c": 3})]
  agree = analysis.agreement(rankings, [])["ranking"]
  assert agree == {"cases": 2, "rater_pairs": 2, "same_best_percent": 50.0,
                   "kendall_tau": pytest.approx(-1 / 3)}


def test_analyze_refuses_a_database_without_assignments(tmp_path):
  db = str(tmp_path / "ratings.sqlite")
  store_lib.add_rater(db, "r1", password="r1 password")
  with pytest.raises(store_lib.StoreError, match="no assignments"):
    analysis.run(db, str(tmp_path))

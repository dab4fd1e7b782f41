"""The paper's tables from the ratings (Med-PaLM M §6.3, Table A.8).

Side by side: the share of rankings in which each source was ranked best, and for each model the
share of rankings in which it was ranked above the reference (the paper: 84B preferred over the
reference in 40.50% of cases). Independent evaluation: omissions and errors per report, each
as clinically significant ones and all of them, per source. Only cases a rater marked done
count; a done annotation with no finding on a report counts as zero for it.

Every number has a 95% interval from the bootstrap over cases: the cases are resampled with
replacement, each bringing all of its ratings (from every rater), the statistic (a ratio of sums
over the resampled cases) recomputed, and the 2.5th and 97.5th percentiles taken.

Inter-rater agreement, where a case has more than one rater: for rankings, how often two raters
chose the same best report and their mean Kendall tau; for annotations, Krippendorff's alpha
(nominal) of "the report has at least one <omission / clinical error>".
"""

from __future__ import annotations

import itertools
import json
import math
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from medpalm_m.rating import store as store_lib
from medpalm_m.rating import study as study_lib

# Rows of the independent evaluation: (name, kinds counted, significant only). "Total errors"
# counts clinical and other errors, as the paper's row "including non-clinical"; omissions are
# their own rows.
ERROR_ROWS = (
    ("significant_omissions", ("omission",), True),
    ("total_omissions", ("omission",), False),
    ("significant_clinical_errors", ("clinical_error",), True),
    ("total_clinical_errors", ("clinical_error",), False),
    ("total_errors", ("clinical_error", "other_error"), False),
)
DEFAULT_RESAMPLES = 1000

Ranking = tuple[str, str, Mapping[str, int]]  # (rater, case, {source: rank})
Annotation = tuple[str, str, str, Mapping[str, int]]  # (rater, case, source, counts)


def bootstrap_ratio(cases: Sequence[str], numerators: Sequence[float], denominators: Sequence[float],
                    resamples: int, seed: int) -> list[float] | None:
  """95% interval of sum(numerators) / sum(denominators), resampling cases with replacement.

  The i-th numerator and denominator belong to cases[i]; a case's rows travel together.
  """
  names = sorted(set(cases))
  if not names:
    return None
  index = {c: i for i, c in enumerate(names)}
  num, den = np.zeros(len(names)), np.zeros(len(names))
  for case, n, d in zip(cases, numerators, denominators):
    num[index[case]] += n
    den[index[case]] += d
  picks = np.random.default_rng(seed).integers(0, len(names), size=(resamples, len(names)))
  totals = den[picks].sum(axis=1)
  stats = num[picks].sum(axis=1)[totals > 0] / totals[totals > 0]
  if not len(stats):
    return None
  low, high = np.percentile(stats, [2.5, 97.5])
  return [float(low), float(high)]


def _estimate(cases: Sequence[str], values: Sequence[float], resamples: int, seed: int,
              scale: float = 1.0) -> dict[str, Any]:
  """Mean of per-rating values with its case-bootstrap interval (times scale, e.g. 100 for %)."""
  if not values:
    return {"value": None, "ci95": None, "n": 0}
  interval = bootstrap_ratio(cases, values, [1.0] * len(values), resamples, seed)
  return {"value": scale * float(np.mean(values)), "ci95": [scale * v for v in interval], "n": len(values)}


def side_by_side(rankings: Sequence[Ranking], sources: Sequence[str], resamples: int, seed: int) -> dict:
  """Best-ranked rate of every source and each model's preference over the reference, in %."""
  cases = [case for _, case, _ in rankings]
  best = {source: _estimate(cases, [float(ranks[source] == 1) for _, _, ranks in rankings], resamples, seed, 100.0)
          for source in sources}
  preferred = {}
  if study_lib.REFERENCE in sources:
    for source in sources:
      if source != study_lib.REFERENCE:
        values = [float(ranks[source] < ranks[study_lib.REFERENCE]) for _, _, ranks in rankings]
        preferred[source] = _estimate(cases, values, resamples, seed, 100.0)
  return {"rankings": len(rankings), "cases": len(set(cases)), "best_ranked_percent": best,
          "preferred_over_reference_percent": preferred}


def _count(counts: Mapping[str, int], kinds: Sequence[str], significant: bool) -> int:
  return sum(counts[f"{kind}_significant" if significant else kind] for kind in kinds)


def independent(annotations: Sequence[Annotation], sources: Sequence[str], resamples: int, seed: int) -> dict:
  """Omissions and errors per report, per source, each with its interval."""
  out: dict[str, Any] = {"reports": {}, "per_report": {}}
  for source in sources:
    rows = [(case, counts) for _, case, s, counts in annotations if s == source]
    out["reports"][source] = len(rows)
    for name, kinds, significant in ERROR_ROWS:
      out["per_report"].setdefault(name, {})[source] = _estimate(
          [case for case, _ in rows], [float(_count(counts, kinds, significant)) for _, counts in rows],
          resamples, seed)
  return out


def kendall_tau(a: Mapping[str, int], b: Mapping[str, int]) -> float:
  """Kendall's tau of two strict rankings of the same items: (concordant - discordant) / pairs."""
  pairs = list(itertools.combinations(sorted(a), 2))
  score = sum(np.sign(a[x] - a[y]) * np.sign(b[x] - b[y]) for x, y in pairs)
  return float(score / len(pairs))


def krippendorff_alpha_nominal(units: Sequence[Sequence[Any]]) -> float | None:
  """Krippendorff's alpha for nominal values; each unit lists the values its raters gave.

  alpha = 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c n_k, where o is the coincidence
  matrix over units with two or more values and n_c its marginals. None when it is undefined
  (fewer than two pairable values, or every value the same).
  """
  coincidence: dict[tuple[Any, Any], float] = {}
  for values in units:
    m = len(values)
    if m < 2:
      continue
    for i, j in itertools.permutations(range(m), 2):
      key = (values[i], values[j])
      coincidence[key] = coincidence.get(key, 0.0) + 1.0 / (m - 1)
  marginals: dict[Any, float] = {}
  for (c, _), value in coincidence.items():
    marginals[c] = marginals.get(c, 0.0) + value
  n = sum(marginals.values())
  expected = sum(marginals[c] * marginals[k] for c in marginals for k in marginals if c != k)
  if n < 2 or expected == 0:
    return None
  observed = sum(value for (c, k), value in coincidence.items() if c != k)
  return float(1.0 - (n - 1) * observed / expected)


def agreement(rankings: Sequence[Ranking], annotations: Sequence[Annotation]) -> dict:
  """Agreement between raters on the cases that more than one of them rated."""
  by_case: dict[str, list[Mapping[str, int]]] = {}
  for _, case, ranks in rankings:
    by_case.setdefault(case, []).append(ranks)
  pairs = [(a, b) for ranks in by_case.values() for a, b in itertools.combinations(ranks, 2)]
  ranking = {"cases": sum(len(r) > 1 for r in by_case.values()), "rater_pairs": len(pairs),
             "same_best_percent": None, "kendall_tau": None}
  if pairs:
    ranking["same_best_percent"] = 100.0 * float(np.mean([min(a, key=a.get) == min(b, key=b.get) for a, b in pairs]))
    ranking["kendall_tau"] = float(np.mean([kendall_tau(a, b) for a, b in pairs]))

  units: dict[tuple[str, str], list[Mapping[str, int]]] = {}
  for _, case, source, counts in annotations:
    units.setdefault((case, source), []).append(counts)
  shared = [u for u in units.values() if len(u) > 1]
  annotation = {"reports": len(shared), "cases": len({case for (case, _), u in units.items() if len(u) > 1})}
  for name, kinds in (("any_omission", ("omission",)), ("any_clinical_error", ("clinical_error",)),
                      ("any_error", ("clinical_error", "other_error"))):
    annotation[f"{name}_alpha"] = krippendorff_alpha_nominal(
        [[_count(c, kinds, False) > 0 for c in unit] for unit in shared])
  return {"ranking": ranking, "annotation": annotation}


def analyze(rankings: Sequence[Ranking], annotations: Sequence[Annotation], sources: Sequence[str], *,
            resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict[str, Any]:
  """Every table of the study, as one JSON-ready dict."""
  sources = sorted(sources, key=lambda s: (s != study_lib.REFERENCE, s))
  return {
      "sources": sources, "bootstrap": {"resamples": resamples, "seed": seed, "over": "cases"},
      "side_by_side": side_by_side(rankings, sources, resamples, seed),
      "independent": independent(annotations, sources, resamples, seed),
      "agreement": agreement(rankings, annotations),
  }


def _cell(estimate: Mapping[str, Any] | None, digits: int) -> str:
  if not estimate or estimate.get("value") is None:
    return "-"
  low, high = estimate["ci95"]
  return f"{estimate['value']:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
  widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
  fmt: Callable[[Sequence[str]], str] = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()
  return [fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows)]


def format_tables(report: Mapping[str, Any]) -> str:
  """The analysis as printed tables (value and 95% interval in parentheses)."""
  sources = report["sources"]
  sbs, ind, agree = report["side_by_side"], report["independent"], report["agreement"]
  out = [f"Side by side: {sbs['rankings']} rankings of {sbs['cases']} cases (%, 95% CI over cases)"]
  out += _table(["source", "best-ranked", "preferred over reference"],
                [[s, _cell(sbs["best_ranked_percent"].get(s), 2),
                  _cell(sbs["preferred_over_reference_percent"].get(s), 2)] for s in sources])
  out += ["", "Independent evaluation: per report (mean, 95% CI over cases)"]
  out += _table(["", *sources], [["annotated reports", *(str(ind["reports"][s]) for s in sources)]] +
                [[name.replace("_", " "), *(_cell(ind["per_report"][name][s], 2) for s in sources)]
                 for name, _, _ in ERROR_ROWS])
  r, a = agree["ranking"], agree["annotation"]
  fmt = lambda v, d=2: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"
  out += ["", f"Inter-rater agreement: rankings on {r['cases']} shared cases ({r['rater_pairs']} rater pairs): "
          f"same best report {fmt(r['same_best_percent'], 1)}%, Kendall tau {fmt(r['kendall_tau'])}; "
          f"annotations on {a['reports']} shared reports: Krippendorff alpha any omission "
          f"{fmt(a['any_omission_alpha'])}, any clinical error {fmt(a['any_clinical_error_alpha'])}, "
          f"any error {fmt(a['any_error_alpha'])}"]
  return "\n".join(out)


def run(db_path: str, out_dir: str | None = None, *, resamples: int = DEFAULT_RESAMPLES,
        seed: int = 0) -> tuple[dict[str, Any], dict[str, str]]:
  """Analyzes a ratings database; writes analysis.json and analysis.png to out_dir (default:
  the database's folder). Returns the report and the paths written."""
  from medpalm_m.rating import chart
  with store_lib.Store(db_path) as store:
    sources = store.sources()
    if not sources:
      raise store_lib.StoreError(f"{db_path}: no assignments, so nothing to analyze")
    report = analyze(store.completed_rankings(), store.completed_annotations(), sources,
                     resamples=resamples, seed=seed)
  out_dir = out_dir or os.path.dirname(os.path.abspath(db_path))
  os.makedirs(out_dir, exist_ok=True)
  paths = {"json": os.path.join(out_dir, "analysis.json"), "png": os.path.join(out_dir, "analysis.png")}
  with open(paths["json"], "w") as f:
    json.dump(report, f, indent=2)
  chart.write(report, paths["png"])
  return report, paths

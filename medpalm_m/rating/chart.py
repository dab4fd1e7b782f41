"""The analysis as one PNG: side-by-side rates (left) and errors per report (right), with 95% CIs."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np


def _bars(ax, groups: Sequence[str], series: Mapping[str, Sequence[Mapping[str, Any] | None]]) -> None:
  """Grouped bars with interval whiskers; a missing estimate leaves a gap."""
  width = 0.8 / max(len(series), 1)
  x = np.arange(len(groups))
  for k, (label, estimates) in enumerate(series.items()):
    values = [e["value"] if e and e.get("value") is not None else np.nan for e in estimates]
    low = [v - e["ci95"][0] if e and e.get("ci95") else 0.0 for v, e in zip(values, estimates)]
    high = [e["ci95"][1] - v if e and e.get("ci95") else 0.0 for v, e in zip(values, estimates)]
    ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, yerr=[low, high], capsize=3, label=label)
  ax.set_xticks(x, groups, rotation=20, ha="right")
  ax.legend(fontsize=8)


def write(report: Mapping[str, Any], path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")  # no display needed, and none is opened
  import matplotlib.pyplot as plt

  sources = report["sources"]
  sbs, ind = report["side_by_side"], report["independent"]
  fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
  _bars(left, sources, {
      "best-ranked": [sbs["best_ranked_percent"].get(s) for s in sources],
      "preferred over reference": [sbs["preferred_over_reference_percent"].get(s) for s in sources]})
  left.set_ylabel("% of rankings")
  left.set_title(f"Side by side ({sbs['rankings']} rankings, {sbs['cases']} cases)")
  rows = list(ind["per_report"])
  _bars(right, [r.replace("_", " ") for r in rows],
        {s: [ind["per_report"][r][s] for r in rows] for s in sources})
  right.set_ylabel("per report")
  right.set_title("Independent evaluation (95% CI over cases)")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)

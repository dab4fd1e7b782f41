"""The evaluation report: eval/step_N.json and the benchmark table beside the paper's numbers."""

from __future__ import annotations

import json
import math
import os
from typing import Any

from medpalm_m.data import tasks as tasks_lib
from medpalm_m.evaluation import paper_results


def write_report(report: dict[str, Any], path: str) -> dict[str, Any]:
  """Writes `report`, keeping the tasks of an existing report at `path` that were not evaluated
  again (--tasks updates some tasks of a step); returns what was written, with where ("path").
  Called by process 0."""
  if os.path.exists(path):
    with open(path) as f:
      report = {**report, "tasks": {**json.load(f).get("tasks", {}), **report["tasks"]}}
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(report, f, indent=2, sort_keys=True)
  return {**report, "path": path}


def format_table(report: dict[str, Any]) -> str:
  with_ci = any("margin_ci95" in result for result in report["tasks"].values())
  header = ["task", "metric", "n", "ours", "baseline", *(["ours-baseline 95% CI"] if with_ci else []),
            *paper_results.COLUMNS]
  rows = []
  for name, result in sorted(report["tasks"].items()):
    paper_task = tasks_lib.get(name).paper_task
    for metric in tasks_lib.get(name).metrics:
      value = result.get(metric)
      paper = paper_results.PAPER.get(paper_task or "", {}).get(metric, (None,) * 4)
      interval = result.get("margin_ci95", {}).get(metric)
      ci = ([f"[{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "-"] if with_ci else [])
      rows.append([name, metric, str(result["n"]), _fmt(value), _fmt(result["baseline"].get(metric)),
                   *ci, *(_fmt(v) for v in paper)])
  widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
  line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))
  if "suite" in report:
    title = (f"Suite {report['suite']!r} results at step {report['step']} ({report['split']} split); "
             "paper columns: the real task this one stands in for (Tu et al. 2023, Table 2; "
             "zero-shot: Section 6.2 and Table 5)")
  else:
    title = (f"MultiMedBench results at step {report['step']} ({report['split']} split); "
             "paper columns: the real task this one stands in for (Tu et al. 2023, Table 2)")
  out = [title, line(header), line(["-" * w for w in widths])]
  beaten, compared = baseline_summary(report)
  summary = f"above the baseline on {beaten} of {compared} scored metrics"
  if with_ci:
    clear = sum(interval[0] > 0 for result in report["tasks"].values()
                for interval in result.get("margin_ci95", {}).values())
    summary += f"; on {clear} the whole 95% interval of ours-baseline is above 0"
  unparsed = [f"{name}: {result['unparseable']} of {result['n']} answers name no option (scored wrong)"
              for name, result in sorted(report["tasks"].items()) if "unparseable" in result]
  return "\n".join(out + [line(r) for r in rows] + [summary] + unparsed)


def baseline_summary(report: dict[str, Any]) -> tuple[int, int]:
  """How many numeric metrics beat their baseline (skipped scorers are not counted)."""
  beaten = compared = 0
  for name, result in report["tasks"].items():
    for metric in tasks_lib.get(name).metrics:
      ours, base = result.get(metric), result["baseline"].get(metric)
      if isinstance(ours, float) and isinstance(base, float) and not (math.isnan(ours) or math.isnan(base)):
        compared += 1
        beaten += ours > base
  return beaten, compared


def _fmt(value) -> str:
  if value is None:
    return "-"
  if isinstance(value, str):
    return "skipped" if value.startswith("skipped") else value
  return "nan" if math.isnan(value) else f"{value:.2f}"



"""How a run went and where it stands: training curves from metrics.jsonl, each task's metrics at
every evaluated step, and the latest evaluation beside the paper's Table 2.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from medpalm_m.evaluation import paper_results
from medpalm_m.data import tasks as tasks_lib

_CURVES = (("loss", "loss"), ("token_accuracy", "token accuracy"), ("learning_rate", "learning rate"),
           ("grad_norm", "gradient norm"), ("tokens_per_sec", "tokens / s"))


def plot_training_curves(records: Sequence[Mapping[str, Any]]) -> Figure:
  """Loss, token accuracy, learning rate, gradient norm, throughput, and each task's loss."""
  steps = [r["step"] for r in records]
  fig, axes = plt.subplots(2, 3, figsize=(14, 6.5))
  for ax, (key, label) in zip(axes.flat, _CURVES):
    ax.plot(steps, [r.get(key, np.nan) for r in records], marker="." if len(steps) < 30 else None)
    ax.set_title(label)
    ax.set_xlabel("step")
  ax = axes.flat[-1]
  tasks = sorted({t for r in records for t in r.get("task_loss", {})})
  for task in tasks:
    ax.plot(steps, [r.get("task_loss", {}).get(task, np.nan) for r in records], label=task, lw=1)
  ax.set_title("loss per task (target tokens)")
  ax.set_xlabel("step")
  if tasks:
    ax.legend(fontsize=6, ncol=2)
  fig.suptitle(f"training: {len(records)} logged steps, last {steps[-1] if steps else '-'}")
  fig.tight_layout()
  return fig


def _number(value) -> float | None:
  """A plottable metric value: None for skipped scorers ("skipped: ...") and NaN."""
  return float(value) if isinstance(value, (int, float)) and not math.isnan(value) else None


def plot_metrics_over_steps(reports: Mapping[int, Mapping[str, Any]]) -> Figure:
  """One panel per task: each metric at every evaluated step (solid) and its baseline (dashed)."""
  steps = sorted(reports)
  task_names = sorted({t for r in reports.values() for t in r["tasks"]})
  cols = min(4, len(task_names))
  rows = math.ceil(len(task_names) / cols)
  fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=(4 * cols, 3 * rows))
  for ax, task in zip(axes.flat, task_names):
    top = 100.0
    for c, metric in enumerate(tasks_lib.get(task).metrics):
      ours = [_number(reports[s]["tasks"].get(task, {}).get(metric)) for s in steps]
      base = [_number(reports[s]["tasks"].get(task, {}).get("baseline", {}).get(metric)) for s in steps]
      if all(v is None for v in ours):
        continue  # a scorer that needs local weights
      color = f"C{c}"
      ax.plot(steps, [np.nan if v is None else v for v in ours], marker="o", color=color, label=metric)
      # A marker as well as the line: a run evaluated once has a single point.
      ax.plot(steps, [np.nan if v is None else v for v in base], ls="--", marker="_", ms=12,
              color=color, lw=1)
      top = max([top] + [v for v in ours + base if v is not None])  # CIDEr-D runs to 1000
    ax.set_title(task, fontsize=9)
    ax.set_ylim(-2, top * 1.04)
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
  for ax in list(axes.flat)[len(task_names):]:
    ax.axis("off")
  fig.suptitle("evaluation metrics (%) per task; dashed: majority / most-frequent-answer baseline")
  fig.tight_layout()
  return fig


def comparison_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
  """Per task and metric: ours, the baseline, and the paper's columns for the real task this one
  stands in for (None where the paper has no number or the scorer was skipped)."""
  rows = []
  for name, result in sorted(report["tasks"].items()):
    task = tasks_lib.get(name)
    paper = paper_results.PAPER.get(task.paper_task or "", {})
    for metric in task.metrics:
      row = {"task": name, "paper_task": task.paper_task, "metric": metric,
             "ours": _number(result.get(metric)), "baseline": _number(result.get("baseline", {}).get(metric))}
      row.update(zip(paper_results.COLUMNS, paper.get(metric, (None,) * len(paper_results.COLUMNS))))
      rows.append(row)
  return rows


_AXIS_END = 100.0


def plot_against_paper(report: Mapping[str, Any]) -> Figure:
  """Grouped bars per task and metric: ours, our baseline, and the paper's prior SOTA and
  Med-PaLM M 12B/84B/562B on the real task. Metrics we could not score are left out."""
  rows = [r for r in comparison_rows(report) if r["ours"] is not None]
  series = ("ours", "baseline", *paper_results.COLUMNS)
  colors = ("tab:red", "lightgray", "black", "#9ecae1", "#4292c6", "#08519c")
  height = 0.8 / len(series)
  fig, ax = plt.subplots(figsize=(10, 0.62 * len(rows) + 1.6))
  y = np.arange(len(rows))[::-1]
  for s, (name, color) in enumerate(zip(series, colors)):
    values = np.asarray([np.nan if r[name] is None else r[name] for r in rows])
    # CIDEr-D runs to 1000: a longer bar is cut at the axis end and labelled with its value.
    shown = np.minimum(values, _AXIS_END)
    offsets = y + 0.4 - (s + 0.5) * height
    ax.barh(offsets, shown, height, color=color, label=name,
            edgecolor="white" if name != "baseline" else "gray", lw=0.3)
    if name == "ours":  # a marker too, so that a score of 0 still shows
      ax.plot(shown, offsets, "D", color=color, ms=4)
    for value, offset in zip(values, offsets):
      if value > _AXIS_END:
        ax.text(_AXIS_END, offset, f" {value:.0f}", va="center", fontsize=6)
  ax.set_yticks(y, [f"{r['task'].removeprefix('synthetic_')}\n{r['metric']}" for r in rows], fontsize=7)
  ax.set_xlim(-1.5, _AXIS_END + 8)
  ax.set_xlabel("%")
  ax.legend(fontsize=7, loc="lower right", ncol=2)
  ax.set_title(f"our evaluation at step {report['step']} ({report.get('split', '?')} split) beside the "
               "paper's Table 2 (real MultiMedBench tasks)", fontsize=9)
  fig.tight_layout()
  return fig

"""A training workdir read back for inspection: its config, metrics.jsonl and eval reports.

Notebooks find the workdir through MEDPALM_M_WORKDIR (default `workdirs/tiny`, what the README's
`make run` writes) and the data through MEDPALM_M_DATA_DIR (default: the config's `data_dir`).
Relative paths start at the repository root, as `make` uses them, not at the notebook's folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any

import ml_collections

from medpalm_m import runtime
from medpalm_m.data import mixtures, preprocess
from medpalm_m.data import tokenizer as tok

DEFAULT_WORKDIR = "workdirs/tiny"
WORKDIR_VARIABLE = "MEDPALM_M_WORKDIR"
DATA_DIR_VARIABLE = "MEDPALM_M_DATA_DIR"


def _from_repo_root(path: str) -> str:
  path = os.path.expanduser(path)
  return path if os.path.isabs(path) else os.path.join(runtime.REPO_ROOT, path)


@dataclasses.dataclass(frozen=True)
class Workdir:
  path: str
  config: ml_collections.ConfigDict  # its config.json, with data_dir resolved

  @classmethod
  def locate(cls, path: str | None = None, data_dir: str | None = None) -> Workdir:
    """The workdir at `path`, else $MEDPALM_M_WORKDIR, else workdirs/tiny."""
    path = _from_repo_root(path or os.environ.get(WORKDIR_VARIABLE) or DEFAULT_WORKDIR)
    if not os.path.exists(os.path.join(path, "config.json")):
      raise FileNotFoundError(
          f"{path} has no config.json: run `make run` first (README), or set {WORKDIR_VARIABLE} "
          "to a workdir written by `python -m medpalm_m.train`")
    config = runtime.load_config(path)
    config.data.data_dir = _from_repo_root(
        data_dir or os.environ.get(DATA_DIR_VARIABLE) or config.data.data_dir)
    # Looking never writes: a missing dataset is reported, not built.
    config.data.build_synthetic = False
    return cls(path, config)

  @property
  def data_dir(self) -> str:
    return self.config.data.data_dir

  def mixture(self) -> dict[str, float]:
    """The training mixture, weights summing to 1."""
    return mixtures.normalize(dict(self.config.data.mixture))

  def tokenizer(self) -> tok.Tokenizer:
    return runtime.prepare_data(self.config)[1]

  def sequence_spec(self) -> preprocess.SequenceSpec:
    return runtime.sequence_spec(self.config)

  def training_log(self) -> list[dict[str, Any]]:
    """The training records of metrics.jsonl by step; a step logged twice (a resumed run) keeps
    its last record. Evaluation records (those with an "eval" key) are in `eval_reports`."""
    path = os.path.join(self.path, "metrics.jsonl")
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path} not found: the run has not logged a step yet")
    by_step: dict[int, dict[str, Any]] = {}
    with open(path) as f:
      for line_number, line in enumerate(f, 1):
        if not line.strip():
          continue
        try:
          record = json.loads(line)
        except json.JSONDecodeError as e:
          raise ValueError(f"{path}:{line_number} is not JSON ({e}); a run killed mid-write "
                           "leaves a partial last line: delete it") from e
        if "loss" in record:
          by_step[record["step"]] = record
    return [by_step[s] for s in sorted(by_step)]

  def eval_reports(self) -> dict[int, dict[str, Any]]:
    """{step: report} from eval/step_N.json, in step order."""
    directory = os.path.join(self.path, "eval")
    reports = {}
    for name in os.listdir(directory) if os.path.isdir(directory) else []:
      match = re.fullmatch(r"step_(\d+)\.json", name)
      if match:
        with open(os.path.join(directory, name)) as f:
          reports[int(match.group(1))] = json.load(f)
    if not reports:
      raise FileNotFoundError(
          f"no eval/step_N.json in {self.path}: run `python -m medpalm_m.evaluate "
          f"--config=configs/tiny.py --workdir={self.path}` (make run does)")
    return dict(sorted(reports.items()))

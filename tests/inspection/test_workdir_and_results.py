"""Reading a workdir back, and our results beside the paper's."""

import json
import math

import pytest

from medpalm_m.inspection import results
from medpalm_m.inspection.workdir import Workdir


def test_locate_reads_the_environment_and_resolves_relative_paths(evaluated_workdir, monkeypatch, tmp_path):
  monkeypatch.setenv("MEDPALM_M_WORKDIR", evaluated_workdir)
  monkeypatch.setenv("MEDPALM_M_DATA_DIR", "some/relative/data")
  run = Workdir.locate()
  assert run.path == evaluated_workdir
  assert run.data_dir.endswith("/some/relative/data") and run.data_dir.startswith("/")
  assert run.config.data.build_synthetic is False
  with pytest.raises(FileNotFoundError, match="make run"):
    Workdir.locate(str(tmp_path))


def test_training_log_keeps_the_last_record_of_a_step_and_leaves_out_evaluations(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"data": {"data_dir": "/d", "mixture": {}}}))
  lines = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0}, {"step": 2, "eval": {"t/m": 1.0}},
           {"step": 2, "loss": 2.5}, {"step": 3, "loss": 1.0}]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
  run = Workdir.locate(str(tmp_path))
  assert [(r["step"], r["loss"]) for r in run.training_log()] == [(1, 3.0), (2, 2.5), (3, 1.0)]
  with pytest.raises(FileNotFoundError, match="medpalm_m.evaluate"):
    run.eval_reports()
  (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 3.0}\n{"step": 2, "lo')
  with pytest.raises(ValueError, match="metrics.jsonl:2"):
    run.training_log()


def test_comparison_rows_put_the_papers_numbers_beside_ours(evaluated_workdir):
  reports = Workdir.locate(evaluated_workdir).eval_reports()
  assert list(reports) == [2, 4]
  rows = results.comparison_rows(reports[4])
  fda = {r["metric"]: r for r in rows if r["task"] == "synthetic_precision_fda"}
  assert fda["snp_f1"]["paper_task"] == "PrecisionFDA"
  assert (fda["snp_f1"]["prior SOTA"], fda["snp_f1"]["MPM 12B"]) == (99.70, 99.35)
  vqa = {r["metric"]: r for r in rows if r["task"] == "synthetic_vqa_rad"}
  assert vqa["token_f1"]["prior SOTA"] is None and vqa["token_f1"]["MPM 562B"] == 62.06
  for row in rows:
    ours = reports[4]["tasks"][row["task"]][row["metric"]]
    assert row["ours"] == (None if isinstance(ours, str) or math.isnan(ours) else ours)
